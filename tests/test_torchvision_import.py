"""torchvision ImageNet ResNets -> the `imagenet_resnet*` teachers (reference §8-9).

torchvision's ResNet architecture is written here from its definition (7x7 stem, max-pool,
ReLU at the END of each block, stride on the bottleneck's 3x3 conv, "v1.5"), independently
of our block convention (ReLU first, pre-ReLU sum out); converted state_dicts must give
the same logits.

Tolerances. Both sides compute in float32 (unit roundoff u = 2^-24 ~ 6e-8) and differ only
in the order of additions. For random weights and inputs the rounding errors of a dot
product of K terms behave as a random walk: about sqrt(K) * u relative to the output's
scale; over L layers in sequence (BN, ReLU and residual adds keep scales O(1)) these
independent relative errors add as a random walk again, sqrt(L) of them. `tolerance()`
allows 4 * sqrt(L * K_max) * u relative to the largest logit (ResNet-50: 4 * sqrt(50 *
4608) * 6e-8 = 1.1e-4; measured here: 1.2e-6 at most; a wrong layout, stride or padding
gives differences of the order of the logits).
"""
import os

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from experiments import convert_torch  # pylint: disable=g-import-not-at-top
from jointrd_jax import models  # pylint: disable=g-import-not-at-top
from jointrd_jax.training import checkpoints  # pylint: disable=g-import-not-at-top
from jointrd_jax.deploy import torch_import  # pylint: disable=g-import-not-at-top
from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
from torch_helpers import our_logits, randomize_bn_, torch_logits  # noqa: E402

U = 2.0 ** -24

