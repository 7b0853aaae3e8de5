"""PyTorch -> Flax import (reference §8): tiny PyTorch ResNets (jointrd_jax/benchmarking/
torch_nets.py), in both the torchvision and the JointRD release layouts, must give our logits
after conversion."""
import json
import os
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from jointrd_jax.training import checkpoints  # pylint: disable=g-import-not-at-top
from jointrd_jax.deploy import torch_import  # pylint: disable=g-import-not-at-top
from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
from experiments import convert_torch  # pylint: disable=g-import-not-at-top

# The release's CIFAR networks in PyTorch (the library's transcription, also timed by
# experiments.cpu_step_compare).
from jointrd_jax.benchmarking.torch_nets import TNet  # pylint: disable=g-import-not-at-top
from torch_helpers import our_logits, randomize_bn_, torch_logits  # noqa: E402


def make(kind, sizes=(1, 1, 1, 1), width=4, num_classes=10, seed=0, **kw):
  torch.manual_seed(seed)
  net = TNet(kind, sizes, width, num_classes, **kw)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        randomize_bn_(m)
  return net.eval()


def images(n=3, seed=0):
  return np.random.default_rng(seed).standard_normal((n, 32, 32, 3)).astype(np.float32)


def assert_logits_match(ours, theirs):
  scale = float(np.abs(theirs).max())
  assert scale > 1e-3  # the comparison is not between near-zero vectors
  np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * scale)


def save_release(path, nets: dict, stem_old=False, word="layers"):
  """torch.save({'model_state_dict': {'module.<which>.' + key: tensor}}) of the networks."""
  sd = {}
  for which, net in nets.items():
    for k, v in net.state_dict().items():
      if stem_old:
        k = k.replace("conv1.0.", "conv1.").replace("conv1.1.", "bn1.")
      k = k.replace("layers.", f"{word}.", 1) if k.startswith("layers.") else k
      sd[f"module.{which}.{k}"] = v
  torch.save({"epoch": 3, "model_state_dict": sd}, path)


# ------------------------------------------------------------ logits match


@pytest.mark.parametrize("kind,arch", [("basic", "resnet10"), ("bottleneck", "resnet14")])
def test_torchvision_layout_teacher(tmp_path, kind, arch):
  tnet = make(kind, layout="torchvision")
  path = str(tmp_path / "tv.pth")
  torch.save(tnet.state_dict(), path)
  net, variables, info = torch_import.convert(path, arch=arch, fmt="auto")
  assert info["format"] == "torchvision"
  assert (info["width"], info["num_classes"], info["shortcuts"], info["conv"]) == (
      4, 10, "all", "none")
  x = images()
  assert_logits_match(our_logits(net, variables, x), torch_logits(tnet, x))


@pytest.mark.parametrize("kind,arch,stem_old,word", [
    ("bottleneck", "resnet14", False, "layers"),
    ("basic", "resnet10", True, "stages"),
])
def test_release_layout_teacher(tmp_path, kind, arch, stem_old, word):
  tnet = make(kind, seed=1)
  path = str(tmp_path / "release.pth.tar")
  save_release(path, {"teacher": tnet}, stem_old=stem_old, word=word)
  net, variables, info = torch_import.convert(path, arch=arch, which="teacher")
  assert info["format"] == "release"
  x = images()
  assert_logits_match(our_logits(net, variables, x), torch_logits(tnet, x))


@pytest.mark.parametrize("kind,arch", [("bottleneck", "resnet14"), ("basic", "resnet10")])
def test_release_dirac_student_next_to_teacher(tmp_path, kind, arch):
  teacher = make(kind, seed=2)
  student = make(kind, seed=3, shortcuts="projection", dirac=True)
  path = str(tmp_path / "distiller.pth.tar")
  save_release(path, {"teacher": teacher, "student": student})
  net, variables, info = torch_import.convert(path, arch=arch, which="student")
  assert (info["shortcuts"], info["conv"]) == ("projection", "reparam")
  assert net.conv == "reparam" and net.shortcuts == "projection"
  # alpha/beta are per output channel: our dirac_a/dirac_b of conv2 (bottleneck) / conv1.
  conv = "conv2" if kind == "bottleneck" else "conv1"
  np.testing.assert_array_equal(
      variables["params"]["stage1_block0"][conv]["conv"]["dirac_a"],
      getattr(student.layers[0][0], conv).alpha.detach().numpy())
  # delta buffers and connectors are ignored; so is the release's unused projection of a
  # shortcut-free first block (only the bottleneck's stage 1 changes channels).
  assert all(k.endswith(".delta") or "connector" in k or "downsample" in k
             for k in info["ignored"])
  assert any(k.endswith(".delta") for k in info["ignored"])
  assert any("connector" in k for k in info["ignored"])
  assert any(k.startswith("layers.0.0.downsample.") for k in info["ignored"]) == (
      kind == "bottleneck")
  x = images()
  assert_logits_match(our_logits(net, variables, x), torch_logits(student, x))
  # The teacher of the same file.
  tnet, tvars, tinfo = torch_import.convert(path, arch=arch, which="teacher")
  assert (tinfo["shortcuts"], tinfo["conv"]) == ("all", "none")
  assert_logits_match(our_logits(tnet, tvars, x), torch_logits(teacher, x))


