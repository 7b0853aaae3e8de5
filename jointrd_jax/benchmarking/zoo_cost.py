"""The forward cost of the distillation zoo's networks (`experiments.benchmark --zoo`): per
32x32 image, parameters, XLA's FLOPs, multiply-accumulates counted as the PyTorch counters
count them, and the published figure where a source publishes one.

Each network is built at its reference form (`reference_shortcuts`: shortcuts `all`; VGG is
plain whatever the policy), with random weights (`random_weights`), FOLDED (`fold.py`: the
deployment form, each conv and its BatchNorm one biased conv), and its inference function
`images f32 [1, 32, 32, 3] -> logits` lowered and compiled at batch 1:

- `xla_flops`: `compiled.cost_analysis()['flops']` (`xla_analysis.cost`). XLA counts a
  multiply-add as 2 flops, and for a conv only the kernel taps that fall inside the
  (unpadded) input: a 3x3 conv with padding 1 on an HxW map costs 2 x (3H - 2)(3W - 2) x
  C_in x C_out, not 2 x 9HW x C_in x C_out. The elementwise ops (bias, ReLU, residual add,
  pooling) add about 1 flop per element each.
- `macs`: multiply-accumulates of every conv and dense layer of the same function, counted
  from its jaxpr as thop / ptflops / fvcore count them: output elements x kernel taps x
  input channels per group, padding included; nothing else (no BN: folded, no ReLU, no
  pooling). Papers differ in what they call FLOPs: some print these MACs, some 2 x MACs,
  some leave out the head; a published figure is entered in MACs by its source's own
  convention.
- `published_macs`, `published_source`: `PUBLISHED_MACS`, in MACs (a source that counts
  2 flops per multiply-add is halved when entered); None where no citable source gives
  the figure.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import models
from jointrd_jax.benchmarking import random_weights, xla_analysis
from jointrd_jax.models import fold, zoo

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 100
# Their ResNet50 teacher (of the MobileNetV2 / VGG8 pairs) is this project's resnet50.
TEACHERS_OF_OURS = ("resnet50",)
# arch -> (MACs per 32x32 image at 100 classes, the source that publishes it). Searched the
# RepDistiller, mdistiller and logit-standardization-KD READMEs and issue threads for a
# table of these networks' FLOPs: none gives one, so every entry is empty; never a figure
# from memory.
PUBLISHED_MACS = {}
FIXED_WIDTH = ("shufflenetv1", "shufflenetv2")  # exist at width 64 only


def zoo_archs(width: int = zoo.REFERENCE_WIDTH) -> tuple:
  """The table's default rows: every zoo arch and their ResNet50 teacher (ours); at a
  width other than 64 the ShuffleNets (which exist at 64 only) are left out."""
  return tuple(a for a in (*zoo.ZOO, *TEACHERS_OF_OURS)
               if width == zoo.REFERENCE_WIDTH or a not in FIXED_WIDTH)


def reference_shortcuts(arch: str) -> str:
  """The shortcut policy of the reference network: `all` (the ResNets' and WRNs' own
  shortcuts; the fixed networks take no other; VGG builds plain whatever the policy)."""
  del arch
  return "all"


def _abstract(tree):
  return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def inference_function(arch: str, width: int, num_classes: int = NUM_CLASSES,
                       shortcuts: str = None):
  """`(fn, params, net)`: the folded network's `fn(params, images) -> logits`, its folded
  parameters (random) and the network as built (unfolded)."""
  net = models.build(arch, shortcuts or reference_shortcuts(arch), num_classes=num_classes,
                     width=width)
  variables = random_weights.random_variables(net, IMAGE_SHAPE)
  folded_net, folded = fold.fold(net, variables)
  fn = lambda p, x: folded_net.apply({"params": p}, x, train=False)[0]
  return fn, folded["params"], net


def _walk(jaxpr):
  """Every equation of `jaxpr` and of the jaxprs inside its equations (jit, custom_jvp)."""
  for eqn in jaxpr.eqns:
    yield eqn
    for v in eqn.params.values():
      for sub in (v if isinstance(v, (list, tuple)) else (v,)):
        inner = getattr(sub, "jaxpr", None)
        if inner is not None:
          yield from _walk(getattr(inner, "jaxpr", inner))


def count_macs(fn, *args) -> int:
  """Multiply-accumulates of the convs and dense layers of `fn(*args)` (module doc)."""
  total = 0
  for eqn in _walk(jax.make_jaxpr(fn)(*args).jaxpr):
    out = math.prod(eqn.outvars[0].aval.shape) if eqn.outvars else 0
    if eqn.primitive.name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
      total += out * rhs[spec[1]] * math.prod(rhs[d] for d in spec[2:])
    elif eqn.primitive.name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += out * math.prod(lhs[d] for d in lhs_contract)
  return int(total)


def cost(arch: str, width: int = zoo.REFERENCE_WIDTH, num_classes: int = NUM_CLASSES) -> dict:
  """One row of the table (module doc) for `arch` at `width`."""
  fn, params, net = inference_function(arch, width, num_classes)
  x = jax.ShapeDtypeStruct((1,) + IMAGE_SHAPE, jnp.float32)
  compiled = jax.jit(fn).lower(_abstract(params), x).compile()
  macs = count_macs(fn, params, np.zeros(x.shape, np.float32))
  published, source = PUBLISHED_MACS.get(arch, (None, None))
  return {"arch": arch, "zoo": zoo.is_zoo(arch), "width": width, "num_classes": num_classes,
          "shortcuts": models.describe(net)["shortcuts"], "image_shape": list(IMAGE_SHAPE),
          "num_params": models.num_params(random_weights.random_variables(net, IMAGE_SHAPE)[
              "params"]),
          "xla_flops": xla_analysis.cost(compiled), "macs": macs,
          "published_macs": published, "published_source": source}


def table(rows) -> str:
  """The printed table: one line per arch, then where the published figures come from."""
  fmt = lambda v, spec, w: f"{'-':>{w}}" if v is None else f"{format(v, spec):>{w}}"
  head = (f"{'arch':<15}{'shortcuts':<10}{'params':>12}{'XLA MFLOP/img':>15}"
          f"{'MMAC/img':>10}{'published MMAC':>16}  source")
  lines = [head, "-" * len(head)]
  for r in rows:
    lines.append(
        f"{r['arch']:<15}{r['shortcuts']:<10}{r['num_params']:>12,}"
        f"{fmt(r['xla_flops'] and r['xla_flops'] / 1e6, '.2f', 15)}{r['macs'] / 1e6:>10.2f}"
        f"{fmt(r['published_macs'] and r['published_macs'] / 1e6, '.2f', 16)}  "
        f"{r['published_source'] or '-'}")
  return "\n".join(lines)
