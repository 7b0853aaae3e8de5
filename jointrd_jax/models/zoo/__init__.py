"""The CIFAR-100 distillation model zoo of RepDistiller / mdistiller, by name.

One module per family registers its archs (`register`): `cifar_resnet.py` (resnet8 ...
resnet110, resnet8x4, resnet32x4), `wrn.py` (wrn_16_2, wrn_40_1, wrn_40_2), `vgg.py`
(vgg8 ... vgg19, with BatchNorm). Every module of this package is imported here, so a
family registers itself by being a module of the package.

A zoo network answers what the trainer, JointRD and the fold ask of a network (as
`resnet.ResNet` does): `net.apply(vars, x, train, start_stage, end_stage)` returns
`(logits, feats)` (feats: the pre-ReLU stage outputs), `num_stages`, `stage_channels()`,
`units()` (the conv units and their conv kinds, for `fold.py`), `default_image_shape`,
and the fields `describe` records (`DESCRIPTION_FIELDS`, with `zoo_arch`: the arch name).

`width` scales every channel count by `width / 64`: 64 (the trainer's default) is the
reference network, smaller widths (the `:smoke` configs' 16) are small copies of it.
"""
import dataclasses
import importlib
import pkgutil
from typing import Callable, Optional

from jointrd_jax.errors import UserError

REFERENCE_WIDTH = 64
# The fields of a zoo network's description (checkpoints and exports store them).
DESCRIPTION_FIELDS = ("zoo_arch", "num_classes", "shortcuts", "conv", "width")


@dataclasses.dataclass(frozen=True)
class ZooArch:
  """An arch of the zoo. `make(shortcuts, conv, num_classes, width, folded, dtype,
  param_dtype)` builds its network; `reference`: the module that defines it (file,
  function) in RepDistiller / mdistiller."""
  name: str
  family: str
  make: Callable
  reference: str


ZOO = {}


def register(arch: ZooArch) -> ZooArch:
  if arch.name in ZOO:
    raise ValueError(f"zoo arch {arch.name!r} is registered twice")
  ZOO[arch.name] = arch
  return arch


def scaled(channels: int, width: int) -> int:
  """`channels` of the reference network at `width` (64: the reference's)."""
  if (channels * width) % REFERENCE_WIDTH:
    raise UserError(f"width {width} scales {channels} channels to a fraction; choose a "
                    f"multiple of 4 (64: the reference network).")
  return channels * width // REFERENCE_WIDTH


def build(arch: str, shortcuts: str, conv: str, num_classes: int, width: int,
          folded: bool = False, dtype=None, param_dtype=None):
  """The network of zoo arch `arch` (the caller has checked the choices' names)."""
  scaled(16, width)  # the fewest channels of a zoo network's conv
  kw = {k: v for k, v in (("dtype", dtype), ("param_dtype", param_dtype)) if v is not None}
  return ZOO[arch].make(shortcuts=shortcuts, conv=conv, num_classes=num_classes, width=width,
                        folded=folded, **kw)


def describe(net) -> dict:
  return {name: getattr(net, name) for name in DESCRIPTION_FIELDS}


def from_description(desc: dict, dtype=None, **overrides):
  """The zoo network `describe` described, with `overrides` (e.g. `folded=True`)."""
  kw = dict(desc, **overrides)
  unknown = sorted(set(kw) - set(DESCRIPTION_FIELDS) - {"folded", "param_dtype"})
  if unknown:
    raise UserError(f"the network description has unknown fields {unknown}; it was written "
                    "by a newer version.")
  if kw["zoo_arch"] not in ZOO:
    raise UserError(f"the network description names zoo arch {kw['zoo_arch']!r}, which this "
                    "version does not have; it was written by a newer version.")
  return build(kw["zoo_arch"], kw["shortcuts"], kw["conv"], kw["num_classes"], kw["width"],
               kw.get("folded", False), dtype, kw.get("param_dtype"))


def is_zoo(desc_or_arch) -> bool:
  """Whether an arch name or a description is the zoo's."""
  if isinstance(desc_or_arch, dict):
    return "zoo_arch" in desc_or_arch
  return desc_or_arch in ZOO


def last_stage(end_stage: Optional[int], num_stages: int) -> int:
  return num_stages if end_stage is None else end_stage


for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
