"""ResNet-18/34/50 and their shortcut-free ("plain") twins, CIFAR and ImageNet: one family.

Teacher and student are the same code; two knobs make the difference:
- `shortcuts`: `all` (the ResNet), `projection` (the release's "plain-CNN": identity
  shortcuts removed, the projection of the first block of stages 2-4 kept), `none`
  (strictly shortcut-free);
- `dirac`: `none`, `init` (kernel starts at delta + 0.1 W) or `reparam` (kernel is
  a * delta + b * W in every forward pass), on the convs of the variant's Dirac scope.

The `variant` fixes the stem and the Dirac scope (reference §1-2, §9):
- `cifar` (archs `resnet18`, ...): stem conv3x3(3->width) + BN + ReLU; Dirac on
  bottleneck conv2/conv3 and on both convs of a basic block;
- `imagenet` (archs `imagenet_resnet18`, ...): stem conv7x7(3->width, stride 2) + BN +
  ReLU + max-pool(3x3, stride 2, padding 1, padded with -inf like PyTorch); Dirac on
  every conv of a block, the projection shortcut included (never the stem). Functionally
  torchvision's ResNet (stride on the bottleneck's 3x3 conv, "v1.5").

Block convention (reference §1): every block starts with ReLU and returns the pre-ReLU
sum; the head applies the last ReLU. So the four stage outputs ("feats") are pre-ReLU.

    logits, feats = net.apply(variables, images, train=False)
    logits, _ = net.apply(teacher_vars, feats[k - 1], start_stage=k)  # stages k+1..4 + head

Convolutions pad symmetrically like PyTorch's (`padding=k//2`), so a stride-2 3x3 conv
sees the same pixels as in the official release and converted PyTorch weights match.
`folded=True` builds the deployment form (see `fold.py`): every conv carries a bias,
there is no BatchNorm and no Dirac re-parameterisation.
"""
import dataclasses
from typing import Any, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jointrd_jax import dirac as dirac_lib
from jointrd_jax.batchnorm import BatchNorm
from jointrd_jax.errors import UserError

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
DIRAC_MODES = ("none", "init", "reparam")
NUM_STAGES = 4
EXPANSION = {"basic": 1, "bottleneck": 4}

# The stem of each variant: conv kernel, conv stride, and a 3x3 stride-2 max-pool or not.
STEM = {"cifar": {"kernel": 3, "strides": 1, "max_pool": False},
        "imagenet": {"kernel": 7, "strides": 2, "max_pool": True}}
# The Dirac convs of a student block, per (variant, block kind): reference §2 and §9.
DIRAC_SCOPE = {
    ("cifar", "bottleneck"): ("conv2", "conv3"),
    ("cifar", "basic"): ("conv1", "conv2"),
    ("imagenet", "bottleneck"): ("conv1", "conv2", "conv3", "shortcut"),
    ("imagenet", "basic"): ("conv1", "conv2", "shortcut"),
}
# The images (H = W) and classes each variant is made for: defaults only, any size runs.
IMAGE_SIZE = {"cifar": 32, "imagenet": 224}
NUM_CLASSES = {"cifar": 100, "imagenet": 1000}

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

