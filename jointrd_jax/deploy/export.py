"""Deployment export: fold a run's network, check it, write npz + SavedModel + TFLite +
ONNX, and with `quantize='int8'` the int8 TFLite and ONNX models.

    python -m experiments.export --workdir=RUN --out=DIR [--num_images=N] \
        [--check_images=test|random] [--quantize=none|int8] [--calibration_images=512] \
        [--calibration_dir=IMAGES] [--overwrite]

Steps (`export()`):
1. Load the run's network (`checkpoints.load_network`) and fold Dirac + BatchNorm into
   plain biased convs (`fold.fold`).
2. Check the folded network against the training-time network in inference mode on the
   check images: by default (`check_images='test'`) the first `num_images` images of the
   run's TEST split (default: all of in-memory data, 1000 of streamed data; its
   config.json dataset keys, `download=False`): CIFAR, npz and
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
3. Write into a staging folder beside DIR (`staging`), moved to DIR only when every step
   passed (an old export under `overwrite` is replaced only then; on any failure nothing
   is left and one line names the failed step with its numbers):
   - `params.npz`: the folded parameters, flat `'stage1_block0/conv1/conv/kernel'` keys
     (`fold.to_numpy` of the params tree; `load_npz` rebuilds the tree);
   - `saved_model/`: a TensorFlow SavedModel, signature `serving_default`:
     input `images`: **raw uint8 NHWC** `[batch, H, W, C]` (0..255, any batch size),
     output `logits`: float32 `[batch, num_classes]`. The run's normalisation
     `(x / 255 - mean) / std` happens inside the model (mean/std are in export.json),
     so a deployed model cannot be fed wrongly normalised images;
   - `model.tflite`: the same function for TFLite, TFLite builtin ops only
     (no Flex / Select-TF ops), lowered at batch 1 (`formats`: why) and resized by the
     interpreter to any batch (`resize_tensor_input` before `allocate_tensors`);
   - `model.onnx`: tf2onnx of `model.tflite`, batch dimension symbolic (`formats`);
   - with `quantize='int8'`: `model_int8.tflite` (the TFLite converter's full-integer
     quantization) and `model_int8.onnx` (ONNX Runtime's static QDQ quantization), int8
     weights per channel (7-bit in the ONNX model, against int16 saturation on x86
     without VNNI) and int8 activations calibrated on `calibration_images` training
     images (`calibration`), raw uint8 images in, float32 logits out (`quantize`);
   - `labels.txt`: the class names, one per line in label order (CIFAR-100/10 names,
     imagenet2012 synset ids, imagefolder class folders; `class_<i>` for synthetic and
     npz data), see `datasets/sources/` (`class_names`); also in export.json `classes`;
   - `export.json`: architecture, input spec, normalisation, the preprocessing a caller
     should apply (`preprocessing`: `center_crop` with `resize` for streamed ImageNet-style
     runs, as their evaluation; `resize` for in-memory CIFAR-style data;
     `experiments.predict` follows it), which
     images the checks used (`check_data`), every check's result and, for int8, the
     `int8` section: calibration (images, source, seconds) and per model the top-1 of
     fp32 and int8, their agreement, the largest logit error, size and conversion time.
4. Reload the SavedModel and run the TFLite file (LiteRT) and the ONNX file (ONNX
   Runtime) on the same images; each must meet the same tolerance and top-1 agreement as
   the fold check. The int8 models are run on them too; a top-1 drop of more than 1
   point (or, on unlabelled random images, more than 1 % changed predictions) prints
   one `warning:` line on stderr and is recorded in export.json. With `qat_epochs` > 0
   the int8 models are converted from the folded weights fine-tuned with int8 simulated
   (`qat`; in-memory data only), still measured against the trained network's logits;
   export.json `int8.qat` records the fine-tuning.
5. Write the model package (`package_writer.write`): `weights_folded.safetensors`,
   `weights_trained.safetensors`, `training_config.json`, the model card `README.md` and,
   last, `SHA256SUMS` of every file (`predict` and `deploy.load` verify it).

How the TFLite path works with jax 0.10.2: `jax2tf.convert` only has native serialization
left (`enable_xla` / `native_serialization=False` are deprecated no-ops), so the TF graph
holds ONE `XlaCallModule` op carrying the StableHLO of the folded network (lowered for
the CPU platform; the SavedModel therefore runs on TF's CPU). TensorFlow 2.21's TFLite converter
deserialises the StableHLO inside `XlaCallModule` and legalises it to TFLite builtins
(CONV_2D with the bias and ReLU fused, PAD, ADD for shortcuts, SUM for the mean with its
1/(H W) folded into FULLY_CONNECTED, for the batch-1 lowering), so the converter
runs with `supported_ops=[TFLITE_BUILTINS]` and fails loudly rather than emitting Flex ops
the plain interpreter cannot run. No `enable_xla=False`, graph serialization or
hand-written TF ops are needed. The parameters travel as `tf.Variable`s of the SavedModel
(jax2tf's recommended way) and are frozen into constants by the converter. The TFLite
input is `shape_signature` [1, H, W, C]: call `resize_tensor_input` + `allocate_tensors`
for a batch size other than 1 (`runtimes.TFLiteModel` does).
The check computations run at `jax.default_matmul_precision('highest')`.

TensorFlow is imported lazily (only here), quietly and kept off the GPUs
(`tensorflow_support.import_tensorflow`); the C++ lines the converter and the TFLite
interpreter print (XNNPACK's "INFO: Created ...") are silenced, so the output holds only
this module's lines.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
import time

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.datasets import sources as sources_lib
from jointrd_jax.deploy import (calibration, card, checks as checks_lib, package_writer, qat,
                                quantize as quantize_lib, runtimes, staging)
from jointrd_jax.deploy.checks import (CHECK_IMAGES, RTOL, check_images, compare, in_batches,
                                       inference_fn, preprocessing)
from jointrd_jax.deploy.files import (INPUT_NAME, LABELS_FILE, ONNX_FILE,  # noqa: F401
                                      ONNX_INT8_FILE, OUTPUT_NAME, PARAMS_FILE, REPORT_FILE,
                                      SAVED_MODEL_DIR, TFLITE_FILE, TFLITE_INT8_FILE)
from jointrd_jax.deploy.formats import (load_npz, run_onnx, run_saved_model,  # noqa: F401
                                        run_tflite, save_npz, write_onnx, write_saved_model,
                                        write_tflite)
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold
from jointrd_jax.training import checkpoints, workdir as workdir_lib

EVAL_BATCH = runtimes.MAX_BATCH  # images per call at 32x32; fewer for larger images
QUANTIZE = ("none", "int8")
EDGE_SAVED_MODEL = ".edge_saved_model"  # the batch-1 SavedModel the TFLite models come from
QAT_DIR = ".qat"  # the fine-tuned weights' batch-1 SavedModel and fp32 TFLite/ONNX


def _versions(*names) -> dict:
  out = {}
  for name in names:
    try:
      out[name.replace("-", "_")] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def _failure(what: str, c: dict) -> str:
  """The numbers of a failed check, for the one error line."""
  return (f"{what}: max |logit diff| {c['max_abs_diff']:.3e} vs tolerance {c['tolerance']:.3e} "
          f"(rtol {RTOL:g} of max |logit| {c['max_abs_logit']:.3g}), {c['top1_changed']} of "
          f"{c['num_images']} top-1 predictions changed")


def _check_args(run_dir, check, quantize, calibration_images, qat_epochs=0,
                calibration_dir=None):
  if not os.path.isfile(os.path.join(run_dir, workdir_lib.CONFIG_FILE)):
    raise UserError(f"--workdir={run_dir} holds no {workdir_lib.CONFIG_FILE}: pass the workdir of "
                    "a run (config.json + checkpoints/), e.g. one of experiments.main or "
                    "experiments.convert_torch.")
  if check not in CHECK_IMAGES:
    raise UserError(f"--check_images={check} is not one of {', '.join(CHECK_IMAGES)}.")
  if quantize not in QUANTIZE:
    raise UserError(f"--quantize={quantize} is not one of {', '.join(QUANTIZE)}.")
  if quantize == "int8":
    calibration.check_count(calibration_images)
  else:  # the int8 models' calibration settings would change nothing
    for flag, value, unset in (("calibration_dir", calibration_dir, None),
                               ("calibration_images", calibration_images,
                                calibration.DEFAULT_NUM_IMAGES)):
      if value not in (unset, ""):
        raise UserError(f"--{flag}={value} calibrates the int8 models: add --quantize=int8 "
                        "(or drop the flag).")
  if qat.check_epochs(qat_epochs) and quantize != "int8":
    raise UserError(f"--qat_epochs={qat_epochs} fine-tunes for the int8 models: add "
                    "--quantize=int8.")
  if qat_epochs:
    qat.check_run(run_dir)


def _edge_models(where, folded_net, params, data, image_shape):
  """In `where`: the batch-1 SavedModel (`EDGE_SAVED_MODEL`; why batch 1: `formats`' module
  doc), `model.tflite` converted from it and `model.onnx` from that. Returns the three
  paths and `{file: bytes}` of the two files."""
  sm = os.path.join(where, EDGE_SAVED_MODEL)
  write_saved_model(sm, folded_net, params, data.mean, data.std, image_shape, batch=1)
  tflite, onnx = os.path.join(where, TFLITE_FILE), os.path.join(where, ONNX_FILE)
  sizes = {TFLITE_FILE: write_tflite(sm, tflite), ONNX_FILE: write_onnx(tflite, onnx)}
  return sm, tflite, onnx, sizes


def _write_fp32(stage, report, folded_net, folded, data, image_shape, reference, log):
  """params.npz, labels.txt, saved_model/, model.tflite, model.onnx in `stage`, each
  format checked; returns the batch-1 SavedModel's path (for the int8 models)."""
  files, checks, images = report["files"], report["checks"], data.images
  npz_path = os.path.join(stage, PARAMS_FILE)
  save_npz(npz_path, folded["params"])
  files[PARAMS_FILE] = os.path.getsize(npz_path)
  with open(os.path.join(stage, LABELS_FILE), "w", encoding="utf-8") as f:
    f.write("".join(f"{n}\n" for n in report["classes"]["names"]))
  files[LABELS_FILE] = os.path.getsize(os.path.join(stage, LABELS_FILE))

  tf = runtimes.tf_quiet()
  report["versions"]["tensorflow"] = tf.__version__
  sm_path = os.path.join(stage, SAVED_MODEL_DIR)
  write_saved_model(sm_path, folded_net, folded["params"], data.mean, data.std, image_shape)
  files[SAVED_MODEL_DIR] = sum(
      os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(sm_path) for f in fs)
  checks["saved_model"] = compare(reference, run_saved_model(sm_path, images))

  edge_sm, tflite_path, onnx_path, sizes = _edge_models(stage, folded_net, folded["params"],
                                                        data, image_shape)
  files.update(sizes)
  checks["tflite"] = compare(reference, run_tflite(tflite_path, images))
  checks["onnx"] = compare(reference, run_onnx(onnx_path, images))
  report["versions"].update(_versions("ai-edge-litert", "tf2onnx", "onnx", "onnxruntime"))
  for name in ("saved_model", "tflite", "onnx"):
    c = checks[name]
    log(f"{name} check: max |logit diff| {c['max_abs_diff']:.3e}, top-1 agreement "
        f"{c['top1_agreement']:.4f} ({c['top1_changed']} changed) -> "
        f"{'ok' if c['passed'] else 'FAILED'}")
  failed = [k for k, c in checks.items() if not c["passed"]]
  if failed:
    raise UserError("the exported model(s) disagree with the trained network beyond "
                    "tolerance, nothing exported: "
                    + "; ".join(_failure(k, checks[k]) for k in failed) + ".")
  return edge_sm


