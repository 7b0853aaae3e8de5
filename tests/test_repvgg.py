"""The RepVGG-style student conv (`jointrd_jax/models/repvgg.py`): the unit is the sum of its
three branches, it folds into one biased 3x3 conv (network logits and the export's checks),
parameter counts in closed form, the hybrid paths and a train step, presets, bad input."""
import importlib
import json

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export as export_cli
from jointrd_jax import deploy, methods, models
from jointrd_jax.deploy import checks, export
from jointrd_jax.errors import UserError
from jointrd_jax.models import convs, fold, repvgg
from jointrd_jax.training import optim, run_setup
from export_helpers import check_data, make_run

U = 2.0 ** -24  # float32 unit roundoff
EPS = models.BN_EPSILON
PRESETS = {"plain_repvgg": False, "kd_logits_repvgg": True, "jointrd_repvgg": True}


def _draw(path, leaf, rng):
  """Non-trivial values for every leaf, by its name: kernels kaiming-like, BN scales and
  variances in [0.5, 1.5] / [0.5, 2], biases and means N(0, 0.2^2)."""
  name = str(getattr(path[-1], "key", path[-1]))
  if name == "kernel":
    fan_in = int(np.prod(leaf.shape[:-1]))
    return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if name == "var":
    return rng.uniform(0.5, 2.0, leaf.shape).astype(np.float32)
  if name == "scale":
    return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
  return rng.normal(0, 0.2, leaf.shape).astype(np.float32)  # bias, mean


def random_variables(module, *args, seed=0):
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *args))
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(lambda p, x: _draw(p, x, rng), shapes)


# ----------------------------------------------------------------- the unit, by definition


