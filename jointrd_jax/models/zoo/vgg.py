"""The VGGs of the distillation zoo, with BatchNorm: vgg8, vgg11, vgg13, vgg16, vgg19
(RepDistiller `models/vgg.py`, `VGG(cfg, batch_norm=True)`, configs S, A, B, D, E;
mdistiller `mdistiller/models/cifar/vgg.py`, the same).

Five stages of conv3x3 (with bias) + BN units, ReLU between; before stages 2-4 a 2x2
max-pool (before stage 5 only for inputs of 64 pixels, as the reference: not on CIFAR);
ReLU, global average pool, linear(512 -> classes). `feats` are the stages' pre-ReLU
outputs (the reference's `preact` features f0_pre..f4_pre).

VGG is plain: every shortcut policy builds the same network (recorded as `none`). The conv
kinds apply to every conv but the first (3 -> 64, as the ResNets' stem): `none`, `init`
and `reparam` keep the reference's conv bias; a kind with its own unit (e.g. `repvgg`) has
no conv bias (a bias before BatchNorm changes nothing but the parameter count).
"""
from typing import Any, Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.models import convs, zoo
from jointrd_jax.models.layers import DIRAC_MODES, Conv, batch_norm
from jointrd_jax.models.resnet import make_unit
from jointrd_jax.models.zoo import common

CFG = {  # the reference's cfg: the convs' channels, per stage
    "S": ((64,), (128,), (256,), (512,), (512,)),
    "A": ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    "B": ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    "D": ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    "E": ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512),
          (512, 512, 512, 512)),
}
ARCHS = {"vgg8": "S", "vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


class BiasedConvBN(nn.Module):
  """conv3x3 with bias (Dirac mode `dirac`) + BN, children `conv` and `bn` (the fold of
  `convs.fold_conv_bn` takes the bias)."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  dirac: str = "none"
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = Conv(self.features, self.kernel_size, self.strides, dirac=self.dirac, use_bias=True,
             dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
    return batch_norm(train, self.dtype, self.param_dtype, "bn")(y)


class VGG(common.ZooNet):
  """A VGG with BatchNorm (module docstring). Returns `(logits, feats)`; `start_stage` /
  `end_stage` as `resnet.ResNet`'s."""
  cfg: Tuple[Tuple[int, ...], ...] = common.family_field()  # at width 64
  shortcuts: str = "none"

  @property
  def num_stages(self) -> int:
    return len(self.cfg)

  def stage_channels(self):
    return tuple(zoo.scaled(stage[-1], self.width) for stage in self.cfg)

  @property
  def default_image_shape(self):
    return (32, 32, 3)

  def units(self):
    return {(f"stage{i + 1}_conv{j}",): "none" if i == j == 0 else self.conv
            for i, stage in enumerate(self.cfg) for j in range(len(stage))}

  def _unit(self, kind, features, name):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype, name=name)
    if self.folded or kind not in DIRAC_MODES:
      return make_unit(kind, features, 3, 1, folded=self.folded, **kw)
    return BiasedConvBN(features, dirac=kind, **kw)

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: Optional[int] = None):
    end_stage = zoo.last_stage(end_stage, self.num_stages)
    units = self.units()
    feats = []
    for i in range(start_stage, end_stage):
      if i > 0:
        x = nn.relu(x)
        if i < self.num_stages - 1 or x.shape[1] >= 8:
          x = nn.max_pool(x, (2, 2), (2, 2))
      for j, features in enumerate(self.cfg[i]):
        x = x if j == 0 else nn.relu(x)
        name = f"stage{i + 1}_conv{j}"
        x = self._unit(units[(name,)], zoo.scaled(features, self.width), name)(x, train)
      feats.append(x)
    if end_stage < self.num_stages:
      return None, tuple(feats)
    return common.head(x, self.num_classes, self.dtype, self.param_dtype), tuple(feats)


def _maker(name: str, cfg: str):
  def make(shortcuts, conv, **kw):
    del shortcuts  # plain whatever the policy
    convs.get(conv)
    return VGG(zoo_arch=name, cfg=CFG[cfg], conv=conv, **kw)
  return make


for _name, _cfg in ARCHS.items():
  zoo.register(zoo.ZooArch(_name, "vgg", _maker(_name, _cfg),
                           f"RepDistiller models/vgg.py {_name}_bn: VGG(cfg['{_cfg}'], "
                           "batch_norm=True)"))
