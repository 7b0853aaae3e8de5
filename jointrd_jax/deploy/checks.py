"""What an export is checked on and how: the check images, the run's normalisation, the
reference network's logits and the comparison every exported format must pass.

`compare` is the pass criterion: max |logit diff| <= RTOL * max |logit| of the reference
and no changed top-1 prediction. The check images are the run's test split (as its
evaluation saw it) or deterministic random images (`random_images`) for runs whose data
is not on this machine.
"""
from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jointrd_jax import datasets, models
from jointrd_jax.datasets import sources, streamed
from jointrd_jax.deploy import predict, runtimes
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import make_mesh
from jointrd_jax.training import workdir as workdir_lib

RTOL = 1e-4  # max |diff| allowed, relative to the largest |logit| of the reference
CHECK_IMAGES = ("test", "random")
DEFAULT_NUM_IMAGES = 1000  # check images of streamed data and random images (in-memory: all)
RANDOM_SEED = 0


# ------------------------------------------------------------------ numerics


def compare(reference: np.ndarray, logits: np.ndarray, rtol: float = RTOL) -> dict:
  """How far `logits` is from `reference` ([N, C] each): the export's pass criterion.

  Passed: finite, max |logit diff| <= tolerance (`rtol` times the largest |logit| of the
  reference), and no changed top-1 prediction except at a tie: an image whose reference
  top-1 logit exceeds the newly predicted class's by at most 2 x tolerance (moving each
  logit by at most the tolerance can swap such a pair, so fp32 rounding alone flips it;
  `top1_changed_ties` counts them, `top1_changed` counts every change)."""
  reference = np.asarray(reference, np.float32)
  logits = np.asarray(logits, np.float32)
  if reference.shape != logits.shape:
    raise ValueError(f"shapes differ: {reference.shape} vs {logits.shape}")
  max_abs_diff = float(np.max(np.abs(reference - logits))) if reference.size else 0.0
  max_abs_logit = float(np.max(np.abs(reference))) if reference.size else 0.0
  tolerance = rtol * max(max_abs_logit, 1e-30)
  ref_top, new_top = np.argmax(reference, -1), np.argmax(logits, -1)
  same = ref_top == new_top
  rows = np.arange(reference.shape[0])
  gap = reference[rows, ref_top] - reference[rows, new_top]  # >= 0
  tie = ~same & (gap <= 2 * tolerance)
  finite = bool(np.all(np.isfinite(logits)))
  return {
      "num_images": int(reference.shape[0]),
      "max_abs_diff": max_abs_diff,
      "max_abs_logit": max_abs_logit,
      "rel_diff": max_abs_diff / max(max_abs_logit, 1e-30),
      "tolerance": tolerance,
      "top1_agreement": float(np.mean(same)) if same.size else 1.0,
      "top1_changed": int(np.sum(~same)),
      "top1_changed_ties": int(np.sum(tie)),
      "passed": bool(finite and max_abs_diff <= tolerance and np.all(same | tie)),
  }


