"""Input pipeline: CIFAR-10/100 (TFDS), a user `.npz` file, or synthetic data.

Layout
------
The training split is small (CIFAR: 50,000 x 32x32x3 uint8 = 150 MB), so it is
held REPLICATED on every device of the mesh as one uint8 array. Each epoch's
order is a single GLOBAL permutation keyed by (seed, epoch), and the random
augmentation of step s is keyed by (seed, epoch, s) for the whole global batch.
The batch gather + crop + flip + normalise is one jitted function whose output
is split over the `data` axis, so every device gathers and augments only its
own slice of the global batch. Consequently the batches are bit-identical
whatever the number of devices or processes (jax's threefry PRNG is
partitionable by default, so a sharded draw equals the unsharded one), and a
run can be resumed mid-epoch (`start_step`) with exactly the batches it would
have seen. In a multi-process run every process loads the full training split
into host memory and supplies its copy to its own devices.

Each epoch uses `num_train // batch_size` steps; the remaining
`num_train % batch_size` examples of that epoch's permutation are dropped. The
permutation changes every epoch, so a different subset is dropped each time.

Evaluation data stays on the host (every process holds the whole eval split).
Each global eval batch is padded to `batch_size` with a 0/1 `mask`; process p
supplies rows [p*B/P, (p+1)*B/P) of it, so every eval example is seen exactly
once with mask 1.

TensorFlow / TFDS are imported lazily, only to load CIFAR, so synthetic and
npz data work on machines without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import zipfile
from typing import Iterator

from absl import logging
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from jointrd_jax.errors import UserError
from jointrd_jax.sharding import batch_sharded, check_batch_size, replicated

# name -> (pretty name, num_classes, mean, std) in [0, 1] pixel scale.
_TFDS = {
    "cifar100": ("CIFAR-100", 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "cifar10": ("CIFAR-10", 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
_CHOICES = "cifar100, cifar10, npz:PATH, synthetic"
_NPZ_FORMAT = ("expected an .npz with x_train, x_test: uint8 [N,H,W,C] (same H,W,C) and "
               "y_train, y_test: integer [N] labels >= 0")
_SYNTHETIC_SEED = 20240917


@dataclasses.dataclass(eq=False)
class Data:
  """A loaded dataset. Train arrays live on the mesh, eval arrays on the host."""
  name: str  # 'cifar100', 'cifar10', 'npz:/path', 'synthetic'
  num_classes: int
  image_shape: tuple  # (H, W, C)
  mean: np.ndarray  # float32 (C,), [0, 1] pixel scale
  std: np.ndarray  # float32 (C,)
  pad: int  # random-crop zero padding: round(H / 8), 4 for 32x32
  train_images: jax.Array = dataclasses.field(repr=False)  # uint8 [N,H,W,C], replicated
  train_labels: jax.Array = dataclasses.field(repr=False)  # int32 [N], replicated
  eval_images: np.ndarray = dataclasses.field(repr=False)  # uint8 [M,H,W,C], host
  eval_labels: np.ndarray = dataclasses.field(repr=False)  # int32 [M], host
  eval_split: str  # 'test' or 'holdout'
  mesh: Mesh = dataclasses.field(repr=False)

  @property
  def num_train(self) -> int:
    return int(self.train_labels.shape[0])

  @property
  def num_eval(self) -> int:
    return int(self.eval_labels.shape[0])


# --------------------------------------------------------------------------- load


def load(dataset: str, *, mesh: Mesh, data_dir: str = "", download: bool = True,
         holdout: int = 0, holdout_seed: int = 0, synthetic_train_size: int = 50000,
         synthetic_test_size: int = 10000, synthetic_num_classes: int = 100,
         synthetic_image_size: int = 32) -> Data:
  """Loads `dataset` ('cifar100', 'cifar10', 'npz:PATH' or 'synthetic').

  With `holdout` > 0, a random subset (seeded by `holdout_seed`) of that many
  training examples is removed from the training set and becomes the eval
  split (`eval_split='holdout'`); the test split is then not used.
  """
  name = str(dataset).strip()
  key = name.lower()
  if key in _TFDS:
    pretty, num_classes, mean, std = _TFDS[key]
    x_train, y_train, x_test, y_test = _load_tfds(key, pretty, data_dir, download)
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    name = key
  elif key.startswith("npz:"):
    x_train, y_train, x_test, y_test = _load_npz(name[len("npz:"):])
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    mean, std = _channel_stats(x_train)
  elif key == "synthetic":
    x_train, y_train, x_test, y_test = synthetic_arrays(
        synthetic_train_size, synthetic_test_size, synthetic_num_classes,
        synthetic_image_size)
    num_classes = int(synthetic_num_classes)
    # The statistics of these i.i.d. images are estimated on (at most) the
    # first 4,096, which keeps generation under a second.
    mean, std = _channel_stats(x_train[:4096])
    logging.warning(
        "SYNTHETIC DATA: %d train / %d test random %dx%d images of %d classes "
        "(class-dependent colour pattern + noise); results say nothing about CIFAR.",
        len(y_train), len(y_test), synthetic_image_size, synthetic_image_size,
        num_classes)
  else:
    raise UserError(f"unknown dataset {dataset!r}; valid choices: {_CHOICES} "
                    "(npz:PATH: a .npz file with x_train, y_train, x_test, y_test).")

  y_train = y_train.astype(np.int32)
  y_test = y_test.astype(np.int32)
  eval_split = "test"
  holdout = int(holdout)
  if holdout < 0:
    raise UserError(f"holdout={holdout} must be >= 0.")
  if holdout:
    if holdout >= len(y_train):
      raise UserError(f"holdout={holdout} must be smaller than the {len(y_train)} "
                      f"training examples of {name}.")
    order = np.random.default_rng(holdout_seed).permutation(len(y_train))
    held, kept = np.sort(order[:holdout]), np.sort(order[holdout:])
    x_test, y_test = x_train[held], y_train[held]
    x_train, y_train = x_train[kept], y_train[kept]
    eval_split = "holdout"

  h = x_train.shape[1]
  return Data(
      name=name,
      num_classes=num_classes,
      image_shape=tuple(int(d) for d in x_train.shape[1:]),
      mean=np.asarray(mean, np.float32),
      std=np.asarray(std, np.float32),
      pad=int(round(h / 8)),
      train_images=_replicate(np.ascontiguousarray(x_train), mesh),
      train_labels=_replicate(np.ascontiguousarray(y_train), mesh),
      eval_images=np.ascontiguousarray(x_test),
      eval_labels=np.ascontiguousarray(y_test),
      eval_split=eval_split,
      mesh=mesh,
  )


def _replicate(x: np.ndarray, mesh: Mesh) -> jax.Array:
  """A global array replicated on every device; each process supplies its copy."""
  return jax.make_array_from_callback(x.shape, replicated(mesh), lambda index: x[index])


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 images, in [0, 1] pixel scale (exact)."""
  c = x.shape[-1]
  counts = np.zeros((c, 256), np.int64)  # per-channel histogram
  offsets = (np.arange(c) * 256).astype(np.uint16 if c <= 256 else np.uint32)
  flat = x.reshape(-1, c)
  for i in range(0, len(flat), 1 << 20):
    code = flat[i:i + (1 << 20)].astype(offsets.dtype) + offsets
    counts += np.bincount(code.ravel(), minlength=c * 256).reshape(c, 256)
  values = np.arange(256, dtype=np.float64) / 255
  n = np.maximum(counts.sum(1), 1)
  mean = counts @ values / n
  std = np.sqrt(np.maximum(counts @ values**2 / n - mean**2, 0.0))
  std = np.where(std > 0, std, 1.0)  # a constant channel: avoid dividing by zero
  return mean.astype(np.float32), std.astype(np.float32)