def _np_conv(x, w, stride, absolute=False):
  """Direct loop-level conv, float64: NHWC x HWIO, padding k // 2 on each side (PyTorch's)."""
  k, pad = w.shape[0], w.shape[0] // 2
  x = np.pad(x.astype(np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  w = w.astype(np.float64)
  if absolute:
    x, w = np.abs(x), np.abs(w)
  ho = (x.shape[1] - k) // stride + 1
  wo = (x.shape[2] - k) // stride + 1
  out = np.zeros((x.shape[0], ho, wo, w.shape[3]))
  for i in range(ho):
    for j in range(wo):
      patch = x[:, i * stride:i * stride + k, j * stride:j * stride + k, :]
      out[:, i, j] = np.einsum("nhwc,hwco->no", patch, w)
  return out


def _np_bn(y, params, stats, absolute=False):
  s = params["scale"] / np.sqrt(stats["var"].astype(np.float64) + EPS)
  if absolute:
    return (np.abs(y) + np.abs(stats["mean"])) * np.abs(s) + np.abs(params["bias"])
  return (y - stats["mean"]) * s + params["bias"]


def _np_unit(x, p, st, stride, absolute=False):
  """The paper's train-time block without its ReLU, inference-mode BN: BN(W3 * x) +
  BN(W1 * x) (+ BN(x)). With `absolute`, the same sums of absolute values: a bound M."""
  y = _np_bn(_np_conv(x, p["conv"]["kernel"], stride, absolute), p["bn"], st["bn"], absolute)
  y = y + _np_bn(_np_conv(x, p["conv_1x1"]["kernel"], stride, absolute), p["bn_1x1"],
                 st["bn_1x1"], absolute)
  if "bn_identity" in p:
    y = y + _np_bn(np.abs(x) if absolute else x, p["bn_identity"], st["bn_identity"], absolute)
  return y


@pytest.mark.parametrize("cin,cout,stride,size,identity", [
    (4, 4, 1, 6, True), (4, 4, 2, 7, False), (3, 5, 1, 5, False), (3, 5, 2, 8, False)])
def test_unit_is_the_sum_of_its_branches(cin, cout, stride, size, identity):
  unit = repvgg.RepVGGUnit(cout, 3, stride)
  x = np.random.default_rng(1).standard_normal((2, size, size, cin)).astype(np.float32)
  v = random_variables(unit, x, False)
  p, st = v["params"], v["batch_stats"]
  branches = {"conv", "bn", "conv_1x1", "bn_1x1"} | ({"bn_identity"} if identity else set())
  assert set(p) == branches and set(st) == branches - {"conv", "conv_1x1"}
  assert p["conv_1x1"]["kernel"].shape == (1, 1, cin, cout)
  got = np.asarray(unit.apply(v, x, False))
  want = _np_unit(x, p, st, stride)
  # Float32 error bound (Higham's gamma_n): a float32 sum of n products is within
  # n * u * (the same sum of absolute values). n <= 9 cin + 1 for the 3x3 branch, plus a
  # few roundings for the BN (subtract, multiply, add, the 1/sqrt) and the branch sums: 16.
  bound = (9 * cin + 16) * U * _np_unit(x, p, st, stride, absolute=True)
  assert got.shape == want.shape
  assert np.all(np.abs(got - want) <= bound)
  # The fold: one biased 3x3 conv equal to the unit (the same bound, twice: two programs).
  folded = repvgg.fold_repvgg(p, st)
  assert set(folded) == {"conv"} and set(folded["conv"]) == {"kernel", "bias"}
  one = models.FoldedConv(cout, 3, stride).apply({"params": folded}, x)
  assert np.all(np.abs(np.asarray(one) - want) <= 2 * bound)


def test_fold_formula_by_hand():
  """The folded kernel and bias, element by element, from the module's formulas."""
  unit = repvgg.RepVGGUnit(3, 3, 1)
  x = np.zeros((1, 4, 4, 3), np.float32)
  v = random_variables(unit, x, False, seed=3)
  p, st = v["params"], v["batch_stats"]
  folded = jax.tree_util.tree_map(np.asarray, repvgg.fold_repvgg(p, st))["conv"]

  def affine(b):
    s = p[b]["scale"] / np.sqrt(st[b]["var"] + EPS)
    return s, p[b]["bias"] - st[b]["mean"] * s

  (s3, t3), (s1, t1), (si, ti) = affine("bn"), affine("bn_1x1"), affine("bn_identity")
  for kh in range(3):
    for kw in range(3):
      for i in range(3):
        for o in range(3):
          want = p["conv"]["kernel"][kh, kw, i, o] * s3[o]
          if (kh, kw) == (1, 1):
            want += p["conv_1x1"]["kernel"][0, 0, i, o] * s1[o] + (si[o] if i == o else 0.0)
          assert folded["kernel"][kh, kw, i, o] == pytest.approx(want, rel=4 * U, abs=4 * U)
  np.testing.assert_allclose(folded["bias"], t3 + t1 + ti, rtol=4 * U, atol=4 * U)


# ----------------------------------------------------------------- the network's fold


def _fold_tolerance(net, logits):
  """Train-time and folded networks differ by float32 rounding only (u = 2^-24). Per unit,
  the train form rounds three dot products (<= 9 cin, cin, 1 terms) and two branch sums; the
  folded form one dot product of 9 cin terms over a kernel whose centre taps carry up to two
  extra roundings (W3 s3 + W1 s1 + s_id): at most K_max + 4 roundings per output either way.
  For random values they add like a random walk: sqrt(K) u relative to the layer's output
  scale, and the relative errors of L layers in sequence again as a random walk. Allowed:
  4 sqrt(L (K_max + 4)) u times the largest logit (width 4: ~2e-5 relative; a wrong fold is
  off by O(1))."""
  expansion = models.EXPANSION[net.kind]
  depth = 2 + sum(net.stage_sizes) * (3 if net.kind == "bottleneck" else 2)
  w4 = net.width * 8
  k_max = max(models.STEM[net.variant]["kernel"] ** 2 * 3, 9 * w4, w4 * expansion)
  return 4 * np.sqrt(depth * (k_max + 4)) * U * float(jnp.abs(logits).max())


@pytest.mark.parametrize("arch,shortcuts,size", [
    ("resnet50", "projection", 32), ("resnet18", "none", 32), ("resnet10", "projection", 32),
    ("imagenet_resnet14", "projection", 64), ("imagenet_resnet10", "none", 37)])
def test_folded_network_gives_the_same_logits(arch, shortcuts, size):
  net = models.build(arch, shortcuts, conv="repvgg", width=4, num_classes=10)
  variables = random_variables(net, jnp.zeros((1, size, size, 3)), False)
  stats = flax.traverse_util.flatten_dict(variables["batch_stats"])
  identity_vars = [v for k, v in stats.items() if k[-2:] == ("bn_identity", "var")]
  assert identity_vars and all(np.ptp(v) > 0 for v in identity_vars)  # non-trivial stats
  folded_net, folded = fold.fold(net, variables)
  assert folded_net == models.build(arch, shortcuts, width=4, num_classes=10, folded=True)
  x = jax.random.normal(jax.random.key(2), (8, size, size, 3))
  logits = np.asarray(jax.jit(net.apply)(variables, x)[0])
  got = np.asarray(jax.jit(folded_net.apply)(folded, x)[0])
  tol = _fold_tolerance(net, logits)
  assert np.abs(logits).max() > 1.0  # not trivially small
  np.testing.assert_allclose(got, logits, rtol=0, atol=tol)
  # No top-1 prediction changes; every reference top-1 wins by more than 2 tol, so this
  # holds for any rounding within the tolerance (the check is not lucky).
  top2 = np.sort(logits, -1)[:, -2:]
  assert np.all(top2[:, 1] - top2[:, 0] > 2 * tol)
  np.testing.assert_array_equal(got.argmax(-1), logits.argmax(-1))
  flat = flax.traverse_util.flatten_dict(folded["params"])
  assert not [k for k in flat if k[-2].startswith("bn") or k[-2] == "conv_1x1"]


def test_export_folds_and_checks_a_repvgg_run(tmp_path):
  """experiments.export on a tiny run with a RepVGG-style student: the fold check (<= 1e-4
  relative, no changed prediction), the SavedModel, the TFLite and the ONNX file all pass."""
  make_run(tmp_path / "run", arch="resnet14", shortcuts="projection", dirac="repvgg")
  out = tmp_path / "out"
  assert export_cli.main([f"--workdir={tmp_path / 'run'}", f"--out={out}",
                          "--num_images=20"]) == 0
  report = json.loads((out / "export.json").read_text())
  assert report["passed"] is True and report["architecture"]["conv"] == "repvgg"
  assert set(report["checks"]) == {"fold", "saved_model", "tflite", "onnx"}
  for name, c in report["checks"].items():
    assert c["passed"] and c["num_images"] == 20 and c["top1_changed"] == 0, name
    assert c["rel_diff"] <= checks.RTOL and c["max_abs_logit"] > 0.1, name
  with np.load(out / "params.npz") as f:
    assert "stage1_block0/conv2/conv/bias" in f.files
    assert not [k for k in f.files if "bn" in k or "conv_1x1" in k]
  # The package rebuilds both networks from export.json alone (tests/test_package.py): the
  # folded one passes the export's own criterion against the trained one.
  folded, trained = deploy.load(str(out)), deploy.load(str(out), folded=False)
  assert any("conv_1x1" in k for k in flax.traverse_util.flatten_dict(trained.variables["params"]))
  images = check_data()[0][:20]
  assert checks.compare(trained(images), folded(images))["passed"]


# ----------------------------------------------------------------- parameter counts


def _cifar_convs(kind, stage_sizes, width, shortcuts):
  """`(k, c_in, c_out, stride, name)` of every conv of a CIFAR net (reference §1)."""
  out, cin = [(3, 3, width, 1, "stem")], width
  for i, n in enumerate(stage_sizes):
    p = width * 2 ** i
    for j in range(n):
      s = 2 if (i > 0 and j == 0) else 1
      if kind == "bottleneck":
        out += [(1, cin, p, 1, "conv1"), (3, p, p, s, "conv2"), (1, p, 4 * p, 1, "conv3")]
        c = 4 * p
      else:
        out += [(3, cin, p, s, "conv1"), (3, p, p, 1, "conv2")]
        c = p
      if shortcuts == "projection" and i > 0 and j == 0:
        out.append((1, cin, c, s, "shortcut"))
      cin = c
  return out, cin


def closed_form_count(kind, stage_sizes, width, num_classes, shortcuts, conv, folded=False):
  """Train time: k^2 c_in c_out + BN(2 c_out) per conv; a RepVGG 3x3 conv of the scope (§2:
  bottleneck conv2, basic conv1/conv2) adds the 1x1 kernel c_in c_out + BN(2 c_out) + the
  identity BN(2 c_out) where c_in = c_out and stride 1. Folded: k^2 c_in c_out + bias c_out
  per conv. Plus the head."""
  scope = ("conv2",) if kind == "bottleneck" else ("conv1", "conv2")
  all_convs, last = _cifar_convs(kind, stage_sizes, width, shortcuts)
  n = last * num_classes + num_classes
  for k, cin, cout, s, name in all_convs:
    n += k * k * cin * cout + (cout if folded else 2 * cout)
    if not folded and conv == "repvgg" and k == 3 and name in scope:
      n += cin * cout + 2 * cout + (2 * cout if cin == cout and s == 1 else 0)
  return n


def _folded_shapes(net):
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  return jax.eval_shape(lambda v: fold.fold(net, v)[1], shapes)


@pytest.mark.parametrize("arch,kind,sizes,train_count,folded_count", [
    ("resnet50", "bottleneck", (3, 4, 6, 3), 24_959_140, 23_662_052),
    ("resnet18", "basic", (2, 2, 2, 2), 12_454_308, 11_215_332)])
def test_parameter_counts_train_time_and_folded(arch, kind, sizes, train_count, folded_count):
  """CIFAR, C = 100, projection shortcuts (the figures of docs/method.md)."""
  assert closed_form_count(kind, sizes, 64, 100, "projection", "repvgg") == train_count
  assert closed_form_count(kind, sizes, 64, 100, "projection", "repvgg", True) == folded_count
  # The closed form is right for the plain student too (reference §1's counts).
  assert closed_form_count(kind, sizes, 64, 100, "projection", "none") == {
      "resnet50": 23_688_356, "resnet18": 11_220_132}[arch]
  net = models.build(arch, "projection", conv="repvgg", num_classes=100)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  assert models.num_params(shapes["params"]) == train_count
  folded = _folded_shapes(net)
  plain = _folded_shapes(models.build(arch, "projection", conv="none", num_classes=100))
  assert models.num_params(folded) == models.num_params(plain) == folded_count
  # Exactly a plain net's deployment form: the same tree of the same shapes.
  assert jax.tree_util.tree_map(lambda a: a.shape, folded) == jax.tree_util.tree_map(
      lambda a: a.shape, plain)


# ----------------------------------------------------------------- in the methods


def test_jointrd_repvgg_hybrid_paths_and_one_train_step():
  m = methods.build("jointrd_repvgg", arch="resnet14", num_classes=10, width=4)
  assert m.student.conv == "repvgg" and m.teacher.conv == "none" and m.uses_hybrids
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3))
  sv = random_variables(m.student, x, False, seed=1)
  tv = random_variables(m.teacher, x, False, seed=2)
  s_feats = jax.eval_shape(lambda: m.student.apply(sv, x)[1])
  t_feats = jax.eval_shape(lambda: m.teacher.apply(tv, x)[1])
  assert [f.shape for f in s_feats] == [f.shape for f in t_feats]
  trainable = {"student": sv["params"]}
  other = {"batch_stats": {"student": sv["batch_stats"]}, "teacher": tv}
  batch = {"image": x, "label": jnp.array([0, 3, 7, 9])}
  step = jax.jit(jax.value_and_grad(m.loss_fn, has_aux=True))
  (loss, (metrics, new_stats)), grads = step(trainable, other, batch, 0)
  assert np.isfinite(float(loss)) and {"ce_hybrid1", "ce_student"} <= set(metrics)
  flat = flax.traverse_util.flatten_dict(grads["student"])
  assert set(flat) == set(flax.traverse_util.flatten_dict(sv["params"]))
  assert {k[-2] for k in flat} >= {"conv_1x1", "bn_1x1", "bn_identity"}
  for k, g in flat.items():
    g = np.asarray(g)
    assert np.all(np.isfinite(g)) and np.any(g != 0), k
  # Train mode updated every branch's running statistics, the identity BN's included.
  moved = flax.traverse_util.flatten_dict(new_stats["student"])
  before = flax.traverse_util.flatten_dict(sv["batch_stats"])
  assert all(np.any(np.asarray(moved[k]) != before[k]) for k in before)
  heads = m.eval_logits(trainable, other, x)
  assert set(heads) == {"student", "teacher", "hybrid1", "hybrid2", "hybrid3"}