@pytest.mark.parametrize("kind,arch", [("bottleneck", "resnet14"), ("basic", "resnet10")])
def test_train_mode_batch_statistics_match_pytorch(tmp_path, kind, arch):
  """One train-mode forward of a converted release student: the output, and every BN's
  running mean and variance afterwards (PyTorch updates the variance with the UNBIASED
  batch variance, n/(n-1)), equal PyTorch's. Tolerances: float32 sums over n <= 4*32*32
  values per channel, relative error ~ n * 2^-24 in the worst case, far below 1e-4."""
  tnet = make(kind, seed=4, shortcuts="projection", dirac=True)
  path = str(tmp_path / "distiller.pth.tar")
  save_release(path, {"student": tnet})
  net, variables, _ = torch_import.convert(path, arch=arch, which="student")
  x = images(n=4, seed=5)
  tnet.train()
  with torch.no_grad():
    theirs = tnet(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
  ours, new = jax.jit(lambda v, x: net.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, x)
  assert_logits_match(np.asarray(ours[0]), theirs)
  torch_stats = tnet.state_dict()
  layout = torch_import._layout("release", torch_stats)  # pylint: disable=protected-access
  compared = set()
  for kpath, ours_v in jax.tree_util.tree_leaves_with_path(new["batch_stats"]):
    names = ("batch_stats",) + tuple(str(p.key) for p in kpath)
    key = torch_import._torch_key(names, layout)  # pylint: disable=protected-access
    np.testing.assert_allclose(np.asarray(ours_v), torch_stats[key].numpy(), rtol=1e-4,
                               atol=1e-6, err_msg=key)
    compared.add(key)
  # Every running statistic of the PyTorch network was compared, but the release's unused
  # projection of a shortcut-free first block (bottleneck stage 1), which the forward skips.
  left = {k for k in torch_stats if k.endswith(("running_mean", "running_var"))} - compared
  assert compared and all(".downsample." in k for k in left)


# ------------------------------------------------------------ the CLI writes a run


def test_cli_writes_a_loadable_run(tmp_path, capsys):
  tnet = make("bottleneck", seed=4)
  path = str(tmp_path / "release.pth.tar")
  save_release(path, {"teacher": tnet})
  out = str(tmp_path / "run")
  rc = convert_torch.main([f"--checkpoint={path}", f"--out={out}", "--arch=resnet14",
                           "--num_classes=10", "--dataset=cifar10"])
  assert rc == 0, capsys.readouterr().err
  cfg = json.loads(open(os.path.join(out, "config.json")).read())
  assert cfg["method"] == "resnet" and cfg["dataset"] == "cifar10"
  assert cfg["model"] == {"arch": "resnet14", "width": 4, "shortcuts": "all", "conv": "none",
                          "dirac": ""}
  net, variables, meta = checkpoints.load_network(out)
  assert meta["networks"]["student"]["shortcuts"] == "all"
  x = images()
  assert_logits_match(our_logits(net, variables, x), torch_logits(tnet, x))
  # A second conversion into the same run is refused, unless --overwrite.
  args = [f"--checkpoint={path}", f"--out={out}", "--arch=resnet14", "--dataset=cifar10"]
  assert convert_torch.main(args) == 2
  assert "not empty" in capsys.readouterr().err
  assert convert_torch.main(args + ["--overwrite"]) == 0
  assert checkpoints.load_network(out)[0] == net
  # 10 classes do not fit CIFAR-100 (the default dataset).
  assert convert_torch.main(args[:3] + [f"--out={tmp_path / 'run2'}"]) == 2
  assert "10 classes" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "run2")


# ------------------------------------------------------------ errors


@pytest.fixture(scope="module")
def tv_state():
  return make("basic", layout="torchvision", seed=5).state_dict()


def _convert(tmp_path, sd, **kw):
  path = str(tmp_path / "x.pth")
  torch.save(sd, path)
  return torch_import.convert(path, **dict(dict(arch="resnet10"), **kw))


