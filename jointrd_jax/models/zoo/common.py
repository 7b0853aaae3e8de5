"""What the zoo's networks share: their fields (`ZooNet`), the stage plan of a basic-block network, the head, a
grouped conv + BN unit (MobileNetV2, ShuffleNet)."""
import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jointrd_jax.models import zoo
from jointrd_jax.models.layers import batch_norm, conv_init, torch_linear_init

SHORTCUT_OF = {  # policy -> (the block's shortcut where it needs a projection, elsewhere)
    "all": ("projection", "identity"),
    "projection": ("projection", "none"),
    "none": ("none", "none"),
}


class ZooNet(nn.Module):
  """The fields every zoo network has (`zoo.DESCRIPTION_FIELDS`, plus the fold and the
  dtypes). A family adds its own as keyword-only fields (`family_field()`)."""
  zoo_arch: str
  num_classes: int = 100
  shortcuts: str = "all"
  conv: str = "none"
  width: int = zoo.REFERENCE_WIDTH
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32


def family_field():
  """A family's own required field, given by keyword (after the shared defaults)."""
  return dataclasses.field(kw_only=True)


def basic_plan(in_ch: int, widths, blocks: int, shortcuts: str):
  """The shortcut of every block of a basic-block network (stride 2 at the first block of
  stages 2..): a projection where the shape changes, identity elsewhere (`all`); the
  projections only (`projection`); none (`none`)."""
  plan = []
  for i, out_ch in enumerate(widths):
    stage = []
    for j in range(blocks):
      needs_projection = (i > 0 and j == 0) or in_ch != out_ch
      stage.append(SHORTCUT_OF[shortcuts][0 if needs_projection else 1])
      in_ch = out_ch
    plan.append(tuple(stage))
  return tuple(plan)


def head(x, num_classes: int, dtype, param_dtype):
  """ReLU, global average pool, linear (child `head`): the logits."""
  x = jnp.mean(nn.relu(x), axis=(1, 2))
  return nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=torch_linear_init(x.shape[-1]),
                  bias_init=torch_linear_init(x.shape[-1]), name="head")(x)


class GroupConv(nn.Module):
  """A conv of `groups` groups with PyTorch's padding (k // 2), biased or not."""
  features: int
  kernel_size: int
  strides: int = 1
  groups: int = 1
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, pad = self.kernel_size, self.kernel_size // 2
    kernel = self.param("kernel", conv_init, (k, k, x.shape[-1] // self.groups, self.features),
                        self.param_dtype)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), (self.strides,) * 2,
        ((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=self.groups)
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,),
                         self.param_dtype).astype(self.dtype)
    return y


class GroupConvBN(nn.Module):
  """`GroupConv` + BN, children `conv`, `bn`; folded: the biased conv only (the fold of
  `convs.fold_conv_bn`)."""
  features: int
  kernel_size: int
  strides: int = 1
  groups: int = 1
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = GroupConv(self.features, self.kernel_size, self.strides, self.groups, self.folded,
                  self.dtype, self.param_dtype, name="conv")(x)
    if self.folded:
      return y
    return batch_norm(train, self.dtype, self.param_dtype, "bn")(y)
