"""The wide ResNets of the distillation zoo: wrn_16_2, wrn_40_1, wrn_40_2 (RepDistiller
`models/wrn.py`, `WideResNet`; mdistiller `mdistiller/models/cifar/wrn.py`, the same), and
their plain students.

The reference (`shortcuts='all'`, `PreActWRN` here) is pre-activation: stem conv3x3(3 -> 16)
without BN; three stages of n = (depth - 4) / 6 blocks `BN-ReLU-conv3x3-BN-ReLU-conv3x3`
with 16k, 32k, 64k planes (stride 2 at the first block of stages 2 and 3), the shortcut a
bare 1x1 conv of the block's activated input where the channels change, identity
elsewhere; final BN-ReLU, average pool, linear. No dropout (the zoo's `dropRate=0`).

Without identity shortcuts the pre-activation chain is `conv, BN, ReLU, conv, BN, ...`, the
post-activation network `cifar_resnet.CifarResNet` (stem conv + BN, basic blocks) with the
same channels: that is the plain form (`none`, and `projection`, whose 1x1 shortcuts get
a BN like every projection of the family), which takes the conv kinds and folds. Its
parameter count is the reference's less the 1x1 shortcuts (and plus their BNs).
"""
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.errors import UserError
from jointrd_jax.models import zoo
from jointrd_jax.models.layers import Conv, batch_norm
from jointrd_jax.models.zoo import common
from jointrd_jax.models.zoo.cifar_resnet import CifarResNet

ARCHS = {"wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}  # (depth, k)


class PreActWRN(nn.Module):
  """The reference wide ResNet (module docstring). Returns `(logits, feats)`, feats = the
  stages' sums (before the next BN); `start_stage` / `end_stage` as `resnet.ResNet`'s."""
  zoo_arch: str
  filters: Tuple[int, ...]  # (stem, stage planes...), at width 64
  blocks: int
  num_classes: int = 100
  shortcuts: str = "all"
  conv: str = "none"
  width: int = zoo.REFERENCE_WIDTH
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  num_stages = 3

  def stage_channels(self):
    return tuple(zoo.scaled(c, self.width) for c in self.filters[1:])

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def units(self):
    raise UserError(f"{self.zoo_arch} with shortcuts 'all' is pre-activation and does not "
                    "fold; fold its plain form (shortcuts 'none' or 'projection').")

  def _conv(self, features, kernel_size, strides, name):
    return Conv(features, kernel_size, strides, dtype=self.dtype, param_dtype=self.param_dtype,
                name=name)

  def _bn_relu(self, x, train, name):
    return nn.relu(batch_norm(train, self.dtype, self.param_dtype, name)(x))

  def _block(self, x, train, features, strides, name):
    h = self._bn_relu(x, train, f"{name}_bn1")
    y = self._conv(features, 3, strides, f"{name}_conv1")(h)
    y = self._conv(features, 3, 1, f"{name}_conv2")(self._bn_relu(y, train, f"{name}_bn2"))
    if x.shape[-1] == features:
      return x + y
    return self._conv(features, 1, strides, f"{name}_shortcut")(h) + y

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: Optional[int] = None):
    end_stage = zoo.last_stage(end_stage, self.num_stages)
    channels = self.stage_channels()
    if start_stage == 0:
      x = self._conv(zoo.scaled(self.filters[0], self.width), 3, 1, "stem")(x)
    feats = []
    for i in range(start_stage, end_stage):
      for j in range(self.blocks):
        x = self._block(x, train, channels[i], 2 if (i > 0 and j == 0) else 1,
                        f"stage{i + 1}_block{j}")
      feats.append(x)
    if end_stage < self.num_stages:
      return None, tuple(feats)
    x = batch_norm(train, self.dtype, self.param_dtype, "bn")(x)
    return common.head(x, self.num_classes, self.dtype, self.param_dtype), tuple(feats)


def _maker(name: str, depth: int, k: int):
  filters = (16, 16 * k, 32 * k, 64 * k)

  def make(shortcuts, conv, folded, **kw):
    if shortcuts != "all":
      return CifarResNet(zoo_arch=name, filters=filters, blocks=(depth - 4) // 6,
                         shortcuts=shortcuts, conv=conv, folded=folded, **kw)
    if conv != "none" or folded:
      raise UserError(f"{name} with shortcuts 'all' is the pre-activation reference: it takes "
                      "no conv kind and does not fold; use shortcuts 'none' or 'projection' "
                      "(its plain forms).")
    return PreActWRN(zoo_arch=name, filters=filters, blocks=(depth - 4) // 6, **kw)
  return make


for _name, (_depth, _k) in ARCHS.items():
  zoo.register(zoo.ZooArch(_name, "wrn", _maker(_name, _depth, _k),
                           f"RepDistiller models/wrn.py {_name}: WideResNet(depth={_depth}, "
                           f"widen_factor={_k})"))
