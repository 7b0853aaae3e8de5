"""The zoo's networks against the reference PyTorch modules (tests/zoo_torch_nets.py,
transcriptions of RepDistiller's models) through the library's key mapping
(`deploy/zoo_import.py`): a reference-format checkpoint file with random weights and BN
statistics, converted into a run, loaded as the trainer loads a teacher (folded), scores
the reference module's logits on the same images; the mapping of the other spellings of a
file (bare, `module.`, a distiller's network); the CLI once as a subprocess."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zoo_torch_nets  # pylint: disable=g-import-not-at-top
from experiments import convert_torch  # pylint: disable=g-import-not-at-top
from jointrd_jax import methods, models, sharding  # pylint: disable=g-import-not-at-top
from jointrd_jax.deploy import torch_import, zoo_import  # pylint: disable=g-import-not-at-top
from jointrd_jax.training import checkpoints, teachers  # pylint: disable=g-import-not-at-top
from torch_helpers import our_logits, torch_logits  # pylint: disable=g-import-not-at-top

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# arch: (the reference module, layers L on the longest path, the longest dot product K)
REFERENCES = {
    "resnet8": (lambda: zoo_torch_nets.CifarResNet(8, (16, 16, 32, 64)), 8, 9 * 64),
    "resnet8x4": (lambda: zoo_torch_nets.CifarResNet(8, (32, 64, 128, 256)), 8, 9 * 256),
    "resnet20": (lambda: zoo_torch_nets.CifarResNet(20, (16, 16, 32, 64)), 20, 9 * 64),
    "wrn_16_2": (lambda: zoo_torch_nets.WideResNet(16, 2), 16, 9 * 128),
    "vgg8": (lambda: zoo_torch_nets.VGG([[64], [128], [256], [512], [512]]), 8, 9 * 512),
    "mobilenetv2": (zoo_torch_nets.MobileNetV2, 54, 1280),
    "shufflenetv1": (zoo_torch_nets.ShuffleV1, 50, 960),
    "shufflenetv2": (zoo_torch_nets.ShuffleV2, 57, 1024),
    # resnetv2.py's ResNet (ResNet18/50) at one block per stage: our resnet10 / resnet14.
    "resnet10": (lambda: zoo_torch_nets.ResNetV2(zoo_torch_nets.V2Basic, (1, 1, 1, 1)), 10,
                 9 * 512),
    "resnet14": (lambda: zoo_torch_nets.ResNetV2(zoo_torch_nets.V2Bottleneck, (1, 1, 1, 1)),
                 14, 9 * 512),
}


def reference(arch, seed=0):
  torch.manual_seed(seed)
  return zoo_torch_nets.randomise_bn(REFERENCES[arch][0](), seed).eval()


def save_reference(path, net, **extra) -> str:
  """The toolkits' training checkpoint: `{'epoch', 'model': state_dict, ...}`."""
  torch.save({"epoch": 240, "model": net.state_dict(), "accuracy": 71.5,
              "optimizer": {"state": {}, "param_groups": [{"lr": 0.05}]}, **extra}, path)
  return str(path)


def images(n=2, seed=0):
  return np.random.RandomState(seed).randn(n, 32, 32, 3).astype(np.float32)


def tolerance(arch, scale):
  """float32 both, sums in another order, and the fold's rounding of every weight (one more
  rounding per product): 4 sqrt(2 L K) u of the largest logit (as tests/test_models.py's
  `_f32_tolerance`), L and K from `REFERENCES`."""
  _, depth, k = REFERENCES[arch]
  return 4 * np.sqrt(2 * depth * k) * 2.0 ** -24 * scale


@pytest.mark.parametrize("arch,source", [
    ("resnet8x4", "repdistiller"), ("resnet20", "mdistiller"), ("wrn_16_2", "repdistiller"),
    ("vgg8", "mdistiller"), ("mobilenetv2", "repdistiller"), ("shufflenetv1", "mdistiller"),
    ("shufflenetv2", "repdistiller"), ("resnet10", "repdistiller"), ("resnet14", "mdistiller")])
