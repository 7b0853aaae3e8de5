"""The zoo's CIFAR ResNets and WRNs against the reference PyTorch modules
(tests/zoo_torch_nets.py, transcriptions of RepDistiller models/resnet.py and wrn.py) on
converted weights: the same logits. The ResNets' keys are torchvision's spelling, which
`deploy/torch_import.py` maps (stem `conv1`/`bn1`, `layer{i}.{j}.conv{n}`/`bn{n}`, projection
`downsample.{0,1}`, `fc`); the WRN's mapping is `wrn_key` below."""
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zoo_torch_nets  # pylint: disable=g-import-not-at-top
from jointrd_jax import models  # pylint: disable=g-import-not-at-top
from jointrd_jax.deploy import torch_import  # pylint: disable=g-import-not-at-top


BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def wrn_key(path) -> str:
  """The reference key of a `PreActWRN` leaf: `stem` -> `conv1`; `stage{i}_block{j}_{m}` ->
  `block{i}.layer.{j}.{m}` (`shortcut` -> `convShortcut`); `bn` -> `bn1`; `head` -> `fc`."""
  _, top, leaf = path
  if top in ("head", "stem"):
    return {"head": "fc.", "stem": "conv1."}[top] + {"kernel": "weight"}.get(leaf, leaf)
  m = re.fullmatch(r"stage(\d)_block(\d+)_(\w+)", top)
  prefix = f"block{m[1]}.layer.{m[2]}.{m[3]}." if m else "bn1."
  prefix = prefix.replace(".shortcut.", ".convShortcut.")
  return prefix + (BN[leaf] if leaf in BN else "weight")


def vgg_key(path) -> str:
  """`stage{i}_conv{j}/conv` -> `block{i - 1}.{3 j}`, `/bn` -> `block{i - 1}.{3 j + 1}`;
  `head` -> `classifier`."""
  _, top, *rest = path
  if top == "head":
    return "classifier." + {"kernel": "weight"}.get(rest[0], rest[0])
  (i, j), (module, leaf) = re.fullmatch(r"stage(\d)_conv(\d)", top).groups(), rest
  index = 3 * int(j) + (module == "bn")
  return f"block{int(i) - 1}.{index}." + BN.get(leaf, {"kernel": "weight"}.get(leaf, leaf))


def resnet_key(path) -> str:
  layout = torch_import._layout("torchvision", {})  # pylint: disable=protected-access
  return torch_import._torch_key(path, layout)  # pylint: disable=protected-access


def convert(net, sd, torch_key):
  """Our variables of `net` from a reference state_dict: every key used, every shape equal."""
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  used = set()

  def leaf(path, shape):
    key = torch_key(tuple(str(getattr(p, "key", p)) for p in path))
    used.add(key)
    if sd[key].ndim == 2:  # a Linear's [out, in] (`_convert` knows the name fc only)
      return sd[key].T
    return torch_import._convert(key, sd[key], shape.shape)  # pylint: disable=protected-access

  variables = jax.tree_util.tree_map_with_path(leaf, shapes)
  assert jax.tree_util.tree_map(np.shape, variables) == jax.tree_util.tree_map(
      lambda s: s.shape, shapes)
  assert used == {k for k in sd if not k.endswith("num_batches_tracked")}
  return variables


@pytest.mark.parametrize("arch,depth,reference", [
    ("resnet8x4", 8, lambda: zoo_torch_nets.CifarResNet(8, (32, 64, 128, 256))),
    ("resnet20", 20, lambda: zoo_torch_nets.CifarResNet(20, (16, 16, 32, 64))),
    ("wrn_16_2", 16, lambda: zoo_torch_nets.WideResNet(16, 2)),
    ("vgg8", 8, lambda: zoo_torch_nets.VGG([[64], [128], [256], [512], [512]])),
])
def test_forward_equals_the_reference_module(arch, depth, reference):
  """float32 both, sums in another order: 4 sqrt(L K) u of the largest logit, L = depth
  layers, K <= 9 * 256 terms per dot product (as tests/test_models.py's `_f32_tolerance`)."""
  torch.manual_seed(0)
  ref = zoo_torch_nets.randomise_bn(reference()).eval()
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  net = models.build(arch)
  x = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  key = {"wrn": wrn_key, "vgg": vgg_key}.get(arch[:3], resnet_key)
  variables = convert(net, sd, key)
  got = np.asarray(jax.jit(net.apply)(variables, x)[0])
  scale = float(np.abs(want).max())
  assert scale > 1e-2
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=4 * np.sqrt(depth * 9 * 256) * 2.0 ** -24 * scale)
