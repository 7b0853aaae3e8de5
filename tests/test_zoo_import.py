"""Bad input to `experiments.convert_torch --from=mdistiller|repdistiller` (the zoo's
teacher import, `deploy/zoo_import.py`): one line `error: ...` that names the fix, exit
status 2, nothing written; checked in one process through `convert_torch.main`."""
import os
import sys

import pytest

torch = pytest.importorskip("torch")

import zoo_torch_nets  # pylint: disable=g-import-not-at-top
from experiments import convert_torch  # pylint: disable=g-import-not-at-top


def _save(path, obj) -> str:
  torch.save(obj, path)
  return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
  """Reference-format files (`{'model': state_dict, 'epoch'}`), good and spoiled."""
  d = tmp_path_factory.mktemp("zoo_files")
  torch.manual_seed(0)
  sd = zoo_torch_nets.CifarResNet(8, (16, 16, 32, 64)).state_dict()
  spoiled = dict(sd, **{"layer1.0.conv1.weight": torch.zeros(16, 16, 1, 1),
                        "layer2.0.conv1.weight": torch.zeros(32, 16, 1, 1)})
  missing = {k: v for k, v in sd.items() if k != "layer3.0.bn2.running_var"}
  wrn = zoo_torch_nets.WideResNet(16, 2).state_dict()
  v2 = zoo_torch_nets.ResNetV2(zoo_torch_nets.V2Basic, (1, 1, 1, 1)).state_dict()
  (d / "junk.pth").write_bytes(b"not a checkpoint at all")
  return {
      "resnet8": _save(d / "resnet8.pth", {"model": sd, "epoch": 240}),
      "resnet20": _save(d / "resnet20.pth", {"model": zoo_torch_nets.CifarResNet(
          20, (16, 16, 32, 64)).state_dict(), "epoch": 240}),
      "wrn": _save(d / "wrn.pth", {"model": wrn}),
      "wrn_headless": _save(d / "wrn_headless.pth", {"model": {
          k: v for k, v in wrn.items() if not k.startswith("fc.")}}),
      "ten": _save(d / "ten.pth", {"model": zoo_torch_nets.CifarResNet(
          8, (16, 16, 32, 64), num_classes=10).state_dict()}),
      "shape": _save(d / "shape.pth", {"model": spoiled}),
      "missing": _save(d / "missing.pth", {"model": missing}),
      "unused": _save(d / "unused.pth", {"model": dict(sd, **{"fc2.weight": sd["fc.weight"]})}),
      "teacher_only": _save(d / "distiller.pth", {"model": {
          f"module.teacher.{k}": v for k, v in sd.items()}}),
      "no_tensors": _save(d / "epoch.pth", {"epoch": 3}),
      "resnetv2": _save(d / "resnetv2.pth", {"model": v2}),
      "resnetv2_missing": _save(d / "resnetv2_missing.pth", {"model": {
          k: v for k, v in v2.items() if k != "layer2.0.shortcut.1.running_var"}}),
      "junk": str(d / "junk.pth"),
  }


