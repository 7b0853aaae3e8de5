"""The device mesh: one `data` axis over every device of every process.

Parameters are replicated, batches are split along their leading axis.
"""
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jointrd_jax.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis, the rest replicated."""
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, what: str = "config.batch_size") -> None:
  n = mesh.devices.size
  if batch_size <= 0:
    raise UserError(f"{what}={batch_size} must be positive.")
  if batch_size % n:
    lo = batch_size // n * n or n
    raise UserError(
        f"{what}={batch_size} does not divide over {n} devices; "
        f"use a multiple of {n}, e.g. --{what}={lo}.")
  if batch_size % jax.process_count():
    raise UserError(
        f"{what}={batch_size} does not divide over {jax.process_count()} processes.")
