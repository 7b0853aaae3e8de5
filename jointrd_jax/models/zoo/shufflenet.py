"""The zoo's ShuffleNets: `shufflenetv1` (RepDistiller `models/ShuffleNetv1.py`, `ShuffleV1`:
out_planes (240, 480, 960), blocks (4, 8, 4), 3 groups) and `shufflenetv2`
(`models/ShuffleNetv2.py`, `ShuffleV2`: net_size 1, out_channels (116, 232, 464, 1024),
blocks (3, 7, 3)); mdistiller's `mdistiller/models/cifar/ShuffleNetv1.py`, `ShuffleNetv2.py`
are the same.

Both: stem conv1x1(3 -> 24) + BN + ReLU (stride 1, CIFAR), three stages (stride 2 at each
stage's first block), average pool, linear.
- v1 block: grouped conv1x1 (1 group on the stem's 24 channels) + BN + ReLU, channel
  shuffle, depthwise conv3x3 (stride s) + BN + ReLU, grouped conv1x1 + BN; plus the input
  (stride 1) or concatenated with the input's 3x3 stride-2 average pool (padding 1, zeros
  counted, PyTorch's default); ReLU. A stage's first block makes out_planes - in_planes
  channels (the concatenation brings the rest).
- v2: a down block (left: depthwise conv3x3 s2 + BN, conv1x1 + BN + ReLU; right: conv1x1 +
  BN + ReLU, depthwise conv3x3 s2 + BN, conv1x1 + BN + ReLU; concatenated, shuffled), then
  basic blocks (the second half of the channels through conv1x1 + BN + ReLU, depthwise
  conv3x3 + BN, conv1x1 + BN + ReLU, concatenated after the first half, shuffled in 2
  groups); conv1x1(464 -> 1024) + BN + ReLU before the pool.

`feats` are the stages' outputs (what the next stage takes). Their own shortcuts and plain
convs only, at the reference width only (the groups and channel splits fix the channels).
"""
from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.errors import UserError
from jointrd_jax.models import zoo
from jointrd_jax.models.zoo import common
from jointrd_jax.models.zoo.common import GroupConvBN

STEM = 24
V1 = {"planes": (240, 480, 960), "blocks": (4, 8, 4), "groups": 3}
V2 = {"planes": (116, 232, 464), "blocks": (3, 7, 3), "last": 1024}