def test_imported_teacher_scores_the_reference_logits(tmp_path, arch, source):
  """Our network on the converted weights (the forward-equality test), and the run's teacher
  as the trainer loads it (folded), both score the reference module's logits."""
  ref = reference(arch)
  path = save_reference(tmp_path / "ckpt_epoch_240.pth", ref)
  net, variables, info = zoo_import.convert(path, arch=arch, source=source)
  assert (info["arch"], info["num_classes"], info["format"]) == (arch, 100, source)
  assert info["num_tensors"] == len([k for k in ref.state_dict()
                                     if not k.endswith("num_batches_tracked")])
  run = str(tmp_path / "run")
  torch_import.write_run(run, net, variables, info,
                         config_dict=convert_torch.config_dict("cifar100", 100))
  method = methods.build("kd_logits", arch="resnet8", num_classes=100, teacher_arch=arch,
                         teacher_width=64)
  method, teacher_vars = teachers.load_teacher(method, run, sharding.make_mesh())
  assert method.teacher.folded
  x = images()
  want = torch_logits(ref, x)
  scale = float(np.abs(want).max())
  assert scale > 1e-2
  for got in (our_logits(net, variables, x), our_logits(method.teacher, teacher_vars, x)):
    np.testing.assert_allclose(got, want, rtol=0, atol=tolerance(arch, scale))


def test_every_spelling_of_a_file_maps_alike(tmp_path):
  """A bare state_dict, `module.` keys (DataParallel), an mdistiller distiller's
  `module.student.*` / `module.teacher.*`: the variables of the `{'model': sd}` file."""
  teacher, student = reference("resnet8", 1), reference("resnet8", 2)
  sd, other = teacher.state_dict(), student.state_dict()
  want = zoo_import.convert(save_reference(tmp_path / "a.pth", teacher), arch="resnet8",
                            source="repdistiller")[1]
  files = {"bare": sd, "module": {f"module.{k}": v for k, v in sd.items()},
           "distiller": {"model": {**{f"module.teacher.{k}": v for k, v in sd.items()},
                                   **{f"module.student.{k}": v for k, v in other.items()}}}}
  for name, obj in files.items():
    torch.save(obj, tmp_path / name)
    got = zoo_import.convert(str(tmp_path / name), arch="resnet8", source="mdistiller")[1]
    jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
  got = zoo_import.convert(str(tmp_path / "distiller"), arch="resnet8", source="mdistiller",
                           which="student")[1]
  np.testing.assert_array_equal(got["params"]["head"]["kernel"], other["fc.weight"].numpy().T)


def test_reference_keys_are_the_reference_modules():
  """Every zoo family's mapping yields exactly the reference module's keys and shapes."""
  for arch in REFERENCES:
    if arch in models.ARCHS:  # resnetv2.py's: torch_import's mapping
      continue
    sd = REFERENCES[arch][0]().state_dict()
    want = {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    got = {k: shape for k, (shape, _) in zoo_import.expected(models.build(arch)).items()}
    assert got == want, arch


def test_cli_writes_a_run_the_tools_accept(tmp_path):
  """`python -m experiments.convert_torch --from=...` as a user runs it: the run records
  the zoo arch (reference width, shortcuts all, plain convs) and CIFAR-100, and its network
  scores the reference's logits."""
  ref = reference("resnet8", 3)
  path = save_reference(tmp_path / "ckpt.pth", ref)
  out = str(tmp_path / "run")
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + sys.path))
  proc = subprocess.run([sys.executable, "-m", "experiments.convert_torch", "--from=mdistiller",
                         "--arch=resnet8", f"--checkpoint={path}", f"--out={out}"],
                        cwd=REPO, env=env, capture_output=True, text=True, check=False)
  assert proc.returncode == 0, proc.stderr
  assert "converted mdistiller resnet8 (width 64, 100 classes" in proc.stdout
  cfg = json.loads(open(os.path.join(out, "config.json")).read())
  assert cfg["dataset"] == "cifar100"
  assert {k: cfg["model"][k] for k in ("arch", "width", "shortcuts", "conv")} == {
      "arch": "resnet8", "width": 64, "shortcuts": "all", "conv": "none"}
  net, variables, meta = checkpoints.load_network(out)
  assert meta["networks"]["student"]["zoo_arch"] == "resnet8"
  x = images(seed=1)
  want = torch_logits(ref, x)
  np.testing.assert_allclose(our_logits(net, variables, x), want, rtol=0,
                             atol=4 * np.sqrt(8 * 9 * 64) * 2.0 ** -24 * np.abs(want).max())
