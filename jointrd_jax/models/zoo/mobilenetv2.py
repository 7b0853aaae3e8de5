"""The zoo's MobileNetV2, `mobilenetv2` (RepDistiller `models/mobilenetv2.py`,
`mobile_half` = `MobileNetV2(T=6, width_mult=0.5)`; mdistiller
`mdistiller/models/cifar/mobilenetv2.py`, the same): the CIFAR width 0.5 variant.

stem conv3x3(3 -> 16, stride 2) + BN + ReLU; inverted residual blocks (t, c, n, s) =
(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
(6, 320, 1, 1) at width 0.5 (c halved): pointwise conv1x1 + BN + ReLU (also for t = 1, as
the reference), depthwise conv3x3 (stride s) + BN + ReLU, pointwise-linear conv1x1 + BN,
plus the input where stride 1 and the channels agree; conv1x1(-> 1280) + BN + ReLU, average
pool, linear. ReLU, not ReLU6 (as the reference).

Stages (`feats`, JointRD's cut points): the reference's f1..f4, after its block groups 2,
3, 5 and 7. Its own shortcuts only (`shortcuts='all'`) and plain convs (`conv='none'`).
"""
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.errors import UserError
from jointrd_jax.models import zoo
from jointrd_jax.models.zoo import common
from jointrd_jax.models.zoo.common import GroupConvBN

# (expansion t, channels c, blocks n, stride s) of the reference, at width multiplier 1.
SETTING = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))
STAGES = ((0, 1), (2,), (3, 4), (5, 6))  # the block groups of each stage
WIDTH_MULT = 0.5  # mobile_half
STEM, LAST = 32, 1280  # the stem's channels (x width_mult) and the last conv's (kept 1280)


def channels(c: int, width: int) -> int:
  return zoo.scaled(int(c * WIDTH_MULT), width)


class MobileNetV2(common.ZooNet):
  """The reference's `mobile_half` (module docstring). Returns `(logits, feats)`;
  `start_stage` / `end_stage` as `resnet.ResNet`'s."""
  zoo_arch: str = "mobilenetv2"

  num_stages = len(STAGES)

  def stage_channels(self):
    return tuple(channels(SETTING[groups[-1]][1], self.width) for groups in STAGES)

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def blocks(self, *groups) -> Tuple[Tuple[str, int, int, int], ...]:
    """The blocks of `groups` (default: all): (name, expansion, output channels, stride)."""
    return tuple((f"group{g}_block{j}", t, channels(c, self.width), s if j == 0 else 1)
                 for g, (t, c, n, s) in enumerate(SETTING) if not groups or g in groups
                 for j in range(n))

  def units(self):
    out = {("stem",): "none", ("last",): "none"}
    for name, *_ in self.blocks():
      out.update({(name, unit): "none" for unit in ("pw", "dw", "pwl")})
    return out

  def _unit(self, features, kernel_size, strides=1, name=None):
    return GroupConvBN(features, kernel_size, strides, 1, self.folded, self.dtype,
                       self.param_dtype, name=name)

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: Optional[int] = None):
    end_stage = zoo.last_stage(end_stage, self.num_stages)
    if start_stage == 0:
      x = nn.relu(self._unit(zoo.scaled(int(STEM * WIDTH_MULT), self.width), 3, 2,
                             name="stem")(x, train))
    feats = []
    for i in range(start_stage, end_stage):
      for g in STAGES[i]:
        for name, t, c, s in self.blocks(g):
          x = InvertedResidual(t, c, s, self.folded, self.dtype, self.param_dtype,
                               name=name)(x, train)
      feats.append(x)
    if end_stage < self.num_stages:
      return None, tuple(feats)
    x = nn.relu(self._unit(zoo.scaled(LAST, self.width), 1, name="last")(x, train))
    return common.head(x, self.num_classes, self.dtype, self.param_dtype), tuple(feats)


class InvertedResidual(nn.Module):
  """pw conv + BN + ReLU, dw conv + BN + ReLU, pw-linear conv + BN (+ x where shapes agree);
  children `pw`, `dw`, `pwl`."""
  expansion: int
  features: int
  strides: int
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    hidden = x.shape[-1] * self.expansion
    kw = dict(folded=self.folded, dtype=self.dtype, param_dtype=self.param_dtype)
    y = nn.relu(GroupConvBN(hidden, 1, name="pw", **kw)(x, train))
    y = nn.relu(GroupConvBN(hidden, 3, self.strides, hidden, name="dw", **kw)(y, train))
    y = GroupConvBN(self.features, 1, name="pwl", **kw)(y, train)
    return x + y if self.strides == 1 and x.shape[-1] == self.features else y


def _make(shortcuts, conv, **kw):
  if shortcuts != "all" or conv != "none":
    raise UserError(f"mobilenetv2 takes its own shortcuts and plain convs only (shortcuts "
                    f"'all', conv 'none'), not shortcuts {shortcuts!r}, conv {conv!r}.")
  return MobileNetV2(**kw)


zoo.register(zoo.ZooArch("mobilenetv2", "mobilenetv2", _make,
                         "RepDistiller models/mobilenetv2.py mobile_half: MobileNetV2(T=6, "
                         "feature_dim=100, width_mult=0.5)"))
