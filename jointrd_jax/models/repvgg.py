"""The `repvgg` conv kind: structural re-parameterisation in the style of RepVGG (Ding et al.,
"RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021; reference code
github.com/DingXiaoH/RepVGG, `repvgg.py`: `RepVGGBlock`, `get_equivalent_kernel_bias`).

In training, each 3x3 conv of the student's conv scope is the sum of three branches on the
same input x:

    y = BN(conv3x3(x)) + BN_1x1(conv1x1(x)) + BN_identity(x)

- 3x3 conv (stride s, padding 1) + BN: children `conv`, `bn` (a plain unit's names);
- 1x1 conv (the same stride s, padding 0) + BN: `conv_1x1`, `bn_1x1`. With padding 0 the 1x1
  conv at output (i, j) reads input (s*i, s*j), the centre tap of the 3x3 window (our convs
  pad k//2 like PyTorch's, so the 3x3 window of (i, j) is rows s*i-1..s*i+1);
- BN of the input, `bn_identity`, only where the input and output channels agree and s = 1.

Only 3x3 convs (`kernel_sizes=(3,)`): RepVGG re-parameterises 3x3 convs. The scope's 1x1 convs
(the bottleneck's conv1/conv3, the ImageNet variant's projection shortcut) and the stem stay
plain conv + BN (`none`) and fold as such.

Fold (inference mode; each branch's BN as `y * s + t`, `s = g / sqrt(v + eps)`,
`t = beta - mu * s`, per output channel):

    W'[kh, kw, i, o]  = W3[kh, kw, i, o] * s3[o]
    W'[1, 1, i, o]   += W1[0, 0, i, o] * s1[o]          (the 1x1 kernel at the centre tap)
    W'[1, 1, o, o]   += s_id[o]                         (identity: 1 at the centre, i -> i)
    bias'[o]          = t3[o] + t1[o] + t_id[o]

one biased 3x3 conv, as `get_equivalent_kernel_bias`. Init: both kernels kaiming-normal
(fan-out, ReLU gain) like every conv of the family (the reference code keeps PyTorch's
default conv init); every BN scale 1, bias 0 (as the reference). Every parameter takes the
recipe's weight decay (`optim.py`), see docs/method.md "RepVGG-style student".
"""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jointrd_jax.models import convs
from jointrd_jax.models.layers import Conv, batch_norm

NAME = "repvgg"
BRANCH_1X1 = ("conv_1x1", "bn_1x1")
IDENTITY = "bn_identity"


def has_identity(in_features: int, features: int, strides: int) -> bool:
  """Whether the unit has the identity branch: same channels in and out, stride 1."""
  return in_features == features and strides == 1


class RepVGGUnit(nn.Module):
  """3x3 conv + BN, 1x1 conv + BN, and BN of the input where shapes agree; summed."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    def conv_bn(kernel_size, conv_name, bn_name):
      y = Conv(self.features, kernel_size, self.strides, dtype=self.dtype,
               param_dtype=self.param_dtype, name=conv_name)(x)
      return batch_norm(train, self.dtype, self.param_dtype, bn_name)(y)

    y = conv_bn(self.kernel_size, "conv", "bn") + conv_bn(1, *BRANCH_1X1)
    if has_identity(x.shape[-1], self.features, self.strides):
      y = y + batch_norm(train, self.dtype, self.param_dtype, IDENTITY)(x)
    return y


def fold_repvgg(params: dict, stats: dict) -> dict:
  """A `RepVGGUnit`'s variables -> `{'conv': {'kernel', 'bias'}}` (module docstring)."""
  dense = convs.fold_conv_bn({"conv": params["conv"], "bn": params["bn"]}, {"bn": stats["bn"]})
  kernel, bias = dense["conv"]["kernel"], dense["conv"]["bias"]
  kh, kw, cin, _ = kernel.shape
  conv_1x1, bn_1x1 = BRANCH_1X1
  s, t = convs.bn_affine(params[bn_1x1], stats[bn_1x1])
  kernel = kernel.at[kh // 2, kw // 2].add(
      jnp.asarray(params[conv_1x1]["kernel"], jnp.float32)[0, 0] * s)
  bias = bias + t
  if IDENTITY in params:
    s, t = convs.bn_affine(params[IDENTITY], stats[IDENTITY])
    channels = np.arange(cin)
    kernel = kernel.at[kh // 2, kw // 2, channels, channels].add(s)
    bias = bias + t
  return {"conv": {"kernel": kernel, "bias": bias}}


def _unit(features, kernel_size, strides, *, dtype, param_dtype, name):
  return RepVGGUnit(features, kernel_size, strides, dtype=dtype, param_dtype=param_dtype,
                    name=name)


KIND = convs.register(convs.ConvKind(
    NAME, _unit, fold_repvgg,
    "RepVGG-style (Ding et al. 2021): each 3x3 conv trained as 3x3 conv + BN, 1x1 conv + BN "
    "and BN(x) where shapes agree, summed; folds into one biased 3x3 conv (1x1 convs stay "
    "plain)", kernel_sizes=(3,)))
