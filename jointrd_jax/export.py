"""Deployment export: fold a run's network, check it, write npz + SavedModel + TFLite.

    python -m experiments.export --workdir=RUN --out=DIR [--num_images=1000]

Steps (`export()`):
1. Load the run's network (`checkpoints.load_network`) and fold Dirac + BatchNorm into
   plain biased convs (`fold.fold`).
2. Check the folded network against the training-time network in inference mode on the
   first `num_images` images of the run's TEST split (its config.json dataset keys,
   `download=False`): the max abs logit difference must stay within fp32 tolerance
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
   - `export.json`: architecture, input spec, normalisation and every check's result.
4. Reload the SavedModel and run the TFLite file with `tf.lite.Interpreter` on the same
   images; both must meet the same tolerance and top-1 agreement as the fold check.

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

TensorFlow is imported lazily (only here) and kept off the GPUs.
"""
from __future__ import annotations

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import checkpoints, fold, models, workdir as workdir_lib
from jointrd_jax.errors import UserError

RTOL = 1e-4  # max |diff| allowed, relative to the largest |logit| of the reference
EVAL_BATCH = 250
PARAMS_FILE = "params.npz"
SAVED_MODEL_DIR = "saved_model"
TFLITE_FILE = "model.tflite"
REPORT_FILE = "export.json"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"


# ------------------------------------------------------------------ TensorFlow


def _tf():
  """TensorFlow, imported on first use and kept off the accelerators."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("the export needs TensorFlow: pip install tensorflow-cpu "
                    f"(import failed: {e}).") from None
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # already initialised elsewhere in this process
    pass
  return tf


# ------------------------------------------------------------------ numerics


def compare(reference: np.ndarray, logits: np.ndarray, rtol: float = RTOL) -> dict:
  """How far `logits` is from `reference` ([N, C] each): the export's pass criterion."""
  reference = np.asarray(reference, np.float32)
  logits = np.asarray(logits, np.float32)
  if reference.shape != logits.shape:
    raise ValueError(f"shapes differ: {reference.shape} vs {logits.shape}")
  max_abs_diff = float(np.max(np.abs(reference - logits))) if reference.size else 0.0
  max_abs_logit = float(np.max(np.abs(reference))) if reference.size else 0.0
  tolerance = rtol * max(max_abs_logit, 1e-30)
  same = np.argmax(reference, -1) == np.argmax(logits, -1)
  finite = bool(np.all(np.isfinite(logits)))
  return {
      "num_images": int(reference.shape[0]),
      "max_abs_diff": max_abs_diff,
      "max_abs_logit": max_abs_logit,
      "rel_diff": max_abs_diff / max(max_abs_logit, 1e-30),
      "tolerance": tolerance,
      "top1_agreement": float(np.mean(same)) if same.size else 1.0,
      "top1_changed": int(np.sum(~same)),
      "passed": bool(finite and max_abs_diff <= tolerance and np.all(same)),
  }


def _in_batches(fn, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
  return np.concatenate([np.asarray(fn(images[i:i + batch]))
                         for i in range(0, len(images), batch)], axis=0)


def inference_fn(net: models.ResNet, variables, mean, std):
  """jitted uint8 NHWC images -> float32 logits, normalisation inside (as deployed)."""
  from jointrd_jax import datasets  # pylint: disable=g-import-not-at-top
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)

  @jax.jit
  def f(variables, images):
    logits, _ = net.apply(variables, datasets.normalize(images, mean, std), train=False)
    return logits.astype(jnp.float32)

  def call(images):
    # Full fp32 convs also on GPUs/TPUs (whose default may be TF32/bf16 passes): the
    # check compares two fp32 networks against a 1e-4 tolerance.
    with jax.default_matmul_precision("highest"):
      return f(variables, images)

  return call


# ------------------------------------------------------------------ data


def check_images(run_dir: str, num_images: int):
  """The first `num_images` test images of the run (uint8), their labels, mean, std, name.

  Loaded with the dataset keys of the run's config.json and `download=False`.
  """
  from jointrd_jax import datasets  # pylint: disable=g-import-not-at-top
  from jointrd_jax.sharding import make_mesh  # pylint: disable=g-import-not-at-top
  if num_images <= 0:
    raise UserError(f"--num_images={num_images} must be positive.")
  cfg = workdir_lib.read_config(run_dir)
  dataset = cfg.get("dataset")
  if not dataset:
    raise UserError(f"{run_dir}/config.json names no dataset; it is not a run's config.")
  syn = cfg.get("synthetic") or {}
  kw = {k: syn[k[len("synthetic_"):]] for k in (
      "synthetic_train_size", "synthetic_test_size", "synthetic_num_classes",
      "synthetic_image_size") if k[len("synthetic_"):] in syn}
  try:
    data = datasets.load(dataset, mesh=make_mesh(jax.devices()[:1]),
                               data_dir=cfg.get("data_dir", ""), download=False, **kw)
  except UserError as e:
    raise UserError(f"the check images of {run_dir} (dataset {dataset!r} from its config.json, "
                    f"test split) cannot be loaded: {e}") from None
  n = min(int(num_images), data.num_eval)
  return (data.eval_images[:n], data.eval_labels[:n], data.mean, data.std, data.name,
          data.image_shape)


# ------------------------------------------------------------------ npz


