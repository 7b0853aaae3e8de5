"""BatchNorm with PyTorch's running statistics, so converted checkpoints train on exactly.

The forward pass is `flax.linen.BatchNorm`'s (statistics in float32, E[x^2] - E[x]^2
clipped at 0, normalisation in float32, output cast to `dtype`), with the same variables:
params `scale`, `bias`; batch_stats `mean`, `var`. One thing differs, on purpose: the
running variance is updated with the UNBIASED batch variance, as `torch.nn.BatchNorm2d`
does,

    var_running <- momentum * var_running + (1 - momentum) * var_batch * n / (n - 1),

n = the number of values per channel in the batch (batch x H x W), while Flax uses the
biased `var_batch`. The batch itself is normalised with the biased variance in both.
Under `jax.jit` over a data mesh the statistics are those of the whole global batch (XLA
inserts the reduction), like one PyTorch GPU with the whole batch.
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax


class BatchNorm(nn.Module):
  """BatchNorm over every axis but the last (NHWC), PyTorch running statistics."""
  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    axes = tuple(range(x.ndim - 1))
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
      mean = jnp.mean(xf, axes)
      var = jnp.maximum(0.0, jnp.mean(jnp.square(xf), axes) - jnp.square(mean))
      if not self.is_initializing():
        n = x.size // c
        unbiased = var * (n / (n - 1)) if n > 1 else var
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * unbiased
    scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
    y = x - mean
    mul = lax.rsqrt(var + self.epsilon) * scale
    y = y * mul + bias
    return y.astype(self.dtype or jnp.result_type(x, scale))
