"""Deployment export: fold a run's network, check it, write npz + SavedModel + TFLite.

    python -m experiments.export --workdir=RUN --out=DIR [--num_images=1000] \
        [--check_images=test|random]

Steps (`export()`):
1. Load the run's network (`checkpoints.load_network`) and fold Dirac + BatchNorm into
   plain biased convs (`fold.fold`).
2. Check the folded network against the training-time network in inference mode on the
   check images: by default (`check_images='test'`) the first `num_images` images of the
   run's TEST split (its config.json dataset keys, `download=False`): CIFAR, npz and
   synthetic arrays as they are; for streamed (ImageNet-style) runs, the validation split
   read by `datasets.streamed` exactly as evaluation read it (resize `streamed.eval_resize`
   + centre crop). With `check_images='random'`, `num_images`
   deterministic random uint8 images of the trained image shape (`random_images`: a
   random 4x4 colour grid per image, upsampled, plus noise; i.i.d. pixel noise alone
   would average out in the global pooling and give every image the same logits), for
   runs whose data is not on this machine (an ImageNet copy, CIFAR not prepared); the
   normalisation is still the run's (TFDS constants for CIFAR, ImageNet's for streamed
   runs, computed from the training images for npz and synthetic arrays). Nothing
   assumes 32x32: the image shape is the checkpoint's (224x224x3 for the ImageNet
   variants). The max abs logit difference must stay within fp32 tolerance
   (`RTOL` = 1e-4 times the largest |logit|) and no top-1 prediction may change.
3. Write into DIR:
   - `params.npz`: the folded parameters, flat `'stage1_block0/conv1/conv/kernel'` keys
     (`fold.to_numpy` of the params tree; `load_npz` rebuilds the tree);
   - `saved_model/`: a TensorFlow SavedModel, signature `serving_default`:
     input `images`: **raw uint8 NHWC** `[batch, H, W, C]` (0..255, any batch size),
     output `logits`: float32 `[batch, num_classes]`. The run's normalisation
     `(x / 255 - mean) / std` happens inside the model (mean/std are in export.json),
     so a deployed model cannot be fed wrongly normalised images;
   - `model.tflite`: the same function for TFLite, TFLite builtin ops only
     (no Flex / Select-TF ops), dynamic batch (resize the input before `allocate_tensors`);
   - `labels.txt`: the class names, one per line in label order (CIFAR-100/10 names,
     imagenet2012 synset ids, imagefolder class folders; `class_<i>` for synthetic and
     npz data), see `datasets/class_names.py`; also in export.json `classes`;
   - `export.json`: architecture, input spec, normalisation, the preprocessing a caller
     should apply (`preprocessing`: `center_crop` with `resize` for streamed ImageNet-style
     runs, as their evaluation; `resize` for in-memory CIFAR-style data;
     `experiments.predict` follows it), which
     images the checks used (`check_data`) and every check's result.
4. Reload the SavedModel and run the TFLite file with `tf.lite.Interpreter` on the same
   images; both must meet the same tolerance and top-1 agreement as the fold check.
5. Write the model package (`package.write`): `weights_folded.safetensors`,
   `weights_trained.safetensors`, `training_config.json`, the model card `README.md` and,
   last, `SHA256SUMS` of every file (`predict` and `deploy.load` verify it).

How the TFLite path works with jax 0.10.2: `jax2tf.convert` only has native serialization
left (`enable_xla` / `native_serialization=False` are deprecated no-ops), so the TF graph
holds ONE `XlaCallModule` op carrying the StableHLO of the folded network (lowered for
the CPU platform, batch dimension symbolic; the SavedModel therefore runs on TF's CPU). TensorFlow 2.21's TFLite converter
deserialises the StableHLO inside `XlaCallModule` and legalises it to TFLite builtins
(CONV_2D, PAD, ADD, MAXIMUM for ReLU, SUM + DIV for the mean, FULLY_CONNECTED, plus
SHAPE / BROADCAST_TO / CONCATENATION ... for the symbolic batch size), so the converter
runs with `supported_ops=[TFLITE_BUILTINS]` and fails loudly rather than emitting Flex ops
the plain interpreter cannot run. No `enable_xla=False`, graph serialization or
hand-written TF ops are needed. The parameters travel as `tf.Variable`s of the SavedModel
(jax2tf's recommended way) and are frozen into constants by the converter. The TFLite
input keeps a dynamic batch (`shape_signature` [-1, H, W, C]): call
`resize_tensor_input` + `allocate_tensors` for a batch size other than 1.
The check computations run at `jax.default_matmul_precision('highest')`.

TensorFlow is imported lazily (only here), quietly and kept off the GPUs
(`tensorflow_support.import_tensorflow`); the C++ lines the converter and the TFLite
interpreter print (XNNPACK's "INFO: Created ...") are silenced, so the output holds only
this module's lines.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import numpy as np

from jointrd_jax import checkpoints, models
from jointrd_jax import workdir as workdir_lib
from jointrd_jax.datasets import class_names as class_names_lib
from jointrd_jax.deploy import package, runtimes
from jointrd_jax.deploy.checks import (CHECK_IMAGES, RANDOM_SEED, RTOL, CheckData,  # noqa: F401
                                       _in_batches, _tf, check_images, compare,
                                       inference_fn, is_streamed, normalization,
                                       preprocessing, random_images)
from jointrd_jax.deploy.files import (INPUT_NAME, LABELS_FILE, OUTPUT_NAME,  # noqa: F401
                                      PARAMS_FILE, REPORT_FILE, SAVED_MODEL_DIR,
                                      TFLITE_FILE)
from jointrd_jax.deploy.formats import (load_npz, run_saved_model, run_tflite,  # noqa: F401
                                        save_npz, write_saved_model, write_tflite)
from jointrd_jax.models import fold
from jointrd_jax.errors import UserError

EVAL_BATCH = runtimes.MAX_BATCH  # images per call at 32x32; fewer for larger images


# ------------------------------------------------------------------ the export


def _prepare_out(out_dir: str, overwrite: bool) -> str:
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    if not overwrite:
      raise UserError(f"--out={out_dir} is not empty; choose a new directory or pass "
                      "--overwrite to replace its export.")
    for name in (PARAMS_FILE, SAVED_MODEL_DIR, TFLITE_FILE, LABELS_FILE, REPORT_FILE,
                 *package.FILES):
      p = os.path.join(out_dir, name)
      if os.path.isdir(p):
        shutil.rmtree(p)
      elif os.path.exists(p):
        os.remove(p)
  elif os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"--out={out_dir} is a file; pass a directory.")
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create --out={out_dir} ({e.strerror or e}).") from None
  return out_dir


def export(run_dir: str, out_dir: str, *, num_images: int = 1000, which: str = "student",
           check: str = "test", overwrite: bool = False, log=print) -> dict:
  """Folds, checks and exports network `which` of run `run_dir` into `out_dir`.

  `check`: the check images, 'test' (the run's test split) or 'random' (see
  `check_images`).

  Returns the report written to `out_dir/export.json`. Raises UserError when a check fails
  (the files written so far stay, export.json records the failure).
  """
  if not os.path.isfile(os.path.join(run_dir, workdir_lib.CONFIG_FILE)):
    raise UserError(f"--workdir={run_dir} holds no {workdir_lib.CONFIG_FILE}: pass the workdir of "
                    "a run (config.json + checkpoints/), e.g. one of experiments.main or "
                    "experiments.convert_torch.")
  if check not in CHECK_IMAGES:
    raise UserError(f"--check_images={check} is not one of {', '.join(CHECK_IMAGES)}.")
  net, variables, meta = checkpoints.load_network(run_dir, which)
  image_shape = tuple(int(d) for d in meta["image_shape"])
  data = check_images(run_dir, num_images, image_shape, check)
  images, mean, std, dataset = data.images, data.mean, data.std, data.dataset
  names, names_source = class_names_lib.for_dataset(dataset, net.num_classes)
  out_dir = _prepare_out(out_dir, overwrite)
  folded_net, folded = fold.fold(net, variables)

  reference = _in_batches(inference_fn(net, variables, mean, std), images)
  folded_logits = _in_batches(inference_fn(folded_net, folded, mean, std), images)
  checks = {"fold": compare(reference, folded_logits)}
  what = (f"{len(images)} {data.description['split']} images of {dataset}" if check == "test"
          else f"{len(images)} random images")
  log(f"fold check on {what}: max |logit diff| "
      f"{checks['fold']['max_abs_diff']:.3e} (max |logit| {checks['fold']['max_abs_logit']:.3g}, "
      f"tolerance {checks['fold']['tolerance']:.3e}), top-1 agreement "
      f"{checks['fold']['top1_agreement']:.4f}")

  report = {
      "workdir": os.path.abspath(run_dir),
      "which": which,
      "epoch": meta.get("epoch"),
      "architecture": dict(checkpoints.network_meta(net), folded=True,
                           num_params_folded=models.num_params(folded["params"])),
      "input": {"name": INPUT_NAME, "dtype": "uint8", "layout": "NHWC",
                "shape": [None] + [int(d) for d in image_shape],
                "normalization": "inside the model: (images / 255 - mean) / std",
                "mean": [float(v) for v in mean], "std": [float(v) for v in std]},
      "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, net.num_classes]},
      "preprocessing": preprocessing(workdir_lib.read_config(run_dir), image_shape),
      "classes": {"names": list(names), "source": names_source, "file": LABELS_FILE},
      "check_data": dict(
          data.description,
          accuracy_reference=(None if data.labels is None else
                              float(np.mean(np.argmax(reference, -1) == data.labels)))),
      "rtol": RTOL,
      "checks": checks,
      "files": {},
      "versions": {"jax": jax.__version__},
  }

  def write_report():
    with open(os.path.join(out_dir, REPORT_FILE), "w") as f:
      json.dump(report, f, indent=2, sort_keys=True)

  if not checks["fold"]["passed"]:
    report["passed"] = False
    write_report()
    raise UserError(f"the folded network differs from the trained one: max |logit diff| "
                    f"{checks['fold']['max_abs_diff']:.3e} > {checks['fold']['tolerance']:.3e} or "
                    f"{checks['fold']['top1_changed']} top-1 prediction(s) changed; nothing "
                    "exported (see export.json).")

  npz_path = os.path.join(out_dir, PARAMS_FILE)
  save_npz(npz_path, folded["params"])
  report["files"][PARAMS_FILE] = os.path.getsize(npz_path)
  labels_path = os.path.join(out_dir, LABELS_FILE)
  with open(labels_path, "w", encoding="utf-8") as f:
    f.write("".join(f"{n}\n" for n in names))
  report["files"][LABELS_FILE] = os.path.getsize(labels_path)

  tf = _tf()
  report["versions"]["tensorflow"] = tf.__version__
  sm_path = os.path.join(out_dir, SAVED_MODEL_DIR)
  write_saved_model(sm_path, folded_net, folded["params"], mean, std, image_shape)
  report["files"][SAVED_MODEL_DIR] = sum(
      os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sm_path) for f in fs)
  checks["saved_model"] = compare(reference, run_saved_model(sm_path, images))

  tflite_path = os.path.join(out_dir, TFLITE_FILE)
  report["files"][TFLITE_FILE] = write_tflite(sm_path, tflite_path)
  checks["tflite"] = compare(reference, run_tflite(tflite_path, images))
  for name in ("saved_model", "tflite"):
    c = checks[name]
    log(f"{name} check: max |logit diff| {c['max_abs_diff']:.3e}, top-1 agreement "
        f"{c['top1_agreement']:.4f} ({c['top1_changed']} changed) -> "
        f"{'ok' if c['passed'] else 'FAILED'}")
  report["passed"] = all(c["passed"] for c in checks.values())
  write_report()
  if not report["passed"]:
    failed = [k for k, c in checks.items() if not c["passed"]]
    raise UserError(f"the exported {' and '.join(failed)} model(s) disagree with the trained "
                    f"network beyond tolerance (see {out_dir}/{REPORT_FILE}).")
  # The package (safetensors, model card, SHA256SUMS of every file) comes last.
  package.write(out_dir, report, net=net, variables=variables, folded=folded, run_dir=run_dir)
  log(f"exported {which} of {run_dir} to {out_dir}: {PARAMS_FILE}, {SAVED_MODEL_DIR}/, "
      f"{TFLITE_FILE}, {LABELS_FILE}, {REPORT_FILE}")
  return report

