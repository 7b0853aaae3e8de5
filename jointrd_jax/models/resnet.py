"""ResNet-18/34/50 and their shortcut-free ("plain") twins, CIFAR and ImageNet: one family.

Teacher and student are the same code; two knobs make the difference:
- `shortcuts`: `all` (the ResNet), `projection` (the release's "plain-CNN": identity
  shortcuts removed, the projection of the first block of stages 2-4 kept), `none`
  (strictly shortcut-free);
- `conv`: the student's convolution kind (`convs.py`: `none`, `init`, `reparam`, and every
  kind registered by a module of this package, e.g. `repvgg`), on the convs of the
  variant's conv scope.

The `variant` fixes the stem and the conv scope (reference §1-2, §9):
- `cifar` (archs `resnet18`, ...): stem conv3x3(3->width) + BN + ReLU; the student's conv
  on bottleneck conv2/conv3 and on both convs of a basic block;
- `imagenet` (archs `imagenet_resnet18`, ...): stem conv7x7(3->width, stride 2) + BN +
  ReLU + max-pool(3x3, stride 2, padding 1, padded with -inf like PyTorch; the folded
  form pools the ReLU's output over zero padding, the same values); the student's
  conv on every conv of a block, the projection shortcut included (never the stem).
  Functionally torchvision's ResNet (stride on the bottleneck's 3x3 conv, "v1.5").

Block convention (reference §1): every block starts with ReLU and returns the pre-ReLU
sum; the head applies the last ReLU. So the four stage outputs ("feats") are pre-ReLU.

    logits, feats = net.apply(variables, images, train=False)
    logits, _ = net.apply(teacher_vars, feats[k - 1], start_stage=k)  # stages k+1..4 + head

Convolutions pad symmetrically like PyTorch's (`padding=k//2`), so a stride-2 3x3 conv
sees the same pixels as in the official release and converted PyTorch weights match.
`folded=True` builds the deployment form (see `fold.py`): every conv unit is one biased
conv, no BatchNorm, no re-parameterisation, no branches.
"""
from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.models import convs
from jointrd_jax.models.layers import Conv, max_pool, relu_max_pool, torch_linear_init

NUM_STAGES = 4
EXPANSION = {"basic": 1, "bottleneck": 4}

# The stem of each variant: conv kernel, conv stride, and a 3x3 stride-2 max-pool or not.
STEM = {"cifar": {"kernel": 3, "strides": 1, "max_pool": False},
        "imagenet": {"kernel": 7, "strides": 2, "max_pool": True}}
# The convs of a student block that take the student's conv kind, per (variant, block
# kind): reference §2 and §9 (the release's Dirac convs).
CONV_SCOPE = {
    ("cifar", "bottleneck"): ("conv2", "conv3"),
    ("cifar", "basic"): ("conv1", "conv2"),
    ("imagenet", "bottleneck"): ("conv1", "conv2", "conv3", "shortcut"),
    ("imagenet", "basic"): ("conv1", "conv2", "shortcut"),
}
# The images (H = W) and classes each variant is made for: defaults only, any size runs.
IMAGE_SIZE = {"cifar": 32, "imagenet": 224}
NUM_CLASSES = {"cifar": 100, "imagenet": 1000}


def block_units(kind: str, shortcut: str):
  """The conv units of a block, in order: `(name, kernel_size)`."""
  units = ([("conv1", 1), ("conv2", 3), ("conv3", 1)] if kind == "bottleneck"
           else [("conv1", 3), ("conv2", 3)])
  return units + ([("shortcut", 1)] if shortcut == "projection" else [])


def unit_kind(conv: str, name: str, kernel_size: int, scope) -> str:
  """The conv kind of unit `name`: the student's `conv` where its scope and the kind's
  kernel sizes take it, else `none`."""
  return conv if name in scope and convs.get(conv).applies_to(kernel_size) else "none"


class FoldedConv(nn.Module):
  """A conv unit in deployment form: one biased conv (child `conv`)."""
  features: int
  kernel_size: int
  strides: int = 1
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return Conv(self.features, self.kernel_size, self.strides, use_bias=True, dtype=self.dtype,
                param_dtype=self.param_dtype, name="conv")(x)


def make_unit(kind: str, features: int, kernel_size: int, strides: int, *, folded: bool,
              dtype, param_dtype, name: str):
  if folded:
    return FoldedConv(features, kernel_size, strides, dtype, param_dtype, name=name)
  return convs.get(kind).unit(features, kernel_size, strides, dtype=dtype,
                              param_dtype=param_dtype, name=name)


