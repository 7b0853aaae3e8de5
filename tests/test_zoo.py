"""The CIFAR-100 distillation zoo (jointrd_jax/models/zoo/): parameter counts equal to the
reference modules', counted here from their definitions; plain forms; stages, descriptions,
fold; JointRD's pairs."""
import functools

import flax
import jax
import numpy as np
import pytest

import run_helpers
from jointrd_jax import methods, models
from jointrd_jax.training import checkpoints, train
from jointrd_jax.deploy import card
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold
from jointrd_jax.models.zoo.wrn import PreActWRN
from model_helpers import randomise

# ------------------------------------------------ The reference modules' parameter counts
# PyTorch `sum(p.numel() for p in net.parameters())` of the RepDistiller modules (the same
# in mdistiller's mdistiller/models/cifar/), num_classes=100: a Conv2d has i*o*k*k weights
# (+ o with bias), a BatchNorm2d 2c (weight, bias), a Linear i*o + o.


def conv(i, o, k, bias=False):
  return i * o * k * k + (o if bias else 0)


def bn(c):
  return 2 * c


def linear(i, o=100):
  return i * o + o


def ref_resnet(depth, f, projections=True):
  """RepDistiller models/resnet.py `ResNet(depth, f, 'basicblock')`: conv1 + bn1; three
  `_make_layer`s of n = (depth - 2) / 6 `BasicBlock`s (conv3x3 + bn, twice), a `downsample`
  (conv1x1 + bn) where stride != 1 or inplanes != planes; fc. `projections=False`: without
  the downsamples (the plain `none` form)."""
  n, inplanes = (depth - 2) // 6, f[0]
  total = conv(3, f[0], 3) + bn(f[0])
  for i, planes in enumerate(f[1:]):
    if projections and (i > 0 or inplanes != planes):
      total += conv(inplanes, planes, 1) + bn(planes)
    for b in range(n):
      total += conv(inplanes if b == 0 else planes, planes, 3) + conv(planes, planes, 3)
      total += 2 * bn(planes)
    inplanes = planes
  return total + linear(f[3])


def wrn_shortcuts(depth, k):
  """The `convShortcut`s (conv1x1, no bn) of RepDistiller models/wrn.py `WideResNet`."""
  ch = (16, 16 * k, 32 * k, 64 * k)
  return sum(conv(ch[i], ch[i + 1], 1) for i in range(3) if ch[i] != ch[i + 1])


def ref_wrn(depth, k):
  """RepDistiller models/wrn.py `WideResNet(depth, 100, k)`: conv1; three `NetworkBlock`s
  of n = (depth - 4) / 6 `BasicBlock`s (bn1, conv3x3, bn2, conv3x3, a conv1x1
  `convShortcut` where in_planes != out_planes); bn1; fc."""
  n, ch = (depth - 4) // 6, (16, 16 * k, 32 * k, 64 * k)
  total = conv(3, 16, 3)
  for i in range(3):
    for b in range(n):
      cin = ch[i] if b == 0 else ch[i + 1]
      total += bn(cin) + conv(cin, ch[i + 1], 3) + bn(ch[i + 1]) + conv(ch[i + 1], ch[i + 1], 3)
  return total + wrn_shortcuts(depth, k) + bn(ch[3]) + linear(ch[3])


