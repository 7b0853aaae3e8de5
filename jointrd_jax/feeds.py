"""How the trainer feeds a dataset to its jitted steps, one chunk of steps at a time.

A feed gives, for a chunk of `n` consecutive steps of an epoch, a pytree of device arrays
(`chunk`) and a traceable `batch_fn(chunk, i)` that computes the chunk's i-th batch inside
the jitted multi-step (`steps.make_multi_step`), so a chunk is one dispatch with no
separate input call per step.

- `MemoryFeed` (CIFAR, npz, synthetic: `datasets.in_memory`): the dataset lives on the
  devices; the chunk is the epoch's permutation and the chunk's first step, and the batch
  (gather + crop + flip + normalise) is computed on the devices inside the step.
"""
import functools

import jax.numpy as jnp
import numpy as np

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

  def eval_batches(self, batch_size: int):
    return datasets.eval_batches(self.data, batch_size=batch_size, dtype=self.dtype,
                                 what="config.eval_batch_size")


def _memory_batch(chunk, i, **kw):
  return datasets.make_batch(chunk["inputs"], chunk["first"] + i, **kw)
