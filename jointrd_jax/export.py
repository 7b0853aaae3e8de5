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

import contextlib
import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import checkpoints, models, predict, tensorflow_support
from jointrd_jax.models import fold
from jointrd_jax import workdir as workdir_lib
from jointrd_jax.datasets import class_names as class_names_lib
from jointrd_jax.errors import UserError

RTOL = 1e-4  # max |diff| allowed, relative to the largest |logit| of the reference
EVAL_BATCH = predict.MAX_BATCH  # images per call at 32x32; fewer for larger images
PARAMS_FILE = "params.npz"
SAVED_MODEL_DIR = predict.SAVED_MODEL_DIR
TFLITE_FILE = predict.TFLITE_FILE
LABELS_FILE = "labels.txt"
REPORT_FILE = predict.REPORT_FILE
INPUT_NAME = predict.INPUT_NAME
OUTPUT_NAME = predict.OUTPUT_NAME
CHECK_IMAGES = ("test", "random")
RANDOM_SEED = 0


# ------------------------------------------------------------------ TensorFlow


def _tf():
  """TensorFlow, imported on first use, quietly, and kept off the accelerators."""
  return predict.tf_quiet()


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


def _in_batches(fn, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """`fn` over `images` in batches (default: `predict.batch_size`, a pixel budget)."""
  return predict.run_in_batches(fn, images, batch or predict.batch_size(images.shape[1:]))


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


@dataclasses.dataclass(eq=False)
class CheckData:
  """The images the export is checked on, and the run's normalisation."""
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray | None  # int [N]; None for random images
  mean: np.ndarray  # float32 (C,)
  std: np.ndarray
  dataset: str  # the run's dataset (the source of mean/std, and of the test images)
  description: dict  # export.json `check_data` (without the accuracy)


def is_streamed(cfg: dict) -> bool:
  """Whether the run's data was streamed (ImageNet-style: imagefolder:PATH, imagenet2012,
  synthetic with an imagenet_* arch), by the trainer's own rule (`train.is_streamed`)."""
  import types  # pylint: disable=g-import-not-at-top
  from jointrd_jax import train  # pylint: disable=g-import-not-at-top
  model = cfg.get("model") or {}
  return train.is_streamed(types.SimpleNamespace(
      dataset=str(cfg.get("dataset", "")), model=types.SimpleNamespace(arch=model.get("arch"))))


def preprocessing(cfg: dict, image_shape) -> dict:
  """What a caller does to an image file before the model (export.json `preprocessing`):
  streamed (ImageNet-style) runs were evaluated on Resize(eval_resize) + CenterCrop(H, W)
  (`config.streamed`; 256 for 224); in-memory (CIFAR-style) data has its final size, so a
  photo is simply resized."""
  if not is_streamed(cfg):
    return {"method": "resize"}
  o = cfg.get("streamed") or {}
  h, w = int(image_shape[0]), int(image_shape[1])
  if o.get("eval_resize") and int(o.get("image_size", 0)) == min(h, w):
    return {"method": "center_crop", "resize": int(o["eval_resize"])}
  return predict.default_preprocessing("imagenet", image_shape)


@contextlib.contextmanager
def _tfds_quiet(active: bool):
  """absl warnings off for the block: TFDS warns about a data_dir without the dataset
  ("Variant folder ... has no dataset_info.json") before our one-line error says so."""
  if not active:
    yield
    return
  from absl import logging  # pylint: disable=g-import-not-at-top
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


def _load_arrays(run_dir: str, cfg: dict, dataset: str, why: str):
  """The run's dataset as host arrays (CIFAR, npz, synthetic), `download=False`."""
  from jointrd_jax.datasets import arrays  # pylint: disable=g-import-not-at-top
  syn = cfg.get("synthetic") or {}
  kw = {f"synthetic_{k}": syn[k] for k in ("train_size", "test_size", "num_classes",
                                           "image_size") if k in syn}
  try:
    with _tfds_quiet(dataset.lower() in arrays._TFDS):  # pylint: disable=protected-access
      return arrays.load_arrays(dataset, data_dir=cfg.get("data_dir", ""), download=False,
                                **kw)
  except UserError as e:
    tfds = dataset.lower() in arrays._TFDS  # pylint: disable=protected-access
    hint = (" Or check the export on random images: --check_images=random."
            if why == "check images" and tfds else "")
    raise UserError(f"the {why} of {run_dir} (dataset {dataset!r} from its config.json) "
                    f"cannot be loaded: {e}{hint}") from None


def normalization(run_dir: str, cfg: dict, dataset: str):
  """The run's per-channel (mean, std), without loading images where it is known:
  CIFAR's TFDS constants, ImageNet's for streamed runs (`datasets.streamed`); in-memory
  npz and synthetic data are loaded (statistics of their training images)."""
  from jointrd_jax.datasets import arrays, streamed  # pylint: disable=g-import-not-at-top
  key = dataset.lower()
  if is_streamed(cfg):
    mean, std = streamed.IMAGENET_MEAN, streamed.IMAGENET_STD
  elif key in arrays._TFDS:  # pylint: disable=protected-access
    _, _, mean, std = arrays._TFDS[key]  # pylint: disable=protected-access
  else:
    a = _load_arrays(run_dir, cfg, dataset, "normalisation statistics")
    mean, std = a.mean, a.std
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def _streamed_check_images(run_dir: str, cfg: dict, dataset: str, num_images: int,
                           image_shape) -> CheckData:
  """The first `num_images` images of a streamed run's validation split, decoded and
  resized + centre-cropped exactly as its evaluation did (`datasets.streamed`)."""
  from jointrd_jax.datasets import streamed  # pylint: disable=g-import-not-at-top
  from jointrd_jax.sharding import make_mesh  # pylint: disable=g-import-not-at-top
  _tf()  # imported quietly before the input pipeline imports it
  o = cfg.get("streamed") or {}
  syn = cfg.get("synthetic") or {}
  kw = {f"synthetic_{k}": syn[k] for k in ("train_size", "test_size", "num_classes")
        if k in syn}
  try:
    with _tfds_quiet(dataset.lower() == "imagenet2012"):
      data = streamed.load(dataset, mesh=make_mesh(jax.devices()[:1]),
                           data_dir=cfg.get("data_dir", ""),
                           image_size=int(o.get("image_size", image_shape[0])),
                           eval_resize=int(o.get("eval_resize", 256)), **kw)
    if tuple(data.image_shape) != tuple(image_shape):
      raise UserError(f"its evaluation images are {tuple(data.image_shape)} but the network "
                      f"was trained on {tuple(image_shape)}.")
    n = min(int(num_images), data.num_eval)
    batch = next(iter(data.host_eval_batches(batch_size=n, process_index=0,
                                             process_count=1)))
  except UserError as e:
    raise UserError(f"the check images of {run_dir} (dataset {dataset!r} from its "
                    f"config.json, validation split) cannot be loaded: {e} Or check the "
                    "export on random images: --check_images=random.") from None
  keep = np.asarray(batch["mask"]) > 0
  images, labels = np.asarray(batch["image"])[keep], np.asarray(batch["label"])[keep]
  return CheckData(images, labels, data.mean, data.std, data.name, {
      "images": "test", "seed": None, "num_images": int(len(images)), "dataset": data.name,
      "split": data.eval_split,
      "description": f"the first {len(images)} images of the {data.eval_split} split of "
                     f"{data.name}, resized to {data.options.eval_resize} and centre-cropped "
                     f"as in evaluation"})


def random_images(num_images: int, image_shape, seed: int = RANDOM_SEED) -> np.ndarray:
  """`num_images` deterministic uint8 images of `image_shape` (H, W, C). Image i, drawn
  in turn from one `rng = np.random.default_rng(seed)`: a 4x4 grid
  `rng.integers(0, 256, (4, 4, C))`, nearest-upsampled to H x W (pixel (r, q) takes grid
  cell (r * 4 // H, q * 4 // W)), plus noise `rng.integers(-32, 33, (H, W, C))`, clipped to
  0..255. The first n images are the same whatever `num_images`."""
  h, w, c = (int(d) for d in image_shape)
  rng = np.random.default_rng(seed)
  rows, cols = np.arange(h) * 4 // h, np.arange(w) * 4 // w
  out = np.empty((int(num_images), h, w, c), np.uint8)
  for i in range(int(num_images)):
    grid = rng.integers(0, 256, (4, 4, c))
    noise = rng.integers(-32, 33, (h, w, c))
    out[i] = np.clip(grid[rows][:, cols] + noise, 0, 255)
  return out


def check_images(run_dir: str, num_images: int, image_shape, images: str = "test"
                 ) -> CheckData:
  """The export's check images (see the module doc, step 2) for a network trained on
  `image_shape` (H, W, C) images.

  `images='test'`: the first `num_images` test images of the run's dataset (its
  config.json keys, `download=False`; a streamed run's validation split as its
  evaluation saw it); `images='random'`: `random_images(num_images,
  image_shape)`.
  """
  if images not in CHECK_IMAGES:
    raise UserError(f"--check_images={images} is not one of {', '.join(CHECK_IMAGES)}.")
  if num_images <= 0:
    raise UserError(f"--num_images={num_images} must be positive.")
  cfg = workdir_lib.read_config(run_dir)
  dataset = cfg.get("dataset")
  if not dataset:
    raise UserError(f"{run_dir}/config.json names no dataset; it is not a run's config.")
  dataset = str(dataset).strip()
  image_shape = tuple(int(d) for d in image_shape)
  if images == "random":
    mean, std = normalization(run_dir, cfg, dataset)
    if len(mean) != image_shape[-1]:
      raise UserError(f"dataset {dataset!r} of {run_dir} has {len(mean)} channels but the "
                      f"network was trained on {image_shape} images.")
    x = random_images(num_images, image_shape, RANDOM_SEED)
    return CheckData(x, None, mean, std, dataset, {
        "images": "random", "seed": RANDOM_SEED, "num_images": int(num_images),
        "dataset": dataset, "split": None,
        "description": f"{int(num_images)} random uint8 images (jointrd_jax.export."
                       f"random_images, seed {RANDOM_SEED}: random 4x4 colour grid "
                       f"upsampled + noise); the normalisation is {dataset}'s"})
  if is_streamed(cfg):
    return _streamed_check_images(run_dir, cfg, dataset, num_images, image_shape)
  a = _load_arrays(run_dir, cfg, dataset, "check images")
  if tuple(a.x_test.shape[1:]) != image_shape:
    raise UserError(f"the images of dataset {a.name!r} are {tuple(a.x_test.shape[1:])} but "
                    f"the network in {run_dir} was trained on {image_shape}.")
  n = min(int(num_images), len(a.x_test))
  return CheckData(a.x_test[:n], a.y_test[:n], a.mean, a.std, a.name, {
      "images": "test", "seed": None, "num_images": n, "dataset": a.name, "split": "test",
      "description": f"the first {n} images of the test split of {a.name}"})


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
  with tensorflow_support.stderr_silenced():
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


def _plain(tree):
  if hasattr(tree, "items"):
    return {k: _plain(v) for k, v in tree.items()}
  return tree


def run_saved_model(path: str, images: np.ndarray) -> np.ndarray:
  """Logits of the SavedModel at `path` (its `serving_default` signature)."""
  return _in_batches(predict.SavedModel(path), images)


def write_tflite(saved_model_dir: str, path: str) -> int:
  """Converts the SavedModel to TFLite builtins; returns the file size in bytes."""
  tf = _tf()
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    with tensorflow_support.stderr_silenced():  # the converter's C++ log lines
      blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f"TFLite conversion of {saved_model_dir} failed: {e}") from e
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def run_tflite(path: str, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """Logits of the TFLite model at `path` (tf.lite.Interpreter, resized per batch)."""
  return _in_batches(predict.TFLiteModel(path), images, batch)


# ------------------------------------------------------------------ the export


def _prepare_out(out_dir: str, overwrite: bool) -> str:
  out_dir = os.path.abspath(out_dir)
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    if not overwrite:
      raise UserError(f"--out={out_dir} is not empty; choose a new directory or pass "
                      "--overwrite to replace its export.")
    for name in (PARAMS_FILE, SAVED_MODEL_DIR, TFLITE_FILE, LABELS_FILE, REPORT_FILE):
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
  log(f"exported {which} of {run_dir} to {out_dir}: {PARAMS_FILE}, {SAVED_MODEL_DIR}/, "
      f"{TFLITE_FILE}, {LABELS_FILE}, {REPORT_FILE}")
  return report

