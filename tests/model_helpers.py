"""Shared by the model tests (test_models.py, test_zoo.py): variables with non-trivial
BatchNorm statistics and affines and Dirac a, b, so that folding has something to fold."""
import flax
import jax

from jointrd_jax.models import dirac


def randomise(variables, key):
  """Non-trivial BN statistics, BN affine and Dirac a, b."""
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables))
  keys = jax.random.split(key, len(flat))
  out = {}
  for k, (path, leaf) in zip(keys, sorted(flat.items())):
    name = path[-1]
    if name == "var":
      leaf = jax.random.uniform(k, leaf.shape, minval=0.5, maxval=2.0)
    elif name in ("mean", "bias"):
      leaf = 0.2 * jax.random.normal(k, leaf.shape)
    elif name in ("scale", dirac.A_NAME, dirac.B_NAME):
      leaf = jax.random.uniform(k, leaf.shape, minval=0.5, maxval=1.5)
    out[path] = leaf
  return flax.traverse_util.unflatten_dict(out)
