"""How the trainer feeds a dataset to its jitted steps, one chunk of steps at a time.

A feed gives, for a chunk of `n` consecutive steps of an epoch, a pytree of device arrays
(`chunk`) and a traceable `batch_fn(chunk, i)` that computes the chunk's i-th batch inside
the jitted multi-step (`steps.make_multi_step`), so a chunk is one dispatch with no
separate input call per step.

- `MemoryFeed` (CIFAR, npz, synthetic: `datasets.in_memory`): the dataset lives on the
  devices; the chunk is the epoch's permutation and the chunk's first step, and the batch
  (gather + crop + flip + normalise) is computed on the devices inside the step.
- `StreamFeed` (ImageNet: `datasets.streamed`): host workers decode and augment, the
  loader puts uint8 batches on the devices ahead of time; the chunk is `max_steps` of them
  stacked (padded by repeating the last when the chunk is shorter), and the batch is
  normalised to the compute dtype inside the step.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from jointrd_jax import datasets, sharding


class MemoryFeed:
  """A device-resident dataset (`datasets.Data`), batches computed inside the step."""

  def __init__(self, data: datasets.Data, batch_size: int, dtype):
    self.data = data
    self.batch_size = batch_size
    self.dtype = jnp.dtype(dtype)
    self.steps_per_epoch = datasets.steps_per_epoch(data.num_train, batch_size)
    self._inputs = None
    self.batch_fn = functools.partial(_memory_batch, batch_size=batch_size, pad=data.pad,
                                      dtype=self.dtype,
                                      sharding=sharding.batch_sharded(data.mesh))

  def start_epoch(self, seed: int, epoch: int) -> None:
    self._inputs = datasets.epoch_inputs(self.data, seed=seed, epoch=epoch)

  def chunk(self, first_step: int, num_steps: int) -> dict:
    del num_steps  # the batches are computed from the step index
    return {"inputs": self._inputs, "first": np.int32(first_step)}

  def chunk_spec(self, num_steps: int):
    """Shapes, dtypes and shardings of a chunk (to compile before any data is read)."""
    del num_steps
    d = self.data
    rep = sharding.replicated(d.mesh)
    scalar = jax.ShapeDtypeStruct((), jnp.int32)
    inputs = {"images": d.train_images, "labels": d.train_labels,
              "perm": jax.ShapeDtypeStruct((d.num_train,), jnp.int32, sharding=rep),
              "seed": scalar, "epoch": scalar, "mean": d.mean, "std": d.std}
    return _spec({"inputs": inputs, "first": scalar})

  def close(self) -> None:
    pass

  def eval_batches(self, batch_size: int):
    return datasets.eval_batches(self.data, batch_size=batch_size, dtype=self.dtype,
                                 what="config.eval_batch_size")

  def eval_spec(self, batch_size: int):
    return _eval_spec(self.data, batch_size, self.dtype)


def _eval_spec(data, batch_size: int, dtype):
  """Shapes, dtypes and shardings of an evaluation batch."""
  split = sharding.batch_sharded(data.mesh)
  return {"image": jax.ShapeDtypeStruct((batch_size,) + tuple(data.image_shape), dtype,
                                        sharding=split),
          "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32, sharding=split),
          "mask": jax.ShapeDtypeStruct((batch_size,), jnp.float32, sharding=split)}


def _spec(tree):
  return jax.tree_util.tree_map(
      lambda x: x if isinstance(x, jax.ShapeDtypeStruct) else jax.ShapeDtypeStruct(
          np.shape(x), x.dtype, sharding=getattr(x, "sharding", None)), tree)


def _memory_batch(chunk, i, **kw):
  return datasets.make_batch(chunk["inputs"], chunk["first"] + i, **kw)


class StreamFeed:
  """A streamed dataset (`datasets.streamed.StreamedData`)."""

  def __init__(self, data, batch_size: int, dtype, max_steps: int):
    self.data = data
    self.batch_size = batch_size
    self.dtype = jnp.dtype(dtype)
    self.max_steps = max_steps
    self.steps_per_epoch = data.steps_per_epoch(batch_size)
    self._seed_epoch = None
    self._batches = None  # the epoch's iterator, positioned at step self._next
    self._next = None
    stacked = NamedSharding(data.mesh, P(None, sharding.DATA_AXIS))
    h, w, c = data.image_shape
    self._spec = {
        "image": jax.ShapeDtypeStruct((max_steps, batch_size, h, w, c), jnp.uint8,
                                      sharding=stacked),
        "label": jax.ShapeDtypeStruct((max_steps, batch_size), jnp.int32, sharding=stacked)}
    self._stack = jax.jit(lambda xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs),
                          out_shardings=stacked)
    self.batch_fn = functools.partial(_stream_batch, mean=data.mean, std=data.std,
                                      dtype=self.dtype)
    self._normalize = jax.jit(functools.partial(_normalized, mean=data.mean, std=data.std,
                                                dtype=self.dtype),
                              out_shardings=sharding.batch_sharded(data.mesh))

  def start_epoch(self, seed: int, epoch: int) -> None:
    self.close()
    self._seed_epoch = (seed, epoch)

  def chunk(self, first_step: int, num_steps: int) -> dict:
    if self._batches is None or self._next != first_step:
      self.close()
      seed, epoch = self._seed_epoch
      self._batches = self.data.train_batches(seed=seed, epoch=epoch,
                                              batch_size=self.batch_size,
                                              start_step=first_step)
      self._next = first_step
    batches = [next(self._batches) for _ in range(num_steps)]
    self._next += num_steps
    batches += batches[-1:] * (self.max_steps - num_steps)  # the loop stops at num_steps
    return self._stack(batches)

  def chunk_spec(self, num_steps: int):
    del num_steps  # always max_steps
    return self._spec

  def close(self) -> None:
    if self._batches is not None:
      self._batches.close()
    self._batches = self._next = None

  def eval_batches(self, batch_size: int):
    with self.data.eval_batches(batch_size=batch_size) as batches:
      for batch in batches:
        yield self._normalize(batch)

  def eval_spec(self, batch_size: int):
    return _eval_spec(self.data, batch_size, self.dtype)


def _stream_batch(chunk, i, *, mean, std, dtype):
  return _normalized({"image": chunk["image"][i], "label": chunk["label"][i]}, mean=mean,
                     std=std, dtype=dtype)


def _normalized(batch, *, mean, std, dtype):
  return dict(batch, image=datasets.normalize(batch["image"], mean, std).astype(dtype))
