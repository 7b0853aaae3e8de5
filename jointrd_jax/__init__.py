"""jointrd-jax: Residual Distillation (JointRD) and its KD baselines in JAX/Flax."""
from jointrd_jax import compat

__version__ = "0.1.0"


def __getattr__(name: str):
  """The former module paths of the Library API (`from jointrd_jax import fold`), each with
  a DeprecationWarning: `compat.MOVED_MODULES`."""
  return compat.moved_module(name)
