"""The layers every network of the family is made of: a convolution padded like PyTorch's
(optionally Dirac, or biased when folded), conv + BatchNorm, PyTorch's max-pool, and the
initialisers of the official release."""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jointrd_jax.models import dirac as dirac_lib
from jointrd_jax.models.batchnorm import BatchNorm

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
DIRAC_MODES = ("none", "init", "reparam")

# Kaiming-normal, fan-out, ReLU gain (PyTorch's kaiming_normal_(mode='fan_out')).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def torch_linear_init(fan_in: int):
  """PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / (fan_in ** 0.5)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Conv(nn.Module):
  """Bias-free conv with PyTorch padding, optionally Dirac; or conv + bias when folded."""
  features: int
  kernel_size: int
  strides: int = 1
  dirac: str = "none"
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    shape = (k, k, x.shape[-1], self.features)
    init = dirac_lib.dirac_plus_init(conv_init) if self.dirac == "init" else conv_init
    kernel = self.param("kernel", init, shape, self.param_dtype)
    if self.dirac == "reparam":
      a = self.param(dirac_lib.A_NAME, nn.initializers.ones, (self.features,), self.param_dtype)
      b = self.param(dirac_lib.B_NAME, nn.initializers.constant(dirac_lib.B_INIT),
                     (self.features,), self.param_dtype)
      kernel = dirac_lib.effective_kernel(kernel, a, b)
    pad = k // 2
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype),
        window_strides=(self.strides, self.strides),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


def batch_norm(train: bool, dtype, param_dtype, name: str) -> BatchNorm:
  return BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                   dtype=dtype, param_dtype=param_dtype, name=name)


class ConvBN(nn.Module):
  """Conv (child `conv`, Dirac mode `dirac`) followed by BatchNorm (child `bn`), or a
  biased conv when `folded`."""
  features: int
  kernel_size: int
  strides: int = 1
  dirac: str = "none"
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = Conv(self.features, self.kernel_size, self.strides,
             dirac="none" if self.folded else self.dirac, use_bias=self.folded,
             dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
    if self.folded:
      return y
    return batch_norm(train, self.dtype, self.param_dtype, "bn")(y)


def max_pool(x, window: int = 3, strides: int = 2):
  """PyTorch's `MaxPool2d(window, strides, padding=window // 2)` on NHWC: the padding is
  -inf, so a padded position never wins (whatever the sign of the input)."""
  pad = window // 2
  # A Python scalar init value: JAX then recognises a max pool (differentiable); an array
  # init would make it a generic reduce_window, which has no gradient.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, strides, strides, 1),
                               ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def relu_max_pool(x, window: int = 3, strides: int = 2):
  """`relu(max_pool(x))` as the deployment form computes it: ReLU first, then the pool
  over a zero-padded input (no padding inside the pool). Equal values: the max commutes
  with ReLU, and after ReLU a zero pad never wins over a real position unless that is 0
  too. Why: the -inf pad of `max_pool` becomes a constant of the exported graph (TFLite
  PADV2), which int8 calibration takes into the stem's activation range (scale ~1e36),
  so LiteRT's XNNPACK refuses the int8 model; a zero pad keeps the range the ReLU's."""
  pad = window // 2
  x = jnp.pad(jax.nn.relu(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, strides, strides, 1), "VALID")