VGG_CFG = {  # RepDistiller models/vgg.py `cfg`
    "vgg8": "S", "vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
VGG_CONVS = {
    "S": [[64], [128], [256], [512], [512]],
    "A": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "B": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "D": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "E": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


def ref_vgg(cfg):
  """RepDistiller models/vgg.py `VGG(cfg, batch_norm=True)`: per conv, Conv2d(k=3, bias) +
  BatchNorm2d; classifier Linear(512)."""
  total, cin = 0, 3
  for v in (v for stage in VGG_CONVS[cfg] for v in stage):
    total += conv(cin, v, 3, bias=True) + bn(v)
    cin = v
  return total + linear(512)


def ref_mobile_half():
  """RepDistiller models/mobilenetv2.py `mobile_half` = `MobileNetV2(T=6, width_mult=0.5)`:
  conv_bn(3, 16); per `InvertedResidual(inp, oup, s, t)` pw conv1x1 + bn, dw conv3x3 with
  groups = inp * t (9 weights per channel) + bn, pw-linear conv1x1 + bn; conv_1x1_bn(160,
  1280); Linear(1280)."""
  setting = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
             (6, 320, 1)]
  cin = int(32 * 0.5)
  total = conv(3, cin, 3) + bn(cin)
  for t, c, n in setting:
    for _ in range(n):
      h, out = cin * t, int(c * 0.5)
      total += conv(cin, h, 1) + bn(h) + 9 * h + bn(h) + conv(h, out, 1) + bn(out)
      cin = out
  return total + conv(cin, 1280, 1) + bn(1280) + linear(1280)


def ref_shufflev1():
  """RepDistiller models/ShuffleNetv1.py `ShuffleV1`: conv1 (1x1, 3 -> 24) + bn1; per
  `Bottleneck(in, out, stride, groups=3)`: conv1 1x1 with g groups (g = 1 on 24 inputs), mid
  = out / 4, + bn1, depthwise conv2 3x3 + bn2, conv3 1x1 with 3 groups + bn3; a layer's first
  block makes out_planes - in_planes; Linear(960). A grouped conv has 1/g of the weights."""
  total, inp = conv(3, 24, 1) + bn(24), 24
  for planes, n in zip((240, 480, 960), (4, 8, 4)):
    for i in range(n):
      out = planes - (inp if i == 0 else 0)
      mid, g = out // 4, (1 if inp == 24 else 3)
      total += conv(inp, mid, 1) // g + bn(mid) + 9 * mid + bn(mid) + conv(mid, out, 1) // 3
      total += bn(out)
      inp = planes
  return total + linear(960)


def ref_shufflev2():
  """RepDistiller models/ShuffleNetv2.py `ShuffleV2` (net_size 1): conv1 (1x1, 3 -> 24) +
  bn1; per layer a `DownBlock(in, out)` (depthwise 3x3 on in + bn, 1x1 in -> out/2 + bn;
  1x1 in -> out/2 + bn, depthwise 3x3 + bn, 1x1 + bn) and n `BasicBlock(out)` (on out/2
  channels: 1x1 + bn, depthwise 3x3 + bn, 1x1 + bn); conv2 1x1 464 -> 1024 + bn2;
  Linear(1024)."""
  total, inp = conv(3, 24, 1) + bn(24), 24
  for out, n in zip((116, 232, 464), (3, 7, 3)):
    mid = out // 2
    total += 9 * inp + bn(inp) + 2 * (conv(inp, mid, 1) + bn(mid))
    total += 9 * mid + bn(mid) + conv(mid, mid, 1) + bn(mid)
    total += n * (2 * (conv(mid, mid, 1) + bn(mid)) + 9 * mid + bn(mid))
    inp = out
  return total + conv(464, 1024, 1) + bn(1024) + linear(1024)


RESNETS = {"resnet8": (8, (16, 16, 32, 64)), "resnet14_cifar": (14, (16, 16, 32, 64)),
           "resnet20": (20, (16, 16, 32, 64)), "resnet32": (32, (16, 16, 32, 64)),
           "resnet44": (44, (16, 16, 32, 64)), "resnet56": (56, (16, 16, 32, 64)),
           "resnet110": (110, (16, 16, 32, 64)), "resnet8x4": (8, (32, 64, 128, 256)),
           "resnet32x4": (32, (32, 64, 128, 256))}
WRNS = {"wrn_16_2": (16, 2), "wrn_40_1": (40, 1), "wrn_40_2": (40, 2)}
REFERENCE = {**{a: ref_resnet(*spec) for a, spec in RESNETS.items()},
             **{a: ref_wrn(*spec) for a, spec in WRNS.items()},
             **{a: ref_vgg(cfg) for a, cfg in VGG_CFG.items()},
             "mobilenetv2": ref_mobile_half(), "shufflenetv1": ref_shufflev1(),
             "shufflenetv2": ref_shufflev2()}


def _count(net):
  """The parameter count of `net` from the shapes of its init (no real init)."""
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  return models.num_params(shapes["params"])


def test_the_zoo_is_the_reference_list():
  assert set(models.zoo.ZOO) == set(REFERENCE)


@pytest.mark.parametrize("arch", sorted(REFERENCE))
def test_parameter_count_equals_the_reference_module(arch):
  assert _count(models.build(arch)) == REFERENCE[arch]


def test_reference_counts_spot_checks():
  """The arithmetic above against numbers worked by hand: resnet8 = stem 432 + 32,
  stage 1 4608 + 64, stage 2 13824 + 128 + 512 + 64, stage 3 55296 + 256 + 2048 + 128,
  fc 6500."""
  assert REFERENCE["resnet8"] == 432 + 32 + 4608 + 64 + 13824 + 128 + 576 + 55296 + 256 \
      + 2176 + 6500 == 83_892
  # vgg8: 5 convs with bias + BN, fc 51300.
  assert REFERENCE["vgg8"] == (1728 + 64 + 128) + (73728 + 128 + 256) + (294912 + 256 + 512) \
      + (1179648 + 512 + 1024) + (2359296 + 512 + 1024) + 51300


@pytest.mark.parametrize("arch", ["resnet32x4", "resnet8x4", "resnet20"])
def test_plain_resnet_counts(arch):
  """`projection` keeps every projection (the x4 archs' first block has one too): the
  reference's count; `none` drops them."""
  assert _count(models.build(arch, "projection")) == REFERENCE[arch]
  assert _count(models.build(arch, "none")) == ref_resnet(*RESNETS[arch], projections=False)


@pytest.mark.parametrize("arch", sorted(WRNS))
def test_plain_wrn_is_the_reference_less_its_shortcuts(arch):
  """The pre-activation chain without shortcuts has the reference's BNs (moved after each
  conv), so plain = reference - the 1x1 shortcut convs."""
  assert _count(models.build(arch, "none")) == REFERENCE[arch] - wrn_shortcuts(*WRNS[arch])
  assert _count(models.build(arch, "none", conv="reparam")) > REFERENCE[arch] - \
      wrn_shortcuts(*WRNS[arch])


# ------------------------------------------------------- Stages, descriptions, fold

SMALL = [("resnet8x4", "none", "repvgg"), ("wrn_16_2", "all", "none"),
         ("wrn_16_2", "projection", "reparam"), ("vgg8", "none", "reparam")]
# Their fold and later stages pass too (each ~30 s of CPU here, compiling): kept out of the
# suite, whose time they would double.
MOBILE = [("mobilenetv2", "all", "none"), ("shufflenetv1", "all", "none"),
          ("shufflenetv2", "all", "none")]


def _small(arch, shortcuts, conv):
  """A quarter-width copy (width 16 of 64; the ShuffleNets have their reference width only)
  with random BN statistics."""
  net = models.build(arch, shortcuts, conv=conv, width=_width(arch), num_classes=10)
  variables = jax.jit(lambda key: models.init(net, key))(jax.random.key(0))
  return net, randomise(variables, jax.random.key(1))


def _width(arch):
  return 64 if arch.startswith("shufflenet") else 16


@pytest.mark.parametrize("arch,shortcuts,conv", SMALL + MOBILE)
def test_described_network_is_rebuilt(arch, shortcuts, conv):
  net = models.build(arch, shortcuts, conv=conv, width=_width(arch), num_classes=10)
  assert models.from_description(models.describe(net)) == net
  assert models.describe(net)["zoo_arch"] == arch


@pytest.mark.parametrize("arch,shortcuts,conv", SMALL)
def test_later_stages_and_fold_give_the_same_logits(arch, shortcuts, conv):
  """Stages 2.. on stage 1's output (JointRD's hybrid path 1) give the network's logits (the
  same ops: to a few roundings); so does the folded network. The fold's tolerance as
  tests/test_models.py's `_f32_tolerance`: 4 sqrt(L K) u of the largest logit, L <= 60
  layers, K <= 1024 terms per dot product."""
  net, variables = _small(arch, shortcuts, conv)
  folded_net, folded = fold.fold(net, variables)
  x = jax.random.normal(jax.random.key(2), (4, 32, 32, 3))
  logits, feats = jax.jit(net.apply)(variables, x)
  assert [f.shape[-1] for f in feats] == list(net.stage_channels())
  later, _ = jax.jit(functools.partial(net.apply, start_stage=1))(variables, feats[0])
  folded_logits = jax.jit(folded_net.apply)(folded, x)[0]
  scale = float(abs(logits).max())
  assert scale > 1e-2
  np.testing.assert_allclose(later, logits, rtol=0, atol=1e-6 * scale)
  np.testing.assert_allclose(folded_logits, logits, rtol=0,
                             atol=4 * np.sqrt(60 * 1024) * 2.0 ** -24 * scale)
  assert "batch_stats" not in folded
  # Every BN folded (the pre-activation WRN's BNs before a ReLU become affines, the rest go).
  left = {k[-2] for k in flax.traverse_util.flatten_dict(folded["params"])}
  gone = ("_bn2",) if isinstance(net, PreActWRN) else ("bn", "bn_1x1", "bn_identity")
  assert left and not [m for m in left if m.endswith(gone)]


# -------------------------------------------------------------- Methods and choices

def test_jointrd_takes_a_pair_of_equal_stages():
  method = methods.build("jointrd", arch="wrn_40_2", teacher_arch="wrn_40_2", num_classes=10,
                         width=16, shortcuts="none", conv="reparam")
  assert method.teacher.stage_channels() == method.student.stage_channels() == (8, 16, 32)
  student, teacher = models.init(method.student, jax.random.key(0)), \
      models.init(method.teacher, jax.random.key(1))
  _, feats = method.student.apply(student, np.zeros((2, 32, 32, 3), np.float32))
  paths = methods.method.hybrid_logits(method.teacher, teacher, feats)
  assert len(paths) == 2 and all(z.shape == (2, 10) for z in paths)


@pytest.mark.parametrize("student,teacher", [("resnet8", "resnet8x4"), ("vgg8", "resnet20"),
                                             ("resnet20", "resnet18")])
def test_jointrd_refuses_unequal_stages_and_kd_takes_them(student, teacher):
  with pytest.raises(UserError, match="same shapes"):
    methods.build("jointrd", arch=student, teacher_arch=teacher, num_classes=10, width=16)
  kd = methods.build("kd_logits", arch=student, teacher_arch=teacher, num_classes=10,
                     width=16)
  assert kd.teacher.num_classes == kd.student.num_classes == 10


@pytest.mark.parametrize("kwargs,message", [
    (dict(arch="resnet9"), "unknown arch 'resnet9'"),
    (dict(arch="wrn_40_2", conv="reparam"), "pre-activation reference"),
    (dict(arch="resnet8", width=10), "width 10 scales"),
    (dict(arch="mobilenetv2", shortcuts="none"), "its own shortcuts and plain convs only"),
    (dict(arch="shufflenetv2", width=16), "reference width only"),
])
def test_build_refuses_bad_choices_in_one_line(kwargs, message):
  with pytest.raises(UserError, match=message) as e:
    models.build(**kwargs)
  assert "\n" not in str(e.value)


@pytest.mark.slow
def test_kd_smoke_run_with_a_zoo_teacher_and_student(tmp_path):
  """The trainer takes zoo archs: a resnet20 teacher trained first, then a plain resnet8
  (kd_logits' `projection` student) distilled from it (folded, as by default); both stored
  with their descriptions and rebuilt from them."""
  config = run_helpers.preset_config(
      "kd_logits", arg="smoke", **{"model.arch": "resnet8", "teacher.arch": "resnet20",
                                   "num_epochs": 1, "synthetic.train_size": 128,
                                   "synthetic.test_size": 64, "eval_batch_size": 64})
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert summary["epochs_done"] == 1
  student, _, _ = checkpoints.load_network(str(tmp_path))
  teacher, variables, _ = checkpoints.load_network(str(tmp_path / "teacher"))
  assert (student.zoo_arch, student.shortcuts, student.width) == ("resnet8", "projection", 16)
  assert (teacher.zoo_arch, teacher.shortcuts) == ("resnet20", "all")
  assert models.num_params(variables["params"]) == _count(teacher)


def test_model_card_names_the_zoo_arch():
  net = models.build("vgg8", width=16, num_classes=10)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  report = {"architecture": dict(models.describe(net), num_params_folded=1)}
  text = card._architecture(  # pylint: disable=protected-access
      report, {"model": {"arch": "vgg8"}}, net, shapes)
  line = text.splitlines()[2]
  assert line.startswith("- `vgg8` (width 16): the distillation zoo's `vgg8`, shortcuts `none`")
  assert "None" not in line


@pytest.mark.parametrize("arch, which, words", [
    ("mobilenetv2", "teacher", "mobilenetv2 teacher"),
    ("resnet8", "student", "resnet8"),  # no run identity: trained without a teacher
    ("vgg8", "student", "plain CNN (no shortcuts)"),  # VGG: the plain CNN it is
])
def test_exported_zoo_network_is_named_by_its_arch(arch, which, words):
  """A zoo network with its own shortcuts is named by its arch in the export's log and card
  (not 'ResNet (with shortcuts)', which a MobileNetV2 is not)."""
  net = models.build(arch, width=16, num_classes=10)
  assert card.network_words(which, None, net) == words
