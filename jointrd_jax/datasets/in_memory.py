"""Device-resident input: datasets that fit in accelerator memory (CIFAR, npz, synthetic).

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
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Iterator

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from jointrd_jax.datasets import sources
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import batch_sharded, check_batch_size, replicated


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


def _shown(labels) -> str:
  labels = [int(v) for v in labels]
  more = f" and {len(labels) - 5} more" if len(labels) > 5 else ""
  return ", ".join(map(str, labels[:5])) + more


def _check_label_sets(name: str, y_train, y_test) -> None:
  """The dataset's classes are 0..K-1 (the model has K = the largest label + 1 outputs),
  each with training examples, and every test label is one of them: a class without
  training examples cannot be learned (its test images would count as errors, silently)."""
  trained = np.unique(y_train)
  fix = ("relabel the classes to 0..K-1 in both splits alike (e.g. np.unique(np.concatenate("
         "[y_train, y_test]), return_inverse=True)) and drop the test images of classes "
         "without training images")
  unseen = np.setdiff1d(np.unique(y_test), trained)
  if len(unseen):
    count = int(np.isin(y_test, unseen).sum())
    raise UserError(f"{name}: y_test has label(s) {_shown(unseen)} ({count} images) that "
                    f"y_train never has, so no model can learn them; {fix}.")
  gaps = np.setdiff1d(np.arange(int(trained[-1]) + 1), trained)
  if len(gaps):
    raise UserError(f"{name}: y_train has no example of class {_shown(gaps)} below its "
                    f"largest label {int(trained[-1])} (the model would have outputs it "
                    f"cannot learn); {fix}.")


def load(dataset: str, *, mesh: Mesh, data_dir: str = "", download: bool = True,
         holdout: int = 0, holdout_seed: int = 0, settings=None) -> Data:
  """Loads an in-memory `dataset` ('cifar100', 'cifar10', 'npz:PATH', 'synthetic', ...:
  `sources`); `settings`: the source's own (`sources.Dataset.settings`: its `Settings`, or
  a mapping such as the config section `synthetic`).

  With `holdout` > 0, a random subset (seeded by `holdout_seed`) of that many
  training examples is removed from the training set and becomes the eval
  split (`eval_split='holdout'`); the test split is then not used.
  """
  ds = sources.get(dataset)
  a = ds.load_arrays(data_dir=data_dir, download=download, settings=settings)
  name, num_classes, mean, std = a.name, a.num_classes, a.mean, a.std
  x_train, y_train, x_test, y_test = a.x_train, a.y_train, a.x_test, a.y_test
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

  present = np.unique(y_train)
  if len(present) < 2:  # a one-class "classifier" trains to loss 0 and 100 %, silently
    where = "the training examples left after the holdout" if holdout else "the training labels"
    shown = f"only class {present[0]}" if len(present) else "no class"
    raise UserError(f"{name}: {where} hold {shown}; a classifier needs at least 2 classes "
                    f"({'lower the holdout or ' if holdout else ''}check the labels).")
  if ds.source.labels_from_data:  # K from the labels (a named dataset has its own classes)
    _check_label_sets(name, a.y_train, a.y_test)  # the file's own splits
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


def epoch_inputs(data: Data, *, seed: int, epoch: int) -> dict:
  """What the training batches of one epoch are computed from, all on the devices:
  `make_batch(inputs, step, ...)` is step `step`'s batch. For the trainer, which computes
  batches inside its jitted steps."""
  seed_, epoch_ = _int32(seed, "seed"), _int32(epoch, "epoch")
  return {"images": data.train_images, "labels": data.train_labels,
          "perm": _permutation_fn(data.mesh, data.num_train)(seed_, epoch_),
          "seed": seed_, "epoch": epoch_, "mean": data.mean, "std": data.std}


def make_batch(inputs: dict, step, *, batch_size: int, pad: int, dtype, sharding) -> dict:
  """Step `step`'s augmented batch (traceable): examples perm[step*B:(step+1)*B], each
  device gathering and augmenting only its own slice."""
  idx = jax.lax.dynamic_slice_in_dim(inputs["perm"], step * batch_size, batch_size)
  idx = jax.lax.with_sharding_constraint(idx, sharding)  # each device: its slice
  key = jax.random.fold_in(jax.random.fold_in(_epoch_key(inputs["seed"], inputs["epoch"]),
                                              step), 1)
  image = normalize(_crop_flip(inputs["images"], idx, key, pad), inputs["mean"],
                    inputs["std"])  # = augment(images[idx])
  return {"image": image.astype(dtype), "label": inputs["labels"][idx]}


@functools.lru_cache(maxsize=None)
def _train_batch_fn(mesh: Mesh, batch_size: int, pad: int, dtype):
  sharding = batch_sharded(mesh)
  return jax.jit(functools.partial(make_batch, batch_size=batch_size, pad=pad, dtype=dtype,
                                   sharding=sharding), out_shardings=sharding)


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
  fn = _train_batch_fn(data.mesh, batch_size, data.pad, jnp.dtype(dtype))

  def generate():
    inputs = epoch_inputs(data, seed=seed, epoch=epoch)
    for step in range(start_step, steps):
      yield fn(inputs, np.int32(step))

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
