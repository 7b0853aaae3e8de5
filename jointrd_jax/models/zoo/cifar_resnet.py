"""The CIFAR ResNets of the distillation zoo: resnet8/14/20/32/44/56/110 (resnet14 is
`resnet14_cifar` here) and resnet8x4/32x4 (RepDistiller `models/resnet.py`, `ResNet` with
`BasicBlock`; mdistiller `mdistiller/models/cifar/resnet.py`, the same), and their plain
students.

stem conv3x3(3 -> f0) + BN + ReLU; three stages of n = (depth - 2) / 6 basic blocks with
f1, f2, f3 planes (stride 2 at the first block of stages 2 and 3); a 1x1 conv + BN
projection where a block changes shape; average pool; linear. f = (16, 16, 32, 64), and
(32, 64, 128, 256) for the x4 archs. The blocks are `resnet.Block` (basic): ReLU first,
pre-ReLU sum out, so `feats` are the reference's `preact` features.

The shortcut policy and the conv kinds apply as for `resnet.ResNet`: the student's conv
kind on both 3x3 convs of every block (never the stem, nor a projection).
"""
from typing import Optional, Tuple

import flax.linen as nn

from jointrd_jax.models import zoo
from jointrd_jax.models.resnet import Block, block_units, make_unit, unit_kind
from jointrd_jax.models.zoo import common

CONV_SCOPE = ("conv1", "conv2")
# name: (depth, (stem, stage planes...)) as the reference's resnetN functions.
ARCHS = {
    "resnet8": (8, (16, 16, 32, 64)),
    # The reference's resnet14: our `resnet14` is the one-block bottleneck smoke arch.
    "resnet14_cifar": (14, (16, 16, 32, 64)),
    "resnet20": (20, (16, 16, 32, 64)),
    "resnet32": (32, (16, 16, 32, 64)),
    "resnet44": (44, (16, 16, 32, 64)),
    "resnet56": (56, (16, 16, 32, 64)),
    "resnet110": (110, (16, 16, 32, 64)),
    "resnet8x4": (8, (32, 64, 128, 256)),
    "resnet32x4": (32, (32, 64, 128, 256)),
}


class CifarResNet(common.ZooNet):
  """A basic-block network of three stages (module docstring). Returns `(logits, feats)`;
  `start_stage` / `end_stage` as `resnet.ResNet`'s."""
  filters: Tuple[int, ...] = common.family_field()  # (stem, stage planes...) at width 64
  blocks: int = common.family_field()

  @property
  def channels(self):
    return tuple(zoo.scaled(c, self.width) for c in self.filters)

  @property
  def num_stages(self) -> int:
    return len(self.filters) - 1

  @property
  def plan(self):
    return common.basic_plan(self.channels[0], self.channels[1:], self.blocks, self.shortcuts)

  def stage_channels(self):
    return self.channels[1:]

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def units(self):
    out = {("stem",): "none"}
    for i, stage in enumerate(self.plan):
      for j, shortcut in enumerate(stage):
        for name, k in block_units("basic", shortcut):
          out[(f"stage{i + 1}_block{j}", name)] = unit_kind(self.conv, name, k, CONV_SCOPE)
    return out

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: Optional[int] = None):
    end_stage = zoo.last_stage(end_stage, self.num_stages)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    if start_stage == 0:  # its ReLU is the first block's
      x = make_unit("none", self.channels[0], 3, 1, folded=self.folded, name="stem", **kw)(
          x, train)
    feats = []
    for i in range(start_stage, end_stage):
      for j, shortcut in enumerate(self.plan[i]):
        x = Block("basic", self.channels[i + 1], 2 if (i > 0 and j == 0) else 1, shortcut,
                  conv=self.conv, conv_scope=CONV_SCOPE, folded=self.folded,
                  name=f"stage{i + 1}_block{j}", **kw)(x, train)
      feats.append(x)
    if end_stage < self.num_stages:
      return None, tuple(feats)
    return common.head(x, self.num_classes, **kw), tuple(feats)


def _maker(name: str, depth: int, filters):
  def make(**kw):
    return CifarResNet(zoo_arch=name, filters=filters, blocks=(depth - 2) // 6, **kw)
  return make


for _name, (_depth, _filters) in ARCHS.items():
  zoo.register(zoo.ZooArch(_name, "cifar_resnet", _maker(_name, _depth, _filters),
                           f"RepDistiller models/resnet.py {_name.replace('_cifar', '')}: "
                           f"ResNet({_depth}, {list(_filters)}, 'basicblock')"))