def test_every_branch_takes_weight_decay():
  net = models.build("resnet14", "projection", conv="repvgg", width=4, num_classes=10)
  params = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))["params"]
  assert all(jax.tree_util.tree_leaves(optim.weight_decay_mask(params)))


@pytest.mark.parametrize("package", ["configs", "configs.imagenet"])
def test_presets_and_their_configs(package):
  for name, has_teacher in PRESETS.items():
    spec = methods.get_spec(name)
    assert (spec.student_shortcuts, spec.student_conv, spec.needs_teacher) == (
        "projection", "repvgg", has_teacher)
    c = importlib.import_module(f"{package}.{name}").get_config()
    run_setup.validate(c)
    m = run_setup.build_method(c, 10)
    assert m.name == name and m.student.conv == "repvgg" and (m.teacher is not None) == has_teacher
  assert [w.name for w in methods.build("plain_repvgg", arch="resnet10", num_classes=10).terms] \
      == ["ce"]
  assert [w.name for w in methods.build("kd_logits_repvgg", arch="resnet10",
                                        num_classes=10).terms] == ["kd"]


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("arch", list(models.ARCHS))
def test_every_arch_takes_repvgg_on_its_3x3_convs_only(arch):
  """No registered arch "cannot take" repvgg: each has 3x3 convs in its conv scope. The 1x1
  convs (bottleneck conv1/conv3, the projection shortcut) and the stem stay plain."""
  net = models.build(arch, "projection", conv="repvgg", width=4, num_classes=10)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0), (32, 32, 3)))
  three_by_three = {"conv2"} if net.kind == "bottleneck" else {"conv1", "conv2"}
  for path, kind in net.units().items():
    assert kind == ("repvgg" if path[-1] in three_by_three else "none"), path
    node = shapes["params"]
    for name in path:
      node = node[name]
    assert ("conv_1x1" in node) == (kind == "repvgg"), path