def _qat_sources(stage, run_dir, folded_net, folded, data, image_shape, calib, qat_epochs,
                 log):
  """The int8 models' sources after QAT (`qat.finetune`): a batch-1 SavedModel and an fp32
  ONNX model of the fine-tuned folded weights in `stage/.qat/` (removed by the caller);
  returns `(saved_model, onnx, record)`."""
  cfg = workdir_lib.read_config(run_dir)
  train = qat.train_data(run_dir, cfg, image_shape)
  log(f"qat: fine-tuning the folded network with int8 simulated for {qat_epochs} epoch(s) "
      f"on {len(train.images)} training images")
  params, record = qat.finetune(folded_net, folded["params"], train, calib.images,
                                epochs=qat_epochs, batch_size=int(cfg.get("batch_size", 128)),
                                log=log)
  logits = in_batches(inference_fn(folded_net, {"params": params}, data.mean, data.std),
                       data.images)
  if data.labels is not None:
    record["top1_fp32_after_qat"] = float(np.mean(np.argmax(logits, -1) == data.labels))
  where = os.path.join(stage, QAT_DIR)
  os.makedirs(where)
  sm, _, onnx, _ = _edge_models(where, folded_net, params, data, image_shape)
  return sm, onnx, record


def _write_int8(stage, edge_sm, onnx_fp32, calib, calib_seconds, data, reference, log,
                warn) -> dict:
  """model_int8.tflite and model_int8.onnx in `stage` (from `edge_sm`, a batch-1
  SavedModel, and `onnx_fp32`), each run on the check images; export.json's `int8`
  section. One warning line when a top-1 drop exceeds 1 point."""
  section = {"calibration": {"num_images": int(len(calib.images)), "source": calib.source,
                             "seconds": float(calib_seconds)}}
  writers = (("tflite_int8", TFLITE_INT8_FILE, run_tflite,
              lambda p: quantize_lib.write_tflite_int8(edge_sm, p, calib.images, batch=1)),
             ("onnx_int8", ONNX_INT8_FILE, run_onnx,
              lambda p: quantize_lib.write_onnx_int8(onnx_fp32, p, calib.images)))
  for key, name, run, write in writers:
    path = os.path.join(stage, name)
    t = time.perf_counter()
    nbytes = write(path)
    seconds = time.perf_counter() - t
    r = quantize_lib.int8_report(name, nbytes, seconds, reference, run(path, data.images),
                             data.labels)
    section[key] = r
    top1 = ("" if r["top1_int8"] is None else
            f"top-1 {100 * r['top1_int8']:.2f}% (fp32 {100 * r['top1_fp32']:.2f}%), ")
    log(f"{key}: {top1}agreement with fp32 {r['agreement']:.4f}, max |logit error| "
        f"{r['max_abs_logit_error']:.3g} (max |logit| {r['max_abs_logit']:.3g}), "
        f"{nbytes} bytes, {seconds:.1f} s")
  warnings = [section[k]["warning"] for k in ("tflite_int8", "onnx_int8")
              if section[k]["warning"]]
  if warnings:
    warn(f"warning: int8 accuracy drop above {quantize_lib.DROP_WARNING_POINTS:g} point on "
         f"{len(data.images)} check images: {'; '.join(warnings)}; fine-tune for int8 "
         "with --qat_epochs=3 (quantization-aware), or keep the fp32 model.")
  return section