def in_batches(fn, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """`fn` over `images` in batches (default: `runtimes.batch_size`, a pixel budget)."""
  return runtimes.run_in_batches(fn, images, batch or runtimes.batch_size(images.shape[1:]))


def inference_fn(net: models.ResNet, variables, mean, std):
  """jitted uint8 NHWC images -> float32 logits, normalisation inside (as deployed)."""
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


def _family(cfg: dict) -> str | None:
  """The run's arch family ('cifar', 'imagenet'), None when its arch is unknown."""
  arch = models.ARCHS.get((cfg.get("model") or {}).get("arch"))
  return arch[0] if arch else None


def is_streamed(cfg: dict) -> bool:
  """Whether the run's data was streamed (ImageNet-style: imagefolder:PATH, imagenet2012,
  synthetic with an imagenet_* arch): its source says, for its arch's family."""
  dataset = str(cfg.get("dataset") or "")
  return bool(dataset) and sources.get(dataset).streamed(_family(cfg))


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
  level = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(level)


_loaded = None  # {key: dataset} while `loaded_once` is active


@contextlib.contextmanager
def loaded_once():
  """Within the block (or the function it decorates), a run's dataset is loaded once, and
  its SYNTHETIC DATA warning logged once: an export reads it up to four times
  (normalisation, check images, calibration, QAT). Outside, every call loads afresh."""
  global _loaded  # pylint: disable=global-statement
  outer = _loaded
  _loaded = {} if outer is None else outer
  try:
    yield
  finally:
    _loaded = outer


def _once(key, load):
  if _loaded is None:
    return load()
  if key not in _loaded:
    _loaded[key] = load()
  return _loaded[key]


def load_arrays(run_dir: str, cfg: dict, dataset: str, why: str, hint: str | None = None):
  """The run's in-memory dataset as host arrays (`sources`), `download=False`; `hint`
  ends the error line when they cannot be loaded."""
  ds = sources.get(dataset)
  settings = ds.settings_of(cfg)
  data_dir = cfg.get("data_dir", "")
  try:
    with _tfds_quiet(ds.source.tfds):
      return _once(("arrays", ds.name, data_dir, settings),
                   lambda: ds.load_arrays(data_dir=data_dir, download=False,
                                          settings=settings))
  except UserError as e:
    if hint is None:
      hint = (" Or check the export on random images: --check_images=random."
              if why == "check images" and ds.source.tfds else "")
    raise UserError(f"the {why} of {run_dir} (dataset {dataset!r} from its config.json) "
                    f"cannot be loaded: {e}{hint}") from None


def normalization(run_dir: str, cfg: dict, dataset: str):
  """The run's per-channel (mean, std), without loading images where its source knows
  them (`sources`: CIFAR's TFDS constants, also for its python-version archives;
  ImageNet's for streamed runs); others (npz, in-memory synthetic, digits) are loaded
  (statistics of their training images)."""
  ds = sources.get(dataset)
  known = ds.normalization(ds.streamed(_family(cfg)))
  if known is None:
    a = load_arrays(run_dir, cfg, dataset, "normalisation statistics")
    known = a.mean, a.std
  mean, std = known
  return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def open_streamed(cfg: dict, dataset: str, image_shape):
  """The streamed (ImageNet-style) dataset of a run, as its config read it
  (`datasets.streamed.load`); UserError when it is not here or not of `image_shape`."""
  runtimes.tf_quiet()  # imported quietly before the input pipeline imports it
  ds = sources.get(dataset)
  settings = ds.settings_of(cfg)
  o = cfg.get("streamed") or {}
  size, resize = int(o.get("image_size", image_shape[0])), int(o.get("eval_resize", 256))
  data_dir = cfg.get("data_dir", "")
  with _tfds_quiet(ds.source.tfds):
    data = _once(("streamed", ds.name, data_dir, size, resize, settings),
                 lambda: streamed.load(dataset, mesh=make_mesh(jax.devices()[:1]),
                                       data_dir=data_dir, image_size=size,
                                       eval_resize=resize, settings=settings))
  if tuple(data.image_shape) != tuple(image_shape):
    raise UserError(f"its evaluation images are {tuple(data.image_shape)} but the network "
                    f"was trained on {tuple(image_shape)}.")
  return data


def _streamed_check_images(run_dir: str, cfg: dict, dataset: str, num_images: int,
                           image_shape) -> CheckData:
  """The first `num_images` images of a streamed run's validation split, decoded and
  resized + centre-cropped exactly as its evaluation did (`datasets.streamed`)."""
  try:
    data = open_streamed(cfg, dataset, image_shape)
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


def check_images(run_dir: str, num_images: int | None, image_shape, images: str = "test"
                 ) -> CheckData:
  """The export's check images (see the module doc, step 2) for a network trained on
  `image_shape` (H, W, C) images.

  `images='test'`: the first `num_images` test images of the run's dataset (its
  config.json keys, `download=False`; a streamed run's validation split as its
  evaluation saw it); `images='random'`: `random_images(num_images,
  image_shape)`. `num_images=None`: all test images of in-memory (CIFAR-sized) data,
  `DEFAULT_NUM_IMAGES` of streamed data and of random images.
  """
  if images not in CHECK_IMAGES:
    raise UserError(f"--check_images={images} is not one of {', '.join(CHECK_IMAGES)}.")
  if num_images is not None and num_images <= 0:
    raise UserError(f"--num_images={num_images} must be positive.")
  cfg = workdir_lib.read_config(run_dir)
  dataset = cfg.get("dataset")
  if not dataset:
    raise UserError(f"{run_dir}/config.json names no dataset; it is not a run's config.")
  dataset = str(dataset).strip()
  image_shape = tuple(int(d) for d in image_shape)
  if images == "random" or is_streamed(cfg):
    num_images = DEFAULT_NUM_IMAGES if num_images is None else num_images
  if images == "random":
    mean, std = normalization(run_dir, cfg, dataset)
    if len(mean) != image_shape[-1]:
      raise UserError(f"dataset {dataset!r} of {run_dir} has {len(mean)} channels but the "
                      f"network was trained on {image_shape} images.")
    x = random_images(num_images, image_shape, RANDOM_SEED)
    return CheckData(x, None, mean, std, dataset, {
        "images": "random", "seed": RANDOM_SEED, "num_images": int(num_images),
        "dataset": dataset, "split": None,
        "description": f"{int(num_images)} random uint8 images (jointrd_jax.deploy."
                       f"checks.random_images, seed {RANDOM_SEED}: random 4x4 colour grid "
                       f"upsampled + noise); the normalisation is {dataset}'s"})
  if is_streamed(cfg):
    return _streamed_check_images(run_dir, cfg, dataset, num_images, image_shape)
  a = load_arrays(run_dir, cfg, dataset, "check images")
  if tuple(a.x_test.shape[1:]) != image_shape:
    raise UserError(f"the images of dataset {a.name!r} are {tuple(a.x_test.shape[1:])} but "
                    f"the network in {run_dir} was trained on {image_shape}.")
  n = len(a.x_test) if num_images is None else min(int(num_images), len(a.x_test))
  return CheckData(a.x_test[:n], a.y_test[:n], a.mean, a.std, a.name, {
      "images": "test", "seed": None, "num_images": n, "dataset": a.name, "split": "test",
      "description": f"the first {n} images of the test split of {a.name}"})