class Block(nn.Module):
  """A basic or bottleneck block: ReLU first, pre-ReLU sum out.

  `shortcut` is `identity`, `projection` (1x1 conv stride s + BN) or `none`.
  `conv_scope`: the names of the convs (`conv1`..`conv3`, `shortcut`) that use `conv`.
  """
  kind: str
  planes: int
  strides: int
  shortcut: str
  conv: str = "none"
  conv_scope: Tuple[str, ...] = ()
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    kernels = dict(block_units(self.kind, self.shortcut))

    def unit(name, features, strides=1):
      k = kernels[name]
      return make_unit(unit_kind(self.conv, name, k, self.conv_scope), features, k, strides,
                       folded=self.folded, dtype=self.dtype, param_dtype=self.param_dtype,
                       name=name)

    x = nn.relu(x)
    if self.kind == "bottleneck":
      y = nn.relu(unit("conv1", self.planes)(x, train))
      y = nn.relu(unit("conv2", self.planes, self.strides)(y, train))
      y = unit("conv3", self.planes * 4)(y, train)
    else:
      y = nn.relu(unit("conv1", self.planes, self.strides)(x, train))
      y = unit("conv2", self.planes)(y, train)
    if self.shortcut == "identity":
      y = y + x
    elif self.shortcut == "projection":
      y = y + unit("shortcut", y.shape[-1], self.strides)(x, train)
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
  conv: str = "none"
  width: int = 64
  folded: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  variant: str = "cifar"

  @nn.compact
  def __call__(self, x, train: bool = False, start_stage: int = 0,
               end_stage: int = NUM_STAGES):
    plan = self.plan
    if start_stage == 0:
      stem = STEM[self.variant]
      x = make_unit("none", self.width, stem["kernel"], stem["strides"], folded=self.folded,
                    dtype=self.dtype, param_dtype=self.param_dtype, name="stem")(x, train)
      # No ReLU here: every block starts with one (its input is a pre-ReLU stage output),
      # and max pooling commutes with ReLU, so the stem's ReLU happens in the first block.
      # A second ReLU would be a no-op op in the deployed graph (in the int8 LiteRT model
      # one that XNNPACK does not take, splitting its graph in two).
      # The folded (deployment) form applies that ReLU before the pool and pads with zeros
      # (`relu_max_pool`: the same values; the int8 LiteRT model needs it), the first
      # block's ReLU is then a no-op the converter removes.
      if stem["max_pool"]:
        x = relu_max_pool(x) if self.folded else max_pool(x)
    feats = []
    for i in range(start_stage, end_stage):
      for j, shortcut in enumerate(plan[i]):
        x = Block(self.kind, self.width * 2 ** i, 2 if (i > 0 and j == 0) else 1,
                  shortcut, conv=self.conv, conv_scope=CONV_SCOPE[self.variant, self.kind],
                  folded=self.folded, dtype=self.dtype, param_dtype=self.param_dtype,
                  name=f"stage{i + 1}_block{j}")(x, train)
      feats.append(x)
    if end_stage < NUM_STAGES:
      return None, tuple(feats)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                      kernel_init=torch_linear_init(x.shape[-1]),
                      bias_init=torch_linear_init(x.shape[-1]), name="head")(x)
    return logits, tuple(feats)

  @property
  def plan(self):
    return shortcut_plan(self.kind, self.stage_sizes, self.shortcuts, self.width)

  def units(self):
    """Every conv unit: `{(module path...): conv kind}` (the stem and each block's convs)."""
    out = {("stem",): "none"}
    scope = CONV_SCOPE[self.variant, self.kind]
    for i, stage in enumerate(self.plan):
      for j, shortcut in enumerate(stage):
        for name, k in block_units(self.kind, shortcut):
          out[(f"stage{i + 1}_block{j}", name)] = unit_kind(self.conv, name, k, scope)
    return out

  def stage_channels(self):
    return tuple(self.width * 2 ** i * EXPANSION[self.kind] for i in range(NUM_STAGES))

  @property
  def default_image_shape(self):
    """(H, W, 3) of the images the variant is made for (32 CIFAR, 224 ImageNet)."""
    return (IMAGE_SIZE[self.variant], IMAGE_SIZE[self.variant], 3)