def _warn(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


@checks_lib.loaded_once()  # the run's data read (and a SYNTHETIC DATA warning logged) once
def export(run_dir: str, out_dir: str, *, num_images: int | None = None,
           which: str = "student", check: str = "test", overwrite: bool = False,
           quantize: str = "none", calibration_images: int = calibration.DEFAULT_NUM_IMAGES,
           calibration_dir: str | None = None, qat_epochs: int = 0, log=print,
           warn=_warn) -> dict:
  """Folds, checks and exports network `which` of run `run_dir` into `out_dir`.

  `check`: the check images, 'test' (the run's test split) or 'random' (see
  `check_images`); `num_images`: how many (None: all test images of in-memory data,
  1000 else). `quantize='int8'`: also the int8 models, calibrated on
  `calibration_images` training images (or the image files under `calibration_dir`);
  `qat_epochs` > 0: the int8 models are converted from the folded weights fine-tuned for
  that many epochs with int8 simulated (`qat`), the fp32 models stay the trained ones.

  Returns the report written to `out_dir/export.json`. Raises UserError (one line) when
  anything fails; then `out_dir` is as it was (the export is built in a staging folder).
  """
  _check_args(run_dir, check, quantize, calibration_images, qat_epochs, calibration_dir)
  out_dir = staging.check_out(out_dir, overwrite)
  net, variables, meta = checkpoints.load_network(run_dir, which)
  image_shape = tuple(int(d) for d in meta["image_shape"])
  data = check_images(run_dir, num_images, image_shape, check)
  calib, calib_seconds = None, 0.0
  if quantize == "int8":
    t = time.perf_counter()
    calib = calibration.calibration_images(run_dir, calibration_images, image_shape,
                                           calibration_dir)
    calib_seconds = time.perf_counter() - t
  images, mean, std, dataset = data.images, data.mean, data.std, data.dataset
  names, names_source = sources_lib.get(dataset).class_names(net.num_classes)
  folded_net, folded = fold.fold(net, variables)

  reference = in_batches(inference_fn(net, variables, mean, std), images)
  folded_logits = in_batches(inference_fn(folded_net, folded, mean, std), images)
  checks = {"fold": compare(reference, folded_logits)}
  what = (f"{len(images)} {data.description['split']} images of {dataset}" if check == "test"
          else f"{len(images)} random images")
  log(f"fold check on {what}: max |logit diff| "
      f"{checks['fold']['max_abs_diff']:.3e} (max |logit| {checks['fold']['max_abs_logit']:.3g}, "
      f"tolerance {checks['fold']['tolerance']:.3e}), top-1 agreement "
      f"{checks['fold']['top1_agreement']:.4f}")
  if not checks["fold"]["passed"]:
    raise UserError("the folded network differs from the trained one, nothing exported: "
                    f"{_failure('fold', checks['fold'])}.")

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
  with staging.staged(out_dir) as stage:
    edge_sm = _write_fp32(stage, report, folded_net, folded, data, image_shape, reference,
                          log)
    if calib is not None:
      sources, qat_record = (edge_sm, os.path.join(stage, ONNX_FILE)), None
      if qat_epochs:
        *sources, qat_record = _qat_sources(stage, run_dir, folded_net, folded, data,
                                            image_shape, calib, qat_epochs, log)
      report["int8"] = _write_int8(stage, *sources, calib, calib_seconds, data, reference,
                                   log, warn)
      report["int8"]["qat"] = qat_record
      shutil.rmtree(os.path.join(stage, QAT_DIR), ignore_errors=True)
      for key in ("tflite_int8", "onnx_int8"):
        report["files"][report["int8"][key]["file"]] = report["int8"][key]["bytes"]
    shutil.rmtree(edge_sm)
    report["passed"] = True
    with open(os.path.join(stage, REPORT_FILE), "w") as f:
      json.dump(report, f, indent=2, sort_keys=True)
    # The package (safetensors, model card, SHA256SUMS of every file) comes last.
    package_writer.write(stage, report, net=net, variables=variables, folded=folded,
                  run_dir=run_dir)
  cfg = workdir_lib.read_config(run_dir)
  who = card.run_identity(cfg, workdir_lib.read_summary(run_dir))
  log(f"exported the {card.network_words(which, who, net)} of {run_dir} "
      f"({who.name if who else cfg.get('method')}) to {out_dir}: "
      f"{', '.join(sorted(report['files']))}, {REPORT_FILE} and the package "
      f"({', '.join(package_writer.FILES)})")
  return report