def shuffle(x, groups: int):
  """PyTorch's channel shuffle on NHWC: channels (g, C/g) -> (C/g, g)."""
  *lead, c = x.shape
  return x.reshape(*lead, groups, c // groups).swapaxes(-1, -2).reshape(*lead, c)


def avg_pool_3x3_s2(x):
  """`AvgPool2d(3, stride=2, padding=1)`: the zero padding counted (divide by 9). Padded
  first, then pooled without padding: the converters make that a builtin AVERAGE_POOL_2D
  (a padded reduce-window stays a StableHLO op, which LiteRT int8 and tf2onnx lack)."""
  x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return nn.avg_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class _Block(nn.Module):
  """Shared fields of the blocks: the unit's form."""
  out: int
  strides: int = 1
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  def unit(self, features, kernel_size, strides=1, groups=1, name=None):
    return GroupConvBN(features, kernel_size, strides, groups, self.folded, self.dtype,
                       self.param_dtype, name=name)


class V1Block(_Block):
  """The v1 bottleneck (module docstring); children conv1..conv3."""
  groups: int = 3

  @nn.compact
  def __call__(self, x, train: bool):
    mid, g = self.out // 4, (1 if x.shape[-1] == STEM else self.groups)
    y = shuffle(nn.relu(self.unit(mid, 1, groups=g, name="conv1")(x, train)), g)
    y = nn.relu(self.unit(mid, 3, self.strides, mid, name="conv2")(y, train))
    y = self.unit(self.out, 1, groups=self.groups, name="conv3")(y, train)
    if self.strides == 2:
      return nn.relu(jnp.concatenate([y, avg_pool_3x3_s2(x)], -1))
    return nn.relu(y + x)


class V2Down(_Block):
  """The v2 down block; children conv1..conv5 (the reference's names)."""

  @nn.compact
  def __call__(self, x, train: bool):
    c, mid = x.shape[-1], self.out // 2
    left = self.unit(c, 3, 2, c, name="conv1")(x, train)
    left = nn.relu(self.unit(mid, 1, name="conv2")(left, train))
    right = nn.relu(self.unit(mid, 1, name="conv3")(x, train))
    right = self.unit(mid, 3, 2, mid, name="conv4")(right, train)
    right = nn.relu(self.unit(mid, 1, name="conv5")(right, train))
    return shuffle(jnp.concatenate([left, right], -1), 2)


class V2Basic(_Block):
  """The v2 basic block; children conv1..conv3."""

  @nn.compact
  def __call__(self, x, train: bool):
    half = x.shape[-1] // 2
    x1, y = x[..., :half], x[..., half:]
    y = nn.relu(self.unit(half, 1, name="conv1")(y, train))
    y = self.unit(half, 3, 1, half, name="conv2")(y, train)
    y = nn.relu(self.unit(half, 1, name="conv3")(y, train))
    return shuffle(jnp.concatenate([x1, y], -1), 2)


class ShuffleNet(common.ZooNet):
  """ShuffleNet v1 or v2 (module docstring). Returns `(logits, feats)`; `start_stage` /
  `end_stage` as `resnet.ResNet`'s."""
  version: int = common.family_field()

  num_stages = 3

  @property
  def spec(self):
    return V1 if self.version == 1 else V2

  def stage_channels(self):
    return self.spec["planes"]

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def blocks(self, stage: int):
    """(name, block class, output channels, stride) of each block of `stage`."""
    planes, n = self.spec["planes"][stage], self.spec["blocks"][stage]
    if self.version == 1:
      in_ch = STEM if stage == 0 else self.spec["planes"][stage - 1]
      return [(f"stage{stage + 1}_block{j}", V1Block, planes - in_ch if j == 0 else planes,
               2 if j == 0 else 1) for j in range(n)]
    return ([(f"stage{stage + 1}_down", V2Down, planes, 2)]
            + [(f"stage{stage + 1}_block{j}", V2Basic, planes, 1) for j in range(n)])

  def units(self):
    out = {("stem",): "none"} if self.version == 1 else {("stem",): "none", ("last",): "none"}
    for i in range(self.num_stages):
      for name, cls, _, _ in self.blocks(i):
        convs = 5 if cls is V2Down else 3
        out.update({(name, f"conv{k}"): "none" for k in range(1, convs + 1)})
    return out

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: Optional[int] = None):
    end_stage = zoo.last_stage(end_stage, self.num_stages)
    kw = dict(folded=self.folded, dtype=self.dtype, param_dtype=self.param_dtype)
    if start_stage == 0:
      x = nn.relu(GroupConvBN(STEM, 1, name="stem", **kw)(x, train))
    feats = []
    for i in range(start_stage, end_stage):
      for name, cls, out, strides in self.blocks(i):
        extra = {"groups": V1["groups"]} if cls is V1Block else {}
        x = cls(out, strides, name=name, **kw, **extra)(x, train)
      feats.append(x)
    if end_stage < self.num_stages:
      return None, tuple(feats)
    if self.version == 2:
      x = GroupConvBN(V2["last"], 1, name="last", **kw)(x, train)
    return common.head(x, self.num_classes, self.dtype, self.param_dtype), tuple(feats)


def _maker(name: str, version: int):
  def make(shortcuts, conv, width, **kw):
    if shortcuts != "all" or conv != "none" or width != zoo.REFERENCE_WIDTH:
      raise UserError(f"{name} takes its own shortcuts, plain convs and its reference width "
                      f"only (shortcuts 'all', conv 'none', width 64), not shortcuts "
                      f"{shortcuts!r}, conv {conv!r}, width {width}.")
    return ShuffleNet(zoo_arch=name, version=version, width=width, **kw)
  return make


zoo.register(zoo.ZooArch("shufflenetv1", "shufflenet", _maker("shufflenetv1", 1),
                         "RepDistiller models/ShuffleNetv1.py ShuffleV1: ShuffleNet(cfg "
                         "out_planes [240, 480, 960], num_blocks [4, 8, 4], groups 3)"))
zoo.register(zoo.ZooArch("shufflenetv2", "shufflenet", _maker("shufflenetv2", 2),
                         "RepDistiller models/ShuffleNetv2.py ShuffleV2: ShuffleNetV2("
                         "net_size=1)"))