def test_imagenet_stem_is_refused(tmp_path, tv_state):
  """A 7x7 stem is an ImageNet ResNet: the error names the ImageNet arch that fits."""
  sd = dict(tv_state)
  sd["conv1.weight"] = torch.zeros(4, 3, 7, 7)
  with pytest.raises(UserError, match=r"holds an ImageNet ResNet-10 \(7x7 stem, basic blocks "
                     r"1-1-1-1\), but --arch=resnet10 is a CIFAR ResNet-10 .*; pass "
                     r"--arch=imagenet_resnet10\.$"):
    _convert(tmp_path, sd)
  sd["conv1.weight"] = torch.zeros(4, 3, 5, 5)
  with pytest.raises(UserError, match=r"conv1\.weight .* shape \(4, 3, 5, 5\).*expected "
                     r"\(width, 3, 3, 3\) for a CIFAR ResNet or \(width, 3, 7, 7\)"):
    _convert(tmp_path, sd)


def test_missing_key_is_named(tmp_path, tv_state):
  sd = {k: v for k, v in tv_state.items() if k != "layer2.0.bn1.running_var"}
  with pytest.raises(UserError, match=r"lacks 1 tensor.*layer2\.0\.bn1\.running_var"):
    _convert(tmp_path, sd)


def test_unexpected_key_is_named(tmp_path, tv_state):
  sd = dict(tv_state)
  sd["layer3.0.extra.weight"] = torch.zeros(3)
  with pytest.raises(UserError, match=r"does not use: layer3\.0\.extra\.weight"):
    _convert(tmp_path, sd)


def test_shape_mismatch_is_named(tmp_path, tv_state):
  with pytest.raises(UserError, match=r"fc\.weight \(10, 32\) \(expected \(7, 32\)\)"):
    _convert(tmp_path, dict(tv_state), num_classes=7)


def test_wrong_arch_is_refused(tmp_path, tv_state):
  """The file's structure (block kind, blocks per stage) is told before any tensor."""
  with pytest.raises(UserError, match=r"holds a CIFAR ResNet-10 \(3x3 stem, basic blocks "
                     r"1-1-1-1\), but --arch=resnet14 is a CIFAR ResNet-14 \(3x3 stem, "
                     r"bottleneck blocks 1-1-1-1\); pass --arch=resnet10\."):
    _convert(tmp_path, dict(tv_state), arch="resnet14")
  with pytest.raises(UserError, match=r"ResNet-10 .* but --arch=resnet18 is a CIFAR ResNet-18 "
                     r"\(3x3 stem, basic blocks 2-2-2-2\); pass --arch=resnet10\."):
    _convert(tmp_path, dict(tv_state), arch="resnet18")


def test_missing_network_of_release_file(tmp_path):
  path = str(tmp_path / "r.pth")
  save_release(path, {"teacher": make("basic")})
  with pytest.raises(UserError, match="no student network"):
    torch_import.convert(path, arch="resnet10", which="student")


class _Evil:
  def __init__(self, target):
    self.target = target

  def __reduce__(self):
    import builtins  # pylint: disable=g-import-not-at-top
    return (builtins.open, (self.target, "w"))


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_code_executing_pickle_is_refused(tmp_path, container):
  target = tmp_path / "pwned"
  path = str(tmp_path / "evil.pth")
  payload = {"model_state_dict": {"conv1.weight": _Evil(str(target))}}
  if container == "torch.save":
    torch.save(payload, path)
  else:
    import pickle  # pylint: disable=g-import-not-at-top
    with open(path, "wb") as f:
      pickle.dump(payload, f)
  assert not target.exists()
  with pytest.raises(UserError) as e:
    torch_import.convert(path, arch="resnet10")
  assert not target.exists()
  assert "\n" not in str(e.value)
  if container == "torch.save":
    assert "refused" in str(e.value) and "run code" in str(e.value)


def test_not_a_checkpoint(tmp_path):
  path = tmp_path / "junk.pth"
  path.write_bytes(b"not a checkpoint at all")
  with pytest.raises(UserError, match="cannot be read by torch.load"):
    torch_import.convert(str(path), arch="resnet10")
  with pytest.raises(UserError, match="no such file"):
    torch_import.convert(str(tmp_path / "absent.pth"), arch="resnet10")


def test_without_torch_the_error_names_the_install(tmp_path, monkeypatch):
  path = tmp_path / "x.pth"
  path.write_bytes(b"x")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(UserError, match="pip install torch"):
    torch_import.convert(str(path), arch="resnet10")