def _load_tfds(name: str, pretty: str, data_dir: str, download: bool):
  """CIFAR from TFDS as numpy (x_train, y_train, x_test, y_test)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    tf.config.set_visible_devices([], "GPU")  # keep TF off the accelerators
  except RuntimeError:  # TF already initialised its devices elsewhere
    pass
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = data_dir or None
  builder = tfds.builder(name, data_dir=data_dir)
  where = data_dir or builder.data_dir_root
  offline = (f"prepare it on a machine with internet with `tfds build {name} --data_dir=DIR` "
             f"(or python -c 'import tensorflow_datasets as tfds; "
             f"tfds.load(\"{name}\", data_dir=\"DIR\")'), copy DIR here and pass "
             f"--config.data_dir=DIR")
  if not builder.is_prepared():
    if not download:
      raise UserError(f"{pretty} is not prepared in {where} and --config.download=False; "
                      f"{offline}.")
    logging.info("Downloading and preparing %s into %s (needs internet).", pretty, where)
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"downloading {pretty} into {where} failed (no network?): "
                      f"{type(e).__name__}: {str(e)[:200]}; to work offline, {offline}.") from e
  arrays = []
  for split in ("train", "test"):
    # Batches of 10,000 rather than batch_size=-1: the latter needs the split
    # sizes from the metadata, which `tfds.testing.mock_data` does not have.
    ds = tfds.load(name, split=split, data_dir=data_dir, download=False,
                   batch_size=10000, as_supervised=True, shuffle_files=False)
    xs, ys = zip(*tfds.as_numpy(ds))
    arrays += [np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int32)]
  return tuple(arrays)


def _load_npz(path: str):
  """Validated (x_train, y_train, x_test, y_test) from an .npz file."""
  where = f"npz:{path}"
  if not path or not os.path.isfile(path):
    raise UserError(f"{where}: no such file; {_NPZ_FORMAT}.")
  if not zipfile.is_zipfile(path):
    raise UserError(f"{where}: cannot be read: not an .npz (zip) file, e.g. from "
                    f"np.savez; {_NPZ_FORMAT}.")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
      if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)} (has "
                        f"{', '.join(f.files) or 'none'}); {_NPZ_FORMAT}.")
      arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  except UserError:
    raise
  except ValueError as e:
    if "pickle" in str(e).lower():
      raise UserError(f"{where}: contains a pickled object array, which is refused "
                      f"(allow_pickle=False); {_NPZ_FORMAT}.") from e
    raise UserError(f"{where}: cannot be read as .npz ({e}); {_NPZ_FORMAT}.") from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{where}: cannot be read as .npz ({type(e).__name__}: {e}); "
                    f"{_NPZ_FORMAT}.") from e

  for split in ("train", "test"):
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    if x.dtype != np.uint8:
      raise UserError(f"{where}: x_{split} has dtype {x.dtype}, not uint8; {_NPZ_FORMAT}.")
    if x.ndim != 4:
      raise UserError(f"{where}: x_{split} has shape {x.shape}, not rank 4 [N,H,W,C]; "
                      f"{_NPZ_FORMAT}.")
    if not np.issubdtype(y.dtype, np.integer):
      raise UserError(f"{where}: y_{split} has dtype {y.dtype}, not an integer type; "
                      f"{_NPZ_FORMAT}.")
    if y.ndim == 2 and y.shape[1] == 1:  # keras-style [N, 1] labels
      y = y[:, 0]
    if y.ndim != 1:
      raise UserError(f"{where}: y_{split} has shape {y.shape}, not rank 1 [N]; "
                      f"{_NPZ_FORMAT}.")
    if len(y) != len(x):
      raise UserError(f"{where}: y_{split} has {len(y)} labels but x_{split} has "
                      f"{len(x)} images; {_NPZ_FORMAT}.")
    if len(y) and y.min() < 0:
      raise UserError(f"{where}: y_{split} has negative labels (min {y.min()}); "
                      f"{_NPZ_FORMAT}.")
    if len(y) and y.max() >= 2**31 - 1:
      raise UserError(f"{where}: y_{split} has labels too large for int32 "
                      f"(max {y.max()}); {_NPZ_FORMAT}.")
    arrays[f"y_{split}"] = y
  if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
    raise UserError(f"{where}: x_train images are {arrays['x_train'].shape[1:]} but x_test "
                    f"images are {arrays['x_test'].shape[1:]}; {_NPZ_FORMAT}.")
  if not len(arrays["y_train"]) or not len(arrays["y_test"]):
    raise UserError(f"{where}: empty split (x_train {len(arrays['y_train'])}, x_test "
                    f"{len(arrays['y_test'])} images); {_NPZ_FORMAT}.")
  if min(arrays["x_train"].shape[1:]) == 0:
    raise UserError(f"{where}: empty image shape {arrays['x_train'].shape[1:]}; {_NPZ_FORMAT}.")
  return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def synthetic_arrays(train_size: int, test_size: int, num_classes: int, image_size: int):
  """A deterministic learnable dataset: (x_train, y_train, x_test, y_test).

  Each class has a fixed random 4x4 colour pattern (values 0..128) that is
  upsampled to the image size; every image is its class pattern plus uniform
  noise 0..127.
  """
  for what, v in (("synthetic_train_size", train_size), ("synthetic_test_size", test_size),
                  ("synthetic_num_classes", num_classes), ("synthetic_image_size", image_size)):
    if int(v) <= 0:
      raise UserError(f"{what}={v} must be positive.")
  s = int(image_size)
  rng = np.random.default_rng(_SYNTHETIC_SEED)
  low = rng.integers(0, 129, (num_classes, 4, 4, 3), dtype=np.uint8)
  y_train = rng.integers(0, num_classes, train_size).astype(np.int32)
  y_test = rng.integers(0, num_classes, test_size).astype(np.int32)
  rows = np.arange(s) * 4 // s  # nearest-neighbour upsampling 4 -> s
  pattern = low[:, rows][:, :, rows].reshape(num_classes, s * s * 3)
  bits = np.random.SFC64(_SYNTHETIC_SEED)
  out = []
  for y in (y_train, y_test):
    n = len(y)
    words = -(-n * s * s * 3 // 8)
    x = bits.random_raw(words).view(np.uint8)[:n * s * s * 3].reshape(n, s * s * 3)
    np.right_shift(x, 1, out=x)  # noise in 0..127
    for i in range(0, n, 256):  # in cache-sized chunks: 10x faster than all at once
      x[i:i + 256] += pattern[y[i:i + 256]]
    x = x.reshape(n, s, s, 3)
    out += [x, y]
  return tuple(out)


# ---------------------------------------------------------------------- batches


def steps_per_epoch(num_train: int, batch_size: int) -> int:
  """Whole batches per epoch; the remaining num_train % batch_size are dropped."""
  if batch_size <= 0:
    raise UserError(f"batch size {batch_size} must be positive.")
  if batch_size > num_train:
    raise UserError(f"batch size {batch_size} is larger than the {num_train} training "
                    "examples; use a smaller batch size.")
  return num_train // batch_size


def normalize(images_u8, mean, std):
  """(x / 255 - mean) / std in float32."""
  x = jnp.asarray(images_u8).astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def augment(images_u8, key, *, mean, std, pad: int):
  """Random crop + random horizontal flip + normalise, independently per example.

  The crop zero-pads the raw uint8 images by `pad` on each side and takes a
  random HxW window (like torchvision's RandomCrop(H, padding=pad)); the flip
  has probability 0.5. `pad` must be a Python int. Returns float32.
  """
  index = jnp.arange(images_u8.shape[0])
  return normalize(_crop_flip(images_u8, index, key, pad), mean, std)


def _crop_flip(images_u8, index, key, pad: int):
  """augment's crop and flip of images_u8[index], as ONE gather from images_u8.

  Output pixel (i, j) of example b is source pixel (oy+i-pad, ox+j'-pad) of
  image index[b], where j' = W-1-j if flipped else j, and 0 when that lies in
  the padding. Gathering straight from the (replicated) dataset with
  batch-sharded indices keeps every device on its own slice.
  """
  _, h, w, _ = images_u8.shape
  b = index.shape[0]
  k_crop, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1) - pad
  flip = jax.random.bernoulli(k_flip, 0.5, (b,))
  rows = offsets[:, :1] + jnp.arange(h)  # [b, h]
  cols = offsets[:, 1:] + jnp.where(flip[:, None], w - 1 - jnp.arange(w), jnp.arange(w))
  inside = (((rows >= 0) & (rows < h))[:, :, None]
            & ((cols >= 0) & (cols < w))[:, None, :])  # [b, h, w]
  pixels = images_u8[index[:, None, None], jnp.clip(rows, 0, h - 1)[:, :, None],
                     jnp.clip(cols, 0, w - 1)[:, None, :]]  # [b, h, w, c]
  return jnp.where(inside[..., None], pixels, jnp.zeros((), images_u8.dtype))


def _epoch_key(seed, epoch):
  return jax.random.fold_in(jax.random.key(seed), epoch)


@functools.lru_cache(maxsize=None)
def _permutation_fn(mesh: Mesh, n: int):
  return jax.jit(lambda seed, epoch: jax.random.permutation(_epoch_key(seed, epoch), n),
                 out_shardings=replicated(mesh))


@functools.lru_cache(maxsize=None)
def _train_batch_fn(mesh: Mesh, batch_size: int, pad: int, dtype):
  sharding = batch_sharded(mesh)

  def fn(images, labels, perm, seed, epoch, step, mean, std):
    idx = jax.lax.dynamic_slice_in_dim(perm, step * batch_size, batch_size)
    idx = jax.lax.with_sharding_constraint(idx, sharding)  # each device: its slice
    key = jax.random.fold_in(jax.random.fold_in(_epoch_key(seed, epoch), step), 1)
    image = normalize(_crop_flip(images, idx, key, pad), mean, std)  # = augment(images[idx])
    return {"image": image.astype(dtype), "label": labels[idx]}

  return jax.jit(fn, out_shardings=sharding)


@functools.lru_cache(maxsize=None)
def _eval_batch_fn(mesh: Mesh, dtype):
  return jax.jit(lambda x, y, m, mean, std: {"image": normalize(x, mean, std).astype(dtype),
                                             "label": y, "mask": m},
                 out_shardings=batch_sharded(mesh))


def _int32(v: int, what: str) -> np.ndarray:
  v = int(v)
  if not -2**31 <= v < 2**31:
    raise ValueError(f"{what}={v} does not fit in int32.")
  return np.int32(v)


def train_batches(data: Data, *, seed: int, epoch: int, batch_size: int, start_step: int = 0,
                  dtype=jnp.float32, what: str = "config.batch_size") -> Iterator[dict]:
  """The augmented training batches of one epoch, from `start_step` on.

  Yields {'image': dtype [B,H,W,C] normalised, 'label': int32 [B]}, global
  arrays split over the batch axis. Step s of epoch e holds examples
  perm[s*B:(s+1)*B] of perm = permutation(fold_in(key(seed), e), N): the same
  for any device or process count.
  """
  check_batch_size(batch_size, data.mesh, what)
  steps = steps_per_epoch(data.num_train, batch_size)
  if not 0 <= start_step <= steps:
    raise ValueError(f"start_step={start_step} is outside [0, {steps}].")
  seed_, epoch_ = _int32(seed, "seed"), _int32(epoch, "epoch")
  fn = _train_batch_fn(data.mesh, batch_size, data.pad, jnp.dtype(dtype))
  perm_fn = _permutation_fn(data.mesh, data.num_train)

  def generate():
    perm = perm_fn(seed_, epoch_)
    for step in range(start_step, steps):
      yield fn(data.train_images, data.train_labels, perm, seed_, epoch_, np.int32(step),
               data.mean, data.std)

  return generate()


def eval_batches(data: Data, *, batch_size: int, dtype=jnp.float32,
                 what: str = "config.batch_size") -> Iterator[dict]:
  """The whole eval split once, in order, as padded global batches.

  Yields {'image': dtype [B,H,W,C] normalised, 'label': int32 [B],
  'mask': float32 [B]} split over the batch axis; mask is 1 for real examples
  and 0 for the padding of the last batch.
  """
  check_batch_size(batch_size, data.mesh, what)
  n = data.num_eval
  num_batches = max(1, math.ceil(n / batch_size))
  procs, proc = jax.process_count(), jax.process_index()
  local = batch_size // procs
  sharding = batch_sharded(data.mesh)
  fn = _eval_batch_fn(data.mesh, jnp.dtype(dtype))
  shape = (batch_size,) + tuple(data.image_shape)

  def generate():
    for b in range(num_batches):
      lo = b * batch_size + proc * local
      hi = min(lo + local, n)
      real = max(0, hi - lo)
      x = np.zeros((local,) + shape[1:], np.uint8)
      y = np.zeros((local,), np.int32)
      m = np.zeros((local,), np.float32)
      if real:
        x[:real] = data.eval_images[lo:hi]
        y[:real] = data.eval_labels[lo:hi]
        m[:real] = 1.0
      put = lambda a, s: jax.make_array_from_process_local_data(sharding, a, s)
      yield fn(put(x, shape), put(y, (batch_size,)), put(m, (batch_size,)),
               data.mean, data.std)

  return generate()