# ------------------------------------------------------------ torchvision's ResNet


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = x if self.downsample is None else self.downsample(x)
    return F.relu(out + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride here
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    out = F.relu(self.bn1(self.conv1(x)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return F.relu(out + identity)


class TorchvisionResNet(nn.Module):
  def __init__(self, block, layers, num_classes=1000, width=64):
    super().__init__()
    self.inplanes = width
    self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    self.layer1 = self._make_layer(block, width, layers[0])
    self.layer2 = self._make_layer(block, 2 * width, layers[1], 2)
    self.layer3 = self._make_layer(block, 4 * width, layers[2], 2)
    self.layer4 = self._make_layer(block, 8 * width, layers[3], 2)
    self.fc = nn.Linear(8 * width * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride=1):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(
          nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
          nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


DEPTHS = {10: (BasicBlock, (1, 1, 1, 1)), 14: (Bottleneck, (1, 1, 1, 1)),
          18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
          50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}


def make(depth, width=64, num_classes=1000, seed=0):
  """Random weights (torchvision's kaiming-normal fan-out convs) and non-trivial BN
  statistics and affine parameters, in eval mode."""
  torch.manual_seed(seed)
  block, layers = DEPTHS[depth]
  net = TorchvisionResNet(block, layers, num_classes, width)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
      elif isinstance(m, nn.BatchNorm2d):
        randomize_bn_(m)
  return net.eval()


def images(n, size, seed=0):
  return np.random.default_rng(seed).standard_normal((n, size, size, 3)).astype(np.float32)


def tolerance(depth, max_fan_in, logits):
  scale = float(np.abs(logits).max())
  assert scale > 1e-2  # not a comparison of near-zero vectors
  return 4 * np.sqrt(depth * max_fan_in) * U * scale


def max_fan_in(width, kind):
  """The largest K of a dot product: the stage-4 3x3 conv (or the 7x7 stem, or the head)."""
  w4 = 8 * width
  return max(7 * 7 * 3, 9 * w4, w4 * (4 if kind is Bottleneck else 1))


def _check(tmp_path, depth, width, size, n=2, num_classes=1000):
  tnet = make(depth, width, num_classes)
  path = str(tmp_path / f"resnet{depth}.pth")
  torch.save(tnet.state_dict(), path)
  arch = f"imagenet_resnet{depth}"
  net, variables, info = torch_import.convert(path, arch=arch)
  assert (info["format"], info["width"], info["num_classes"], info["shortcuts"],
          info["conv"]) == ("torchvision", width, num_classes, "all", "none")
  assert net.variant == "imagenet" and info["ignored"] == []
  x = images(n, size, seed=depth)
  ours, theirs = our_logits(net, variables, x), torch_logits(tnet, x)
  tol = tolerance(depth, max_fan_in(width, DEPTHS[depth][0]), theirs)
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol)
  return float(np.abs(ours - theirs).max()), tol


# ------------------------------------------------------------ logits match


@pytest.mark.parametrize("depth,size", [(10, 64), (14, 64), (14, 37)])
def test_tiny_torchvision_resnets_give_our_logits(tmp_path, depth, size):
  """Width 4, one block per stage; 37x37 exercises odd sizes at every stride-2 op (the
  max-pool's and the convs' padding must be PyTorch's)."""
  _check(tmp_path, depth, width=4, size=size, n=3, num_classes=10)


@pytest.mark.parametrize("depth", [18, 50])
def test_real_depth_torchvision_resnets_give_our_logits(tmp_path, depth):
  """torchvision's ResNet-18 / ResNet-50 at full width and 1000 classes (64x64 images keep
  it fast; the layout does not depend on the image size)."""
  diff, tol = _check(tmp_path, depth, width=64, size=64)
  print(f"resnet{depth}: max |logit difference| {diff:.2e} (tolerance {tol:.2e})")


def test_max_pool_pads_with_minus_infinity_like_pytorch():
  """On all-negative inputs a zero padding would win every border window."""
  for size in (7, 8):
    x = -1.0 - np.abs(images(2, size, seed=size))
    ours = np.asarray(models.max_pool(jax.numpy.asarray(x)))
    theirs = F.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), 3, 2, 1)
    np.testing.assert_array_equal(ours, theirs.numpy().transpose(0, 2, 3, 1))
    assert ours.max() < 0


# ------------------------------------------------------------ full-depth key set


def torchvision_keys(depth, width=64, num_classes=1000) -> dict:
  """torchvision's ResNet state_dict {key: shape}, from its naming (no module built):
  conv1, bn1, layer{1..4}.{j}.conv{n} / bn{n} / downsample.{0,1}, fc."""
  block, layers = DEPTHS[depth]
  bottleneck = block is Bottleneck
  keys = {}

  def conv(name, cout, cin, k):
    keys[name + ".weight"] = (cout, cin, k, k)

  def bn(name, c):
    for leaf in ("weight", "bias", "running_mean", "running_var"):
      keys[f"{name}.{leaf}"] = (c,)
    keys[name + ".num_batches_tracked"] = ()

  conv("conv1", width, 3, 7)
  bn("bn1", width)
  inplanes = width
  for i, n in enumerate(layers):
    planes = width * 2 ** i
    out = planes * (4 if bottleneck else 1)
    for j in range(n):
      p = f"layer{i + 1}.{j}"
      if bottleneck:
        convs = [(planes, inplanes, 1), (planes, planes, 3), (out, planes, 1)]
      else:
        convs = [(planes, inplanes, 3), (planes, planes, 3)]
      for c, (cout, cin, k) in enumerate(convs, 1):
        conv(f"{p}.conv{c}", cout, cin, k)
        bn(f"{p}.bn{c}", cout)
      if j == 0 and (i > 0 or inplanes != out):
        conv(f"{p}.downsample.0", out, inplanes, 1)
        bn(f"{p}.downsample.1", out)
      inplanes = out
  keys["fc.weight"] = (num_classes, inplanes)
  keys["fc.bias"] = (num_classes,)
  return keys


@pytest.mark.parametrize("depth,num_keys,num_params", [
    (50, 320, 25_557_032), (34, 218, 21_797_672), (18, 122, 11_689_512)])
def test_converter_expects_torchvisions_full_depth_key_set(depth, num_keys, num_params):
  """Shapes only: the tensors our converter reads for imagenet_resnet{depth} are exactly
  torchvision's state_dict (its BN counters excepted), with torchvision's shapes; the
  parameter count is torchvision's published one."""
  tv = torchvision_keys(depth)
  assert len(tv) == num_keys
  learnable = [k for k in tv if not k.endswith(("running_mean", "running_var",
                                                "num_batches_tracked"))]
  assert sum(int(np.prod(tv[k])) for k in learnable) == num_params
  ours = torch_import.expected_keys(models.build(f"imagenet_resnet{depth}", num_classes=1000))
  want = {k: v for k, v in tv.items() if not k.endswith("num_batches_tracked")}
  assert set(ours) == set(want)
  assert {k: tuple(v) for k, v in ours.items()} == want


# ------------------------------------------------------------ the CLI


def _save_shapes(path, depth, width=8, num_classes=1000):
  """A torchvision-named state_dict of `depth` at a small width (zeros: only the keys and
  shapes matter for the structure checks)."""
  torch.save({k: torch.zeros(s) for k, s in torchvision_keys(depth, width, num_classes).items()},
             path)


def test_cli_writes_an_imagenet_teacher_run(tmp_path, capsys):
  tnet = make(14, width=4)
  path = str(tmp_path / "tv.pth")
  torch.save(tnet.state_dict(), path)
  out = str(tmp_path / "run")
  assert convert_torch.main([f"--checkpoint={path}", f"--out={out}",
                             "--arch=imagenet_resnet14"]) == 0, capsys.readouterr().err
  printed = capsys.readouterr().out
  assert "images 224x224x3" in printed and "dataset imagenet2012" in printed
  import json  # pylint: disable=g-import-not-at-top
  cfg = json.loads(open(os.path.join(out, "config.json")).read())
  assert cfg["dataset"] == "imagenet2012"
  assert cfg["model"] == {"arch": "imagenet_resnet14", "width": 4, "shortcuts": "all",
                          "conv": "none", "dirac": ""}
  net, variables, meta = checkpoints.load_network(out)
  assert meta["image_shape"] == [224, 224, 3] and meta["num_classes"] == 1000
  assert meta["networks"]["student"]["variant"] == "imagenet"
  assert net == models.build("imagenet_resnet14", width=4)
  x = images(2, 64)
  theirs = torch_logits(tnet, x)
  np.testing.assert_allclose(our_logits(net, variables, x), theirs, rtol=0,
                             atol=tolerance(14, max_fan_in(4, Bottleneck), theirs))
  # imagefolder:PATH is recorded as given; a CIFAR dataset does not fit an ImageNet arch.
  out2 = str(tmp_path / "run2")
  assert convert_torch.main([f"--checkpoint={path}", f"--out={out2}", "--arch=imagenet_resnet14",
                             "--dataset=imagefolder:/data/imagenet"]) == 0
  assert json.loads(open(os.path.join(out2, "config.json")).read())["dataset"] == (
      "imagefolder:/data/imagenet")
  capsys.readouterr()
  out3 = str(tmp_path / "run3")
  assert convert_torch.main([f"--checkpoint={path}", f"--out={out3}", "--arch=imagenet_resnet14",
                             "--dataset=cifar100"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: --dataset=cifar100 does not fit") and err.count("\n") == 1
  assert not os.path.exists(out3)


@pytest.mark.parametrize("depth,arch,message", [
    (18, "imagenet_resnet50",
     "holds an ImageNet ResNet-18 (7x7 stem, basic blocks 2-2-2-2), but "
     "--arch=imagenet_resnet50 is an ImageNet ResNet-50 (7x7 stem, bottleneck blocks 3-4-6-3); "
     "pass --arch=imagenet_resnet18."),
    (101, "imagenet_resnet50",
     "holds an ImageNet ResNet-101 (7x7 stem, bottleneck blocks 3-4-23-3), but "
     "--arch=imagenet_resnet50 is an ImageNet ResNet-50"),
    (50, "resnet50",
     "holds an ImageNet ResNet-50 (7x7 stem, bottleneck blocks 3-4-6-3), but --arch=resnet50 "
     "is a CIFAR ResNet-50 (3x3 stem, bottleneck blocks 3-4-6-3); pass "
     "--arch=imagenet_resnet50."),
    (34, "imagenet_resnet18", "holds an ImageNet ResNet-34"),
])
def test_cli_names_the_depth_of_another_resnet_and_writes_nothing(tmp_path, capsys, depth, arch,
                                                                   message):
  path = str(tmp_path / f"resnet{depth}.pth")
  _save_shapes(path, depth)
  out = tmp_path / "run"
  assert convert_torch.main([f"--checkpoint={path}", f"--out={out}", f"--arch={arch}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1, err
  assert message in err
  if depth == 101:
    assert "no arch here has that structure" in err
  assert not out.exists()


def test_unknown_arch_names_the_flag(tmp_path, capsys):
  path = str(tmp_path / "resnet18.pth")
  _save_shapes(path, 18)
  assert convert_torch.main([f"--checkpoint={path}", f"--out={tmp_path / 'run'}",
                             "--arch=resnet51"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: --arch: unknown arch 'resnet51'; choose one of resnet18, ")
  assert "imagenet_resnet50" in err and "--config" not in err
  # The library itself names no flag.
  with pytest.raises(UserError) as e:
    torch_import.convert(path, arch="resnet51")
  assert str(e.value).startswith("unknown arch 'resnet51'; choose one of ")


def test_help_describes_every_flag_and_its_default(capsys):
  # pylint: disable-next=protected-access
  actions = [a for a in convert_torch.parser()._actions
             if a.dest != "help" and a.help != "==SUPPRESS=="]  # not the hidden --noX
  assert len(actions) == 11
  for a in actions:
    assert ("Required." in a.help) if a.required else ("(default" in a.help), a.dest
    assert len(a.help) < 120, a.dest
  with pytest.raises(SystemExit):
    convert_torch.parse_args(["--help"])
  assert len(capsys.readouterr().out.splitlines()) < 40