# Kaiming-normal, fan-out, ReLU gain (PyTorch's kaiming_normal_(mode='fan_out')).
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _torch_linear_init(fan_in: int):
  """PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / (fan_in ** 0.5)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Conv(nn.Module):
  """Bias-free conv with PyTorch padding, optionally Dirac; or conv + bias when folded."""
  features: int
  kernel_size: int
  strides: int = 1
  dirac: str = "none"
  use_bias: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    shape = (k, k, x.shape[-1], self.features)
    init = dirac_lib.dirac_plus_init(conv_init) if self.dirac == "init" else conv_init
    kernel = self.param("kernel", init, shape, self.param_dtype)
    if self.dirac == "reparam":
      a = self.param(dirac_lib.A_NAME, nn.initializers.ones, (self.features,), self.param_dtype)
      b = self.param(dirac_lib.B_NAME, nn.initializers.constant(dirac_lib.B_INIT),
                     (self.features,), self.param_dtype)
      kernel = dirac_lib.effective_kernel(kernel, a, b)
    pad = k // 2
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype),
        window_strides=(self.strides, self.strides),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      y = y + bias.astype(self.dtype)
    return y


class ConvBN(nn.Module):
  """Conv followed by BatchNorm (child `bn`), or a biased conv when `folded`."""
  features: int
  kernel_size: int
  strides: int = 1
  dirac: str = "none"
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = Conv(self.features, self.kernel_size, self.strides,
             dirac="none" if self.folded else self.dirac, use_bias=self.folded,
             dtype=self.dtype, param_dtype=self.param_dtype, name="conv")(x)
    if self.folded:
      return y
    return BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM,
                     epsilon=BN_EPSILON, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="bn")(y)


def max_pool(x, window: int = 3, strides: int = 2):
  """PyTorch's `MaxPool2d(window, strides, padding=window // 2)` on NHWC: the padding is
  -inf, so a padded position never wins (whatever the sign of the input)."""
  pad = window // 2
  # A Python scalar init value: JAX then recognises a max pool (differentiable); an array
  # init would make it a generic reduce_window, which has no gradient.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1),
                               (1, strides, strides, 1),
                               ((0, 0), (pad, pad), (pad, pad), (0, 0)))


class Block(nn.Module):
  """A basic or bottleneck block: ReLU first, pre-ReLU sum out.

  `shortcut` is `identity`, `projection` (1x1 conv stride s + BN) or `none`.
  `dirac_scope`: the names of the convs (`conv1`..`conv3`, `shortcut`) that use `dirac`.
  """
  kind: str
  planes: int
  strides: int
  shortcut: str
  dirac: str = "none"
  dirac_scope: Tuple[str, ...] = ()
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    def cbn(name, features, kernel_size, strides=1):
      dirac = self.dirac if name in self.dirac_scope else "none"
      return ConvBN(features, kernel_size, strides, dirac, self.folded, self.dtype,
                    self.param_dtype, name=name)

    x = nn.relu(x)
    if self.kind == "bottleneck":
      y = nn.relu(cbn("conv1", self.planes, 1)(x, train))
      y = nn.relu(cbn("conv2", self.planes, 3, self.strides)(y, train))
      y = cbn("conv3", self.planes * 4, 1)(y, train)
    else:
      y = nn.relu(cbn("conv1", self.planes, 3, self.strides)(x, train))
      y = cbn("conv2", self.planes, 3)(y, train)
    if self.shortcut == "identity":
      y = y + x
    elif self.shortcut == "projection":
      y = y + cbn("shortcut", y.shape[-1], 1, self.strides)(x, train)
    return y


def shortcut_plan(kind: str, stage_sizes: Sequence[int], shortcuts: str, width: int = 64):
  """The shortcut of every block: a tuple per stage of 'identity'/'projection'/'none'."""
  plan = []
  in_ch = width
  for i, n in enumerate(stage_sizes):
    out_ch = width * 2 ** i * EXPANSION[kind]
    stage = []
    for j in range(n):
      strides = 2 if (i > 0 and j == 0) else 1
      needs_projection = strides != 1 or in_ch != out_ch
      if shortcuts == "all":
        s = "projection" if needs_projection else "identity"
      elif shortcuts == "projection":
        s = "projection" if (i > 0 and j == 0) else "none"
      else:
        s = "none"
      stage.append(s)
      in_ch = out_ch
    plan.append(tuple(stage))
  return tuple(plan)


class ResNet(nn.Module):
  """The ResNet family. Returns `(logits, feats)`, feats = pre-ReLU stage outputs.

  With `start_stage=k` (1..4) the input is the pre-ReLU output of stage k and only
  stages k+1..4 and the head run (JointRD's hybrid paths); feats then holds those.
  With `end_stage=k` (< 4) only stages up to k run and the logits are None.
  """
  kind: str
  stage_sizes: Tuple[int, ...]
  num_classes: int = 100
  shortcuts: str = "all"
  dirac: str = "none"
  width: int = 64
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  # Last, with a default: checkpoints written before the ImageNet variant lack it.
  variant: str = "cifar"

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: int = NUM_STAGES):
    plan = shortcut_plan(self.kind, self.stage_sizes, self.shortcuts, self.width)
    if start_stage == 0:
      stem = STEM[self.variant]
      x = ConvBN(self.width, stem["kernel"], stem["strides"], folded=self.folded,
                 dtype=self.dtype, param_dtype=self.param_dtype, name="stem")(x, train)
      x = nn.relu(x)
      if stem["max_pool"]:
        x = max_pool(x)
    feats = []
    for i in range(start_stage, end_stage):
      for j, shortcut in enumerate(plan[i]):
        x = Block(self.kind, self.width * 2 ** i, 2 if (i > 0 and j == 0) else 1,
                  shortcut, dirac=self.dirac,
                  dirac_scope=DIRAC_SCOPE[self.variant, self.kind], folded=self.folded,
                  dtype=self.dtype, param_dtype=self.param_dtype,
                  name=f"stage{i + 1}_block{j}")(x, train)
      feats.append(x)
    if end_stage < NUM_STAGES:
      return None, tuple(feats)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=_torch_linear_init(x.shape[-1]),
                      bias_init=_torch_linear_init(x.shape[-1]), name="head")(x)
    return logits, tuple(feats)

  @property
  def plan(self):
    return shortcut_plan(self.kind, self.stage_sizes, self.shortcuts, self.width)

  def stage_channels(self):
    return tuple(self.width * 2 ** i * EXPANSION[self.kind] for i in range(NUM_STAGES))

  @property
  def default_image_shape(self):
    """(H, W, 3) of the images the variant is made for (32 CIFAR, 224 ImageNet)."""
    return (IMAGE_SIZE[self.variant], IMAGE_SIZE[self.variant], 3)


def check_choice(what: str, value, choices) -> None:
  """`UserError` naming the valid choices unless `value` is one of them. The message names
  no command-line flag: each tool prefixes its own (e.g. `--arch: ...`)."""
  if value not in choices:
    raise UserError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}.")


def build(arch: str, shortcuts: str = "all", dirac: str = "none",
          num_classes: Optional[int] = None, width: int = 64, dtype=jnp.float32,
          param_dtype=jnp.float32, folded: bool = False) -> ResNet:
  """The public constructor. Checks every choice and names the valid ones.

  `num_classes` None: the variant's (100 CIFAR, 1000 ImageNet).
  """
  check_choice("arch", arch, ARCHS)
  check_choice("shortcut policy", shortcuts, SHORTCUTS)
  check_choice("dirac mode", dirac, DIRAC_MODES)
  variant, kind, sizes = ARCHS[arch]
  if num_classes is None:
    num_classes = NUM_CLASSES[variant]
  if width <= 0 or num_classes <= 0:
    raise UserError(f"width ({width}) and num_classes ({num_classes}) must be positive.")
  return ResNet(kind=kind, stage_sizes=sizes, num_classes=num_classes, shortcuts=shortcuts,
                dirac=dirac, width=width, folded=folded, dtype=dtype, param_dtype=param_dtype,
                variant=variant)


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
  return {f.name: getattr(net, f.name) for f in dataclasses.fields(net)
          if f.name in ("variant", "kind", "stage_sizes", "num_classes", "shortcuts", "dirac",
                        "width")}
