"""The wide ResNets of the distillation zoo: wrn_16_2, wrn_40_1, wrn_40_2 (RepDistiller
`models/wrn.py`, `WideResNet`; mdistiller `mdistiller/models/cifar/wrn.py`, the same), and
their plain students.

The reference (`shortcuts='all'`, `PreActWRN` here) is pre-activation: stem conv3x3(3 -> 16)
without BN; three stages of n = (depth - 4) / 6 blocks `BN-ReLU-conv3x3-BN-ReLU-conv3x3`
with 16k, 32k, 64k planes (stride 2 at the first block of stages 2 and 3), the shortcut a
bare 1x1 conv of the block's activated input where the channels change, identity
elsewhere; final BN-ReLU, average pool, linear. No dropout (the zoo's `dropRate=0`).

Its folded form (`fold.py`, e.g. a frozen teacher's) folds each block's conv1 + BN into one
biased conv; the BNs before a ReLU (after a residual sum) become per-channel affines.

Without identity shortcuts the pre-activation chain is `conv, BN, ReLU, conv, BN, ...`, the
post-activation network `cifar_resnet.CifarResNet` (stem conv + BN, basic blocks) with the
same channels: that is the plain form (`none`, and `projection`, whose 1x1 shortcuts get
a BN like every projection of the family), which takes the conv kinds and folds. Its
parameter count is the reference's less the 1x1 shortcuts (and plus their BNs).
"""
import dataclasses
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.errors import UserError
from jointrd_jax.models import convs, zoo
from jointrd_jax.models.layers import Conv, batch_norm
from jointrd_jax.models.zoo import common
from jointrd_jax.models.zoo.cifar_resnet import CifarResNet

ARCHS = {"wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}  # (depth, k)


class Affine(nn.Module):
  """`x * scale + bias` per channel: an inference-mode BatchNorm, folded."""
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), self.param_dtype)
    return x * scale.astype(x.dtype) + bias.astype(x.dtype)


class PreActWRN(common.ZooNet):
  """The reference wide ResNet (module docstring). Returns `(logits, feats)`, feats = the
  stages' sums (before the next BN); `start_stage` / `end_stage` as `resnet.ResNet`'s."""
  filters: Tuple[int, ...] = common.family_field()  # (stem, stage planes...) at width 64
  blocks: int = common.family_field()

  num_stages = 3

  def stage_channels(self):
    return tuple(zoo.scaled(c, self.width) for c in self.filters[1:])

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def fold_variables(self, variables):
    """`(folded net, {'params': ...})`, equal in inference mode (module docstring)."""
    params = {k: dict(v) for k, v in variables["params"].items()}
    stats = variables["batch_stats"]
    folded = {}
    for name, p in params.items():
      if name.endswith("_conv1"):
        bn = name[:-len("conv1")] + "bn2"
        folded[name] = convs.fold_conv_bn({"conv": p, "bn": params[bn]},
                                          {"bn": stats[bn]})["conv"]
      elif name in stats and not name.endswith("_bn2"):
        s, t = convs.bn_affine(p, stats[name])
        folded[name] = {"scale": s, "bias": t}
      elif name not in stats:
        folded[name] = p
    return dataclasses.replace(self, folded=True), {"params": folded}

  def _conv(self, features, kernel_size, strides, name, use_bias=False):
    return Conv(features, kernel_size, strides, use_bias=use_bias, dtype=self.dtype,
                param_dtype=self.param_dtype, name=name)

  def _bn(self, x, train, name):
    if self.folded:
      return Affine(self.param_dtype, name=name)(x)
    return batch_norm(train, self.dtype, self.param_dtype, name)(x)

  def _block(self, x, train, features, strides, name):
    h = nn.relu(self._bn(x, train, f"{name}_bn1"))
    y = self._conv(features, 3, strides, f"{name}_conv1", use_bias=self.folded)(h)
    if not self.folded:
      y = batch_norm(train, self.dtype, self.param_dtype, f"{name}_bn2")(y)
    y = self._conv(features, 3, 1, f"{name}_conv2")(nn.relu(y))
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
    x = self._bn(x, train, "bn")
    return common.head(x, self.num_classes, self.dtype, self.param_dtype), tuple(feats)


def _maker(name: str, depth: int, k: int):
  filters = (16, 16 * k, 32 * k, 64 * k)

  def make(shortcuts, conv, folded, **kw):
    if shortcuts != "all":
      return CifarResNet(zoo_arch=name, filters=filters, blocks=(depth - 4) // 6,
                         shortcuts=shortcuts, conv=conv, folded=folded, **kw)
    if conv != "none":
      raise UserError(f"{name} with shortcuts 'all' is the pre-activation reference and takes "
                      f"no conv kind ({conv!r}); use shortcuts 'none' or 'projection' (its "
                      "plain forms).")
    return PreActWRN(zoo_arch=name, filters=filters, blocks=(depth - 4) // 6, folded=folded,
                     **kw)
  return make


for _name, (_depth, _k) in ARCHS.items():
  zoo.register(zoo.ZooArch(_name, "wrn", _maker(_name, _depth, _k),
                           f"RepDistiller models/wrn.py {_name}: WideResNet(depth={_depth}, "
                           f"widen_factor={_k})"))
