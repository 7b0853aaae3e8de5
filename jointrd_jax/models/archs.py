"""The architectures by name, the public constructor, and a network rebuilt from its
recorded description (checkpoints and exports store `describe(net)`)."""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from jointrd_jax import compat
from jointrd_jax.errors import UserError
from jointrd_jax.models import convs, zoo
from jointrd_jax.models.resnet import NUM_CLASSES, ResNet

ARCHS = {
    # name: (variant, block kind, blocks per stage)
    "resnet18": ("cifar", "basic", (2, 2, 2, 2)),
    "resnet34": ("cifar", "basic", (3, 4, 6, 3)),
    "resnet50": ("cifar", "bottleneck", (3, 4, 6, 3)),
    # One block per stage: the same structure at a fraction of the compile time, for
    # smoke runs and tests.
    "resnet10": ("cifar", "basic", (1, 1, 1, 1)),
    "resnet14": ("cifar", "bottleneck", (1, 1, 1, 1)),
    "imagenet_resnet18": ("imagenet", "basic", (2, 2, 2, 2)),
    "imagenet_resnet34": ("imagenet", "basic", (3, 4, 6, 3)),
    "imagenet_resnet50": ("imagenet", "bottleneck", (3, 4, 6, 3)),
    "imagenet_resnet10": ("imagenet", "basic", (1, 1, 1, 1)),
    "imagenet_resnet14": ("imagenet", "bottleneck", (1, 1, 1, 1)),
}
SHORTCUTS = ("all", "projection", "none")
# The fields that identify a network (stored with checkpoints and exports).
DESCRIPTION_FIELDS = ("variant", "kind", "stage_sizes", "num_classes", "shortcuts", "conv",
                      "width")
assert not set(ARCHS) & set(zoo.ZOO), "a zoo arch has the name of a ResNet arch"


def arch_names() -> tuple:
  """Every arch `build` takes: the ResNet family's (`ARCHS`) and the zoo's (`zoo.ZOO`)."""
  return (*ARCHS, *zoo.ZOO)


def check_choice(what: str, value, choices) -> None:
  """`UserError` naming the valid choices unless `value` is one of them. The message names
  no command-line flag: each tool prefixes its own (e.g. `--arch: ...`)."""
  if value not in choices:
    raise UserError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")


@compat.renamed_keywords(dirac="conv")
def build(arch: str, shortcuts: str = "all", conv: Optional[str] = None,
          num_classes: Optional[int] = None, width: int = 64, dtype=jnp.float32,
          param_dtype=jnp.float32, folded: bool = False) -> ResNet:
  """The public constructor. Checks every choice and names the valid ones.

  `conv`: the student's convolution kind (`convs.CONVS`: none, init, reparam, repvgg, ...;
  None: none). `num_classes` None: the variant's (100 CIFAR, 1000 ImageNet). A zoo arch
  (`zoo.ZOO`) scales its reference channels by `width / 64`.
  """
  conv = conv or "none"
  check_choice("arch", arch, arch_names())
  check_choice("shortcut policy", shortcuts, SHORTCUTS)
  check_choice("conv", conv, convs.CONVS)
  variant, kind, sizes = ARCHS.get(arch, ("cifar", None, None))
  if num_classes is None:
    num_classes = NUM_CLASSES[variant]
  if width <= 0 or num_classes <= 0:
    raise UserError(f"width ({width}) and num_classes ({num_classes}) must be positive.")
  if arch in zoo.ZOO:
    net = zoo.build(arch, shortcuts, conv, num_classes, width, folded, dtype, param_dtype)
    _check_conv_applies(net, arch)
    return net
  net = ResNet(kind=kind, stage_sizes=sizes, num_classes=num_classes, shortcuts=shortcuts,
               conv=conv, width=width, folded=folded, dtype=dtype, param_dtype=param_dtype,
               variant=variant)
  _check_conv_applies(net, arch)
  return net


def _check_conv_applies(net: ResNet, arch: str) -> None:
  """`UserError` when the student's conv kind applies to no conv of the network (its kernel
  sizes match no conv of the arch's conv scope): the student would silently be plain."""
  if net.conv == "none" or net.conv in net.units().values():
    return
  sizes = "/".join(f"{k}x{k}" for k in convs.get(net.conv).kernel_sizes or ())
  raise UserError(f"conv {net.conv!r} applies to {sizes} convs, and arch {arch!r} (shortcuts "
                  f"{net.shortcuts!r}) has none in its student conv scope; choose another conv "
                  "or arch.")


def init(net: ResNet, key, image_shape=None, batch_size: int = 1):
  """Variables `{'params', 'batch_stats'}` of `net` for images of `image_shape`
  (default: the variant's, 32x32x3 or 224x224x3)."""
  shape = tuple(image_shape) if image_shape is not None else net.default_image_shape
  x = jnp.zeros((batch_size,) + shape, jnp.float32)
  return net.init(key, x, train=False)


def num_params(params) -> int:
  return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))


def describe(net: ResNet) -> dict:
  """The fields that identify a network (stored with checkpoints, checked on load)."""
  if zoo.is_zoo(getattr(net, "zoo_arch", None)):
    return zoo.describe(net)
  d = {name: getattr(net, name) for name in DESCRIPTION_FIELDS}
  d["stage_sizes"] = list(d["stage_sizes"])
  return d


def from_description(desc: dict, dtype=None, **overrides) -> ResNet:
  """The network `describe` described (also an old one: `compat.network_fields`), with
  `overrides` of any field."""
  if zoo.is_zoo(desc):
    return zoo.from_description(compat.network_fields(desc), dtype, **overrides)
  kw = dict(compat.network_fields(desc), **overrides)
  unknown = sorted(set(kw) - {f.name for f in dataclasses.fields(ResNet)})
  if unknown:
    raise UserError(f"the network description has unknown fields {unknown}; it was written "
                    "by a newer version.")
  kw["stage_sizes"] = tuple(kw["stage_sizes"])
  convs.get(kw.get("conv", "none"))
  if dtype is not None:
    kw["dtype"] = dtype
  return ResNet(**kw)