def test_unknown_conv_names_repvgg_among_the_choices():
  with pytest.raises(UserError) as e:
    models.build("resnet18", conv="repvg")
  assert str(e.value) == "unknown conv 'repvg'; choose one of none, init, reparam, repvgg."


def test_a_kind_that_applies_to_no_conv_of_the_arch_is_refused(monkeypatch):
  """Generic, not RepVGG's: a kind for 5x5 convs has nothing to apply to in any arch; a kind
  for 1x1 convs applies to the ImageNet basic block's projection (in its scope) only."""
  kind = repvgg.KIND
  for name, sizes in (("five", (5,)), ("one", (1,))):
    monkeypatch.setitem(convs.CONVS, name, convs.ConvKind(name, kind.unit, kind.fold, "test",
                                                          kernel_sizes=sizes))
  with pytest.raises(UserError) as e:
    models.build("resnet18", conv="five")
  assert str(e.value) == ("conv 'five' applies to 5x5 convs, and arch 'resnet18' (shortcuts "
                          "'all') has none in its student conv scope; choose another conv or "
                          "arch.")
  with pytest.raises(UserError, match="^conv 'one' applies to 1x1 convs, and arch "
                     "'imagenet_resnet18' \\(shortcuts 'none'\\)"):
    models.build("imagenet_resnet18", "none", conv="one")
  assert models.build("imagenet_resnet18", "projection", conv="one").conv == "one"
  with pytest.raises(UserError, match="^conv 'five' applies to 5x5 convs"):
    methods.build("plain", arch="resnet10", num_classes=10, conv="five")
