"""The student's convolution, by name: a registry of conv kinds.

A conv kind says how each convolution of a block's conv scope (`resnet.CONV_SCOPE`: which
convs of a block the student's kind applies to, per variant and block) is built for
training, and how it folds into one biased convolution for inference:

- `unit(features, kernel_size, strides, dtype, param_dtype, name)`: a Flax module called as
  `unit(x, train)` (conv + BatchNorm in training form, whatever branches the kind has);
- `fold(params, batch_stats)`: the unit's variables -> `{'conv': {'kernel', 'bias'}}`, one
  biased conv equal to the unit in inference mode (`fold.py` applies it to every unit);
- `kernel_sizes`: the kernel sizes it applies to inside the scope (None: every one); the
  other convs of the scope stay plain (`none`).

Built in here: `none` (conv + BN), `init` (the same, kernel initialised at delta + 0.1 W),
`reparam` (DiracNets: kernel a * delta + b * W in every forward pass). Other kinds are
modules of this package that call `register` (e.g. `repvgg.py`); `models/__init__.py`
imports every module of the package, so adding a kind is adding its module.
"""
import dataclasses
import functools
from typing import Callable, Optional, Tuple

import jax.numpy as jnp

from jointrd_jax.models import dirac as dirac_lib
from jointrd_jax.models.layers import BN_EPSILON, ConvBN
from jointrd_jax.registry import Registry


@dataclasses.dataclass(frozen=True)
class ConvKind:
  name: str
  unit: Callable
  fold: Callable[[dict, dict], dict]
  description: str
  kernel_sizes: Optional[Tuple[int, ...]] = None

  def applies_to(self, kernel_size: int) -> bool:
    return self.kernel_sizes is None or kernel_size in self.kernel_sizes


CONVS = Registry("conv")
get = CONVS.get


def register(kind: ConvKind) -> ConvKind:
  return CONVS.register(kind.name, kind)


def bn_affine(bn: dict, stats: dict, eps: float = BN_EPSILON):
  """Inference-mode BatchNorm as `y * s + t`: `(s, t)` per channel."""
  s = bn["scale"] / jnp.sqrt(stats["var"] + eps)
  return s, bn["bias"] - stats["mean"] * s


def fold_conv_bn(params: dict, stats: dict) -> dict:
  """A `ConvBN` unit (plain or Dirac conv) as one biased conv:

      W_eff = a * delta + b * W  (Dirac reparam, else W);  s = g / sqrt(v + eps)
      W' = W_eff * s  (per output channel);  bias' = beta - mu * s (+ c * s: a conv bias c)
  """
  conv = params["conv"]
  kernel = jnp.asarray(conv["kernel"], jnp.float32)
  if dirac_lib.A_NAME in conv:
    kernel = dirac_lib.effective_kernel(kernel, conv[dirac_lib.A_NAME], conv[dirac_lib.B_NAME])
  s, t = bn_affine(params["bn"], stats["bn"])
  if "bias" in conv:  # a biased conv (the zoo's VGG): BN(W x + c) = s W x + t + s c
    t = t + jnp.asarray(conv["bias"], jnp.float32) * s
  return {"conv": {"kernel": kernel * s, "bias": t}}


def _conv_bn(dirac: str):
  """The unit of the kinds built on `ConvBN` (Dirac mode `dirac`)."""
  return functools.partial(ConvBN, dirac=dirac)


register(ConvKind("none", _conv_bn("none"), fold_conv_bn, "a plain conv + BatchNorm"))
register(ConvKind("init", _conv_bn("init"), fold_conv_bn,
                  "a plain conv + BatchNorm whose kernel starts at delta + 0.1 W0 (the paper's "
                  "'Dirac initialisation')"))
register(ConvKind("reparam", _conv_bn("reparam"), fold_conv_bn,
                  "DiracNets: the kernel is a * delta + b * W in every forward pass (a, b per "
                  "output channel, init 1 and 0.1, no weight decay) + BatchNorm"))