# (arguments beyond --checkpoint/--out, the file, what the one error line says)
CASES = [
    (["--from=repdistiller", "--arch=resnet9"], "resnet8",
     "--arch: unknown arch 'resnet9'; choose one of resnet8"),
    (["--arch=vgg8"], "resnet8", "--arch=vgg8 is a zoo arch: pass --from=mdistiller or"),
    (["--from=repdistiller", "--arch=imagenet_resnet18"], "resnet8",
     "--arch=imagenet_resnet18 is an ImageNet ResNet and --from reads the CIFAR archs' files: "
     "drop --from"),
    (["--from=repdistiller", "--arch=vgg8"], "resnetv2",
     "looks like a CIFAR ResNet18/34/50 (resnetv2.py) checkpoint, but --arch=vgg8 is a VGG "
     "(vgg.py); pass --arch=resnet18, resnet34 or resnet50 (its depth)."),
    (["--from=repdistiller", "--arch=resnet18"], "resnetv2",
     "holds a CIFAR ResNet-10 (3x3 stem, basic blocks 1-1-1-1), but --arch=resnet18 is"),
    (["--from=mdistiller", "--arch=resnet10"], "resnetv2_missing",  # in the file's spelling
     "lacks 1 tensor(s) of a resnet10 width 64, 100 classes, shortcuts 'all', conv 'none': "
     "layer2.0.shortcut.1.running_var;"),
    (["--from=mdistiller", "--arch=resnet50"], "resnet8",
     "looks like a CIFAR ResNet (resnet.py) checkpoint, but --arch=resnet50 is a CIFAR "
     "ResNet18/34/50 (resnetv2.py); pass --arch=resnet8."),
    (["--from=mdistiller", "--arch=resnet8", "--which=student"], "resnet8",
     "holds one network, not a distiller's teacher and student, so --which=student would "
     "change nothing; drop it."),
    (["--arch=resnet18"], "resnetv2",  # a toolkit's file without --from: the hint
     "looks like a RepDistiller / mdistiller CIFAR ResNet18/34/50 (resnetv2.py) checkpoint: "
     "pass --from=repdistiller or --from=mdistiller)"),
    (["--from=torchdistill", "--arch=resnet8"], "resnet8",
     "--from: unknown source 'torchdistill'; choose one of mdistiller, repdistiller"),
    (["--from=mdistiller", "--arch=resnet8", "--format=release"], "resnet8",
     "--format=release is for a ResNet file"),
    (["--from=mdistiller", "--arch=resnet8", "--width=32"], "resnet8", "drop --width"),
    (["--from=mdistiller", "--arch=resnet8", "--shortcuts=none"], "resnet8",
     "drop --shortcuts"),
    (["--from=mdistiller", "--arch=resnet32x4"], "wrn",
     "looks like a wide ResNet (wrn.py) checkpoint, but --arch=resnet32x4 is a CIFAR ResNet "
     "(resnet.py); pass --arch=wrn_16_2."),
    (["--from=mdistiller", "--arch=resnet32x4"], "wrn_headless",
     "looks like a wide ResNet (wrn.py) checkpoint, but --arch=resnet32x4 is a CIFAR ResNet "
     "(resnet.py); no zoo arch has exactly its tensors."),
    (["--from=mdistiller", "--arch=wrn_16_2"], "wrn_headless",
     "it lacks 2 tensor(s) of wrn_16_2, first fc.bias, fc.weight."),
    (["--from=mdistiller", "--arch=resnet8"], "resnet20",
     "does not fit --arch=resnet8: it holds resnet20; pass --arch=resnet20."),
    (["--from=mdistiller", "--arch=resnet8"], "shape",
     "its first mismatched tensor is layer1.0.conv1.weight: shape (16, 16, 1, 1) in the file, "
     "(16, 16, 3, 3) in resnet8."),
    (["--from=repdistiller", "--arch=resnet8"], "missing",
     "it lacks 1 tensor(s) of resnet8, first layer3.0.bn2.running_var."),
    (["--from=repdistiller", "--arch=resnet8"], "unused",
     "it has 1 tensor(s) that resnet8 does not use, first fc2.weight."),
    (["--from=repdistiller", "--arch=resnet8"], "ten",
     "the checkpoint's head has 10 classes but --dataset=cifar100 has 100"),
    (["--from=mdistiller", "--arch=resnet8", "--which=student"], "teacher_only",
     "holds a distiller without a student network (it has teacher); pass --which=teacher."),
    (["--from=mdistiller", "--arch=resnet8"], "no_tensors", "holds no tensors"),
    (["--from=mdistiller", "--arch=resnet8"], "junk", "cannot be read by torch.load"),
]


def test_bad_input_is_one_line_and_writes_nothing(files, tmp_path, capsys, monkeypatch):
  for i, (args, name, message) in enumerate(CASES + [
      (["--from=mdistiller", "--arch=resnet8"], "resnet8", "pip install torch")]):
    if message == "pip install torch":  # the last case: PyTorch missing
      monkeypatch.setitem(sys.modules, "torch", None)
    out = tmp_path / f"run{i}"
    rc = convert_torch.main([f"--checkpoint={files[name]}", f"--out={out}", *args])
    err = capsys.readouterr().err
    assert rc == 2, (args, name)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, (message, err)
    assert not os.path.exists(out), args
