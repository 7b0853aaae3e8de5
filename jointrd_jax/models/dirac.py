"""Dirac convolutions (DiracNets, Zagoruyko & Komodakis 2017), as JointRD's student uses them.

`delta(shape)` is the fixed kernel with `delta[kh//2, kw//2, i, i] = 1` for
`i < min(in, out)` (HWIO layout): a partial identity when in != out, and, applied at
stride 2, a sub-sampled identity.

Two ways to use it (reference §2):
- `reparam` (the official release): the effective kernel is `a * delta + b * W` with
  per-output-channel `a` (init 1) and `b` (init 0.1), learnable and excluded from
  weight decay. `effective_kernel` computes it; it folds into one plain kernel.
- `init` (the paper's wording): an ordinary conv whose kernel starts at
  `delta + 0.1 * W0`; see `dirac_plus_init`.
"""
import jax.numpy as jnp
import numpy as np

# Parameter names of the re-parameterisation; the optimizer's weight-decay mask
# matches on this prefix.
PARAM_PREFIX = "dirac_"
A_NAME = PARAM_PREFIX + "a"
B_NAME = PARAM_PREFIX + "b"
B_INIT = 0.1


def delta(shape, dtype=jnp.float32) -> jnp.ndarray:
  """The Dirac kernel of HWIO `shape` (a constant, computed with numpy)."""
  kh, kw, cin, cout = shape
  d = np.zeros(shape, np.float32)
  n = min(cin, cout)
  d[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
  return jnp.asarray(d, dtype)


def dirac_init(key, shape, dtype=jnp.float32):
  """A Flax initializer giving the Dirac kernel (the key is unused)."""
  del key
  return delta(shape, dtype)


def dirac_plus_init(base_init, scale: float = B_INIT):
  """Initializer `delta + scale * base_init(key)`: the `init` mode's kernel."""

  def init(key, shape, dtype=jnp.float32):
    return delta(shape, dtype) + jnp.asarray(scale, dtype) * base_init(key, shape, dtype)

  return init


def effective_kernel(kernel, a, b):
  """`a * delta + b * kernel`, with `a`, `b` per output channel (the last axis)."""
  return a * delta(kernel.shape, kernel.dtype) + b * kernel
