"""Host batches -> global jax.Arrays on the mesh, prepared ahead by a background thread.

Each process supplies its rows of every global batch (`local_rows`: the rows its
devices hold under `batch_sharded(mesh)`, [p*B/P, (p+1)*B/P) for the usual mesh), and
`jax.make_array_from_process_local_data` assembles the global [B, ...] arrays. Like
flax's `prefetch_to_device`, `DevicePrefetcher` keeps `size` batches already on the
devices while the trainer runs, so the host->device copy overlaps the step. Errors of
the host pipeline (e.g. a corrupt image's `UserError`) are raised by `next()` in the
consuming thread, in order. `close()` (or garbage collection, or the end) stops the
thread.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import jax
from jax.sharding import Mesh
import numpy as np

from jointrd_jax.errors import UserError
from jointrd_jax.sharding import batch_sharded

_END = object()


def local_rows(mesh: Mesh, batch_size: int) -> tuple[int, int]:
  """[lo, hi): the rows of a global batch that this process's devices hold."""
  index_map = batch_sharded(mesh).addressable_devices_indices_map((batch_size,))
  starts = sorted({s[0].indices(batch_size)[:2] for s in index_map.values()})
  lo, hi = starts[0][0], starts[-1][1]
  covered = sum(b - a for a, b in starts)
  if covered != hi - lo:
    raise UserError(f"this process's devices hold non-contiguous rows of the batch "
                    f"({starts}); build the mesh with sharding.make_mesh().")
  return lo, hi


def to_global(mesh: Mesh, batch_size: int, local: dict) -> dict:
  """{name: process-local numpy [L, ...]} -> {name: global jax.Array [B, ...]}."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v),
                                                    (batch_size,) + tuple(v.shape[1:]))
          for k, v in local.items()}


class _Raised:

  def __init__(self, error: BaseException):
    self.error = error


def _offer(q: queue.Queue, stop: threading.Event, item) -> bool:
  while not stop.is_set():
    try:
      q.put(item, timeout=0.1)
      return True
    except queue.Full:
      continue
  return False


def _produce(host, put, q: queue.Queue, stop: threading.Event):
  # Holds no reference to the DevicePrefetcher, so dropping that stops this thread.
  try:
    for batch in host:
      if not _offer(q, stop, put(batch)):
        return
    _offer(q, stop, _END)
  except BaseException as e:  # pylint: disable=broad-except
    _offer(q, stop, _Raised(e))


class DevicePrefetcher:
  """An iterator of global batches; `size` of them prepared ahead (0: synchronous)."""

  def __init__(self, host: Iterator[dict], mesh: Mesh, batch_size: int, size: int = 2):
    self._host = host
    self._put = lambda b: to_global(mesh, batch_size, b)
    self._done = False
    self._thread = None
    if size > 0:
      self._queue = queue.Queue(maxsize=size)
      self._stop = threading.Event()
      self._thread = threading.Thread(
          target=_produce, args=(host, self._put, self._queue, self._stop),
          name="device_prefetch", daemon=True)
      self._thread.start()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._done:
      raise StopIteration
    if self._thread is None:
      try:
        return self._put(next(self._host))
      except BaseException:
        self._done = True
        raise
    item = self._queue.get()
    if item is _END or isinstance(item, _Raised):
      self._done = True
      self._thread.join()
      if item is _END:
        raise StopIteration
      raise item.error
    return item

  def close(self):
    """Stops the background thread (the remaining batches are dropped)."""
    self._done = True
    if self._thread is not None:
      self._stop.set()
      while True:  # unblock a producer waiting on a full queue
        try:
          self._queue.get_nowait()
        except queue.Empty:
          break
      self._thread.join(timeout=10)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