def save_npz(path: str, params) -> None:
  np.savez(path, **fold.to_numpy(params))


def load_npz(path: str) -> dict:
  """The nested params tree of a `params.npz` written by `save_npz`."""
  tree: dict = {}
  with np.load(path, allow_pickle=False) as f:
    for key in f.files:
      node = tree
      *parents, leaf = key.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = f[key]
  return tree


# ------------------------------------------------------------------ TF exports


def write_saved_model(path: str, folded_net: models.ResNet, params, mean, std,
                      image_shape) -> None:
  """SavedModel: uint8 `images` [b, H, W, C] -> float32 `logits` [b, C] (see module doc)."""
  tf = _tf()
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  from jointrd_jax import datasets  # pylint: disable=g-import-not-at-top
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  h, w, c = (int(d) for d in image_shape)

  def infer(params, images):
    x = datasets.normalize(images, mean, std)
    logits, _ = folded_net.apply({"params": params}, x, train=False)
    return logits

  tf_fn = jax2tf.convert(infer, polymorphic_shapes=[None, f"(b, {h}, {w}, {c})"],
                         with_gradient=False, native_serialization_platforms=("cpu",))
  module = tf.Module()
  module.params = tf.nest.map_structure(
      lambda p: tf.Variable(np.asarray(p, np.float32), trainable=False), _plain(params))

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, h, w, c], tf.uint8, name=INPUT_NAME)])
  def serve(images):
    return {OUTPUT_NAME: tf_fn(module.params, images)}

  module.serve = serve
  tf.saved_model.save(module, path, signatures={"serving_default": serve})


def _plain(tree):
  if hasattr(tree, "items"):
    return {k: _plain(v) for k, v in tree.items()}
  return tree


def run_saved_model(path: str, images: np.ndarray) -> np.ndarray:
  tf = _tf()
  fn = tf.saved_model.load(path).signatures["serving_default"]
  return _in_batches(lambda x: fn(**{INPUT_NAME: tf.constant(x)})[OUTPUT_NAME].numpy(), images)


def write_tflite(saved_model_dir: str, path: str) -> int:
  """Converts the SavedModel to TFLite builtins; returns the file size in bytes."""
  tf = _tf()
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f"TFLite conversion of {saved_model_dir} failed: {e}") from e
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def run_tflite(path: str, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
  """Logits of the TFLite model at `path` (tf.lite.Interpreter, resized per batch)."""
  tf = _tf()
  import warnings  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice
    warnings.simplefilter("ignore")
    interpreter = tf.lite.Interpreter(model_path=path)
  inp = interpreter.get_input_details()[0]
  out = interpreter.get_output_details()[0]
  shape = None
  results = []
  for i in range(0, len(images), batch):
    x = np.ascontiguousarray(images[i:i + batch], dtype=inp["dtype"])
    if shape != x.shape:
      interpreter.resize_tensor_input(inp["index"], x.shape)
      interpreter.allocate_tensors()
      shape = x.shape
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    results.append(np.array(interpreter.get_tensor(out["index"])))
  return np.concatenate(results, axis=0)


# ------------------------------------------------------------------ the export


def _prepare_out(out_dir: str, overwrite: bool) -> str:
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    if not overwrite:
      raise UserError(f"--out={out_dir} is not empty; choose a new directory or pass "
                      "--overwrite to replace its export.")
    for name in (PARAMS_FILE, SAVED_MODEL_DIR, TFLITE_FILE, REPORT_FILE):
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
           overwrite: bool = False, log=print) -> dict:
  """Folds, checks and exports network `which` of run `run_dir` into `out_dir`.

  Returns the report written to `out_dir/export.json`. Raises UserError when a check fails
  (the files written so far stay, export.json records the failure).
  """
  if not os.path.isfile(os.path.join(run_dir, workdir_lib.CONFIG_FILE)):
    raise UserError(f"--workdir={run_dir} holds no {workdir_lib.CONFIG_FILE}: pass the workdir of "
                    "a run (config.json + checkpoints/), e.g. one of experiments.main or "
                    "experiments.convert_torch.")
  net, variables, meta = checkpoints.load_network(run_dir, which)
  images, labels, mean, std, dataset, image_shape = check_images(run_dir, num_images)
  if list(image_shape) != list(meta["image_shape"]):
    raise UserError(f"the images of dataset {dataset!r} are {tuple(image_shape)} but the network "
                    f"in {run_dir} was trained on {tuple(meta['image_shape'])}.")
  out_dir = _prepare_out(out_dir, overwrite)
  folded_net, folded = fold.fold(net, variables)

  reference = _in_batches(inference_fn(net, variables, mean, std), images)
  folded_logits = _in_batches(inference_fn(folded_net, folded, mean, std), images)
  checks = {"fold": compare(reference, folded_logits)}
  log(f"fold check on {len(images)} test images of {dataset}: max |logit diff| "
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
      "check_data": {"dataset": dataset, "split": "test", "num_images": int(len(images)),
                     "accuracy_reference": float(np.mean(np.argmax(reference, -1) == labels))},
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
  log(f"exported {which} of {run_dir} to {out_dir}: {PARAMS_FILE}, {SAVED_MODEL_DIR}/, "
      f"{TFLITE_FILE}, {REPORT_FILE}")
  return report

