"""The model family against the reference (§1-2, §9): counts, shapes, Dirac, shortcuts, fold,
for the CIFAR and the ImageNet variants."""
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jointrd_jax import models
from jointrd_jax.models import dirac, fold
from jointrd_jax.training import checkpoints
from jointrd_jax.errors import UserError
from model_helpers import randomise

# Reference §1, parameter counts with C=100 (the official modules, unused ones excluded).
COUNTS = {
    ("resnet50", "all", "none"): 23_705_252,
    ("resnet50", "projection", "none"): 23_688_356,
    ("resnet50", "projection", "reparam"): 23_726_116,
    ("resnet50", "none", "none"): 20_928_676,
    ("resnet34", "all", "none"): 21_328_292,
    ("resnet34", "projection", "none"): 21_328_292,
    ("resnet34", "projection", "reparam"): 21_343_396,
    ("resnet34", "none", "none"): 21_154_468,
    ("resnet18", "all", "none"): 11_220_132,
    ("resnet18", "projection", "none"): 11_220_132,
    ("resnet18", "projection", "reparam"): 11_227_812,
    ("resnet18", "none", "none"): 11_046_308,
}


# Reference §9, C=1000: teacher (`all`) and `projection` + Dirac reparam student.
IMAGENET_COUNTS = {
    ("imagenet_resnet50", "all", "none"): 25_557_032,
    ("imagenet_resnet34", "all", "none"): 21_797_672,
    ("imagenet_resnet18", "all", "none"): 11_689_512,
    ("imagenet_resnet50", "projection", "reparam"): 25_592_616,
    ("imagenet_resnet34", "projection", "reparam"): 21_814_568,
    ("imagenet_resnet18", "projection", "reparam"): 11_698_984,
}


def _shapes(net, image=None):
  return jax.eval_shape(lambda: models.init(net, jax.random.key(0), image))


@pytest.mark.parametrize("arch,shortcuts,mode", sorted(COUNTS))
def test_parameter_counts_match_reference(arch, shortcuts, mode):
  net = models.build(arch, shortcuts, mode, num_classes=100)
  assert models.num_params(_shapes(net)["params"]) == COUNTS[arch, shortcuts, mode]


@pytest.mark.parametrize("arch,shortcuts,mode", sorted(IMAGENET_COUNTS))
def test_imagenet_parameter_counts_match_reference(arch, shortcuts, mode):
  net = models.build(arch, shortcuts, mode, num_classes=1000)
  assert models.num_params(_shapes(net)["params"]) == IMAGENET_COUNTS[arch, shortcuts, mode]


def test_num_classes_default_is_the_variants():
  assert models.build("resnet18").num_classes == 100
  assert models.build("imagenet_resnet18").num_classes == 1000


def test_parameter_count_cifar10_teacher():
  net = models.build("resnet50", num_classes=10)
  assert models.num_params(_shapes(net)["params"]) == 23_520_842


def test_dirac_init_mode_has_same_count_as_plain():
  a = models.build("resnet18", "projection", "init")
  b = models.build("resnet18", "projection", "none")
  assert models.num_params(_shapes(a)["params"]) == models.num_params(_shapes(b)["params"])


@pytest.mark.parametrize("arch,channels", [
    ("resnet18", (64, 128, 256, 512)),
    ("resnet34", (64, 128, 256, 512)),
    ("resnet50", (256, 512, 1024, 2048)),
])
def test_stage_feature_shapes(arch, channels):
  net = models.build(arch, num_classes=10)
  variables = _shapes(net)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  logits, feats = jax.eval_shape(lambda v, x: net.apply(v, x), variables, x)
  assert logits.shape == (2, 10)
  assert [f.shape for f in feats] == [(2, 32, 32, channels[0]), (2, 16, 16, channels[1]),
                                      (2, 8, 8, channels[2]), (2, 4, 4, channels[3])]


@pytest.mark.parametrize("arch,channels", [
    ("imagenet_resnet18", (64, 128, 256, 512)),
    ("imagenet_resnet50", (256, 512, 1024, 2048)),
])
def test_imagenet_stage_feature_shapes(arch, channels):
  """224 -> stem conv (stride 2) 112 -> max-pool 56 -> stages 56, 28, 14, 7."""
  net = models.build(arch)
  assert net.variant == "imagenet" and net.default_image_shape == (224, 224, 3)
  variables = _shapes(net)
  params = variables["params"]
  assert params["stem"]["conv"]["kernel"].shape == (7, 7, 3, 64)
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  logits, feats = jax.eval_shape(lambda v, x: net.apply(v, x), variables, x)
  assert logits.shape == (2, 1000)
  assert [f.shape for f in feats] == [(2, 56, 56, channels[0]), (2, 28, 28, channels[1]),
                                      (2, 14, 14, channels[2]), (2, 7, 7, channels[3])]


def test_max_pool_is_pytorchs_with_minus_infinity_padding():
  """3x3, stride 2, padding 1; a padded position never wins, even on negative inputs."""
  x = -1.0 - np.abs(np.random.default_rng(0).standard_normal((2, 7, 6, 3))).astype(np.float32)
  got = np.asarray(models.max_pool(jnp.asarray(x)))
  want = np.empty((2, 4, 3, 3), np.float32)
  for i in range(4):
    for j in range(3):  # window rows 2i-1..2i+1, cols 2j-1..2j+1, clipped to the image
      rows, cols = slice(max(2 * i - 1, 0), 2 * i + 2), slice(max(2 * j - 1, 0), 2 * j + 2)
      want[:, i, j] = x[:, rows, cols].max(axis=(1, 2))
  np.testing.assert_array_equal(got, want)


def test_describe_names_the_variant_and_old_descriptions_are_cifar():
  desc = models.describe(models.build("imagenet_resnet14", width=4))
  assert desc["variant"] == "imagenet"
  assert models.from_description(desc) == models.build("imagenet_resnet14", width=4)
  old = dict(models.describe(models.build("resnet14", width=4)))
  del old["variant"]  # checkpoints written before the ImageNet variant
  assert checkpoints.build_network(dict(old, stage_sizes=[1, 1, 1, 1])) == models.build(
      "resnet14", width=4)
  assert models.from_description(old).variant == "cifar"
  # Descriptions written before conv kinds had their own name call the kind `dirac`.
  older = dict(old, dirac="reparam")
  del older["conv"]
  assert models.from_description(older) == models.build("resnet14", "all", conv="reparam",
                                                         width=4)
  with pytest.raises(UserError, match="unknown conv 'sparse'"):
    models.from_description(dict(old, conv="sparse"))


# ---------------------------------------------------------------- Dirac kernels


def _numpy_delta(kh, kw, cin, cout):
  d = np.zeros((kh, kw, cin, cout), np.float32)
  for i in range(min(cin, cout)):
    d[kh // 2, kw // 2, i, i] = 1
  return d


@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (3, 3, 6, 4), (3, 3, 5, 5), (1, 1, 4, 16),
                                   (1, 1, 16, 4)])
def test_dirac_initializer_matches_definition(shape):
  k = dirac.dirac_init(jax.random.key(0), shape)
  np.testing.assert_array_equal(np.asarray(k), _numpy_delta(*shape))
  assert k.dtype == jnp.float32


@pytest.mark.parametrize("cin,cout,stride", [(4, 6, 1), (6, 4, 1), (5, 5, 1), (5, 5, 2),
                                             (4, 8, 2)])
def test_dirac_conv_is_partial_or_subsampled_identity(cin, cout, stride):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, cin))
  conv = models.Conv(cout, 3, stride)
  y = conv.apply({"params": {"kernel": dirac.dirac_init(None, (3, 3, cin, cout))}}, x)
  expected = np.zeros((2, 8 // stride, 8 // stride, cout), np.float32)
  n = min(cin, cout)
  expected[..., :n] = np.asarray(x)[:, ::stride, ::stride, :n]
  np.testing.assert_array_equal(np.asarray(y), expected)


def test_dirac_plus_init_is_delta_plus_scaled_kaiming():
  shape = (3, 3, 8, 8)
  key = jax.random.key(3)
  k = dirac.dirac_plus_init(models.conv_init, 0.1)(key, shape)
  np.testing.assert_allclose(np.asarray(k), _numpy_delta(*shape)
                             + 0.1 * np.asarray(models.conv_init(key, shape)), rtol=1e-6)


def test_reparam_with_b_zero_is_exact_identity():
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 6))
  conv = models.Conv(6, 3, 1, dirac="reparam")
  variables = conv.init(jax.random.key(0), x)
  p = variables["params"]
  assert set(p) == {"kernel", dirac.A_NAME, dirac.B_NAME}
  np.testing.assert_array_equal(np.asarray(p[dirac.A_NAME]), np.ones(6))
  np.testing.assert_allclose(np.asarray(p[dirac.B_NAME]), np.full(6, 0.1))
  p = dict(p, **{dirac.B_NAME: jnp.zeros(6)})
  np.testing.assert_array_equal(np.asarray(conv.apply({"params": p}, x)), np.asarray(x))


def test_dirac_scope_matches_release():
  """Dirac on bottleneck conv2/conv3 and both basic convs; never stem, conv1, shortcut."""
  def dirac_convs(arch):
    params = _shapes(models.build(arch, "projection", "reparam", width=4))["params"]
    flat = flax.traverse_util.flatten_dict(params)
    return {"/".join(k[:-2]) for k in flat if k[-1] == dirac.A_NAME}

  r50 = dirac_convs("resnet50")
  assert {p.split("/")[-1] for p in r50} == {"conv2", "conv3"}
  assert len(r50) == 2 * 16
  r18 = dirac_convs("resnet18")
  assert {p.split("/")[-1] for p in r18} == {"conv1", "conv2"}
  assert len(r18) == 2 * 8


def test_imagenet_dirac_scope_is_every_block_conv():
  """Reference §9: in the ImageNet student every conv of a block is a Dirac conv, the
  projection shortcut included; never the stem."""
  def dirac_convs(arch):
    params = _shapes(models.build(arch, "projection", "reparam", width=4))["params"]
    flat = flax.traverse_util.flatten_dict(params)
    return {"/".join(k[:-2]) for k in flat if k[-1] == dirac.A_NAME}

  r50 = dirac_convs("imagenet_resnet50")
  assert {p.split("/")[-1] for p in r50} == {"conv1", "conv2", "conv3", "shortcut"}
  assert len(r50) == 3 * 16 + 3
  assert {p for p in r50 if p.endswith("shortcut")} == {
      "stage2_block0/shortcut", "stage3_block0/shortcut", "stage4_block0/shortcut"}
  r34 = dirac_convs("imagenet_resnet34")
  assert {p.split("/")[-1] for p in r34} == {"conv1", "conv2", "shortcut"}
  assert len(r34) == 2 * 16 + 3
  assert not [p for p in r50 | r34 if p.startswith("stem")]


# ----------------------------------------------------------------- Initialisation


def test_init_statistics_follow_pytorch_conventions():
  net = models.build("resnet18", num_classes=100, width=8)
  params = jax.jit(lambda k: models.init(net, k))(jax.random.key(0))["params"]
  kernel = np.asarray(params["stage4_block1"]["conv2"]["conv"]["kernel"])  # 3x3, 64->64
  fan_out = 3 * 3 * 64
  assert abs(kernel.std() / np.sqrt(2.0 / fan_out) - 1) < 0.02
  assert abs(kernel.mean()) < 2e-3
  head = params["head"]
  bound = 1 / np.sqrt(64)
  for leaf in (head["kernel"], head["bias"]):
    leaf = np.asarray(leaf)
    assert leaf.min() >= -bound and leaf.max() <= bound and leaf.max() > 0.8 * bound
  bn = params["stem"]["bn"]
  np.testing.assert_array_equal(np.asarray(bn["scale"]), 1)
  np.testing.assert_array_equal(np.asarray(bn["bias"]), 0)


# ----------------------------------------------------------------- Shortcuts


@pytest.mark.parametrize("arch,shortcuts,expected", [
    ("resnet50", "all", 16), ("resnet50", "projection", 3), ("resnet50", "none", 0),
    ("resnet18", "all", 8), ("resnet18", "projection", 3), ("resnet18", "none", 0),
])
def test_shortcuts_counted_functionally(arch, shortcuts, expected):
  """Silence a block's residual branch (last BN scale = 0): its output still depends on
  its input exactly when the block has a shortcut. Count those blocks."""
  net = models.build(arch, shortcuts, width=4, num_classes=10)
  variables = models.init(net, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))

  @jax.jit
  def block_outputs(params):
    _, state = net.apply({"params": params, "batch_stats": variables["batch_stats"]}, x,
                         capture_intermediates=lambda m, _: isinstance(m, models.Block),
                         mutable=["intermediates"])
    return {k: v["__call__"][0] for k, v in state["intermediates"].items()}

  last = "conv3" if net.kind == "bottleneck" else "conv2"
  names = sorted(k for k in variables["params"] if k.startswith("stage"))
  assert len(names) == sum(net.stage_sizes)
  count = 0
  for name in names:
    params = flax.core.unfreeze(variables["params"])
    params[name][last]["bn"]["scale"] = jnp.zeros_like(params[name][last]["bn"]["scale"])
    out = block_outputs(params)[name]
    if not np.allclose(out[0], out[1]):
      count += 1
  assert count == expected
  plan = [s for stage in net.plan for s in stage]
  assert sum(s != "none" for s in plan) == expected


def test_no_shortcut_parameters_in_strict_plain_net():
  params = _shapes(models.build("resnet50", "none", width=4))["params"]
  flat = flax.traverse_util.flatten_dict(params)
  assert not [k for k in flat if "shortcut" in k]


# ----------------------------------------------------------------- Forward and fold


def _f32_tolerance(net, logits):
  """Folded and unfolded networks differ by float32 rounding only (unit roundoff u =
  2^-24): the folded kernel W * s and bias beta - mu * s are rounded once, and the sums run
  in another order. For random values these errors are a random walk: about sqrt(K) * u
  relative to a layer's output scale for a dot product of K terms, and the relative errors
  of L layers in sequence add as a random walk again. Allowed: 4 * sqrt(L * K_max) * u times
  the largest logit (width 4: ~2e-5 relative; a wrong fold is off by O(1))."""
  expansion = models.EXPANSION[net.kind]
  depth = 2 + sum(net.stage_sizes) * (3 if net.kind == "bottleneck" else 2)
  w4 = net.width * 8
  k_max = max(models.STEM[net.variant]["kernel"] ** 2 * 3, 9 * w4, w4 * expansion)
  scale = float(jnp.abs(logits).max())
  assert scale > 1e-2
  return 4 * np.sqrt(depth * k_max) * 2.0 ** -24 * scale


@pytest.mark.parametrize("arch,shortcuts,mode,size", [
    ("resnet50", "projection", "reparam", 32), ("resnet50", "all", "none", 32),
    ("resnet18", "none", "init", 32), ("resnet34", "projection", "reparam", 32),
    ("imagenet_resnet14", "projection", "reparam", 64),
    ("imagenet_resnet10", "projection", "reparam", 37),
])
def test_fold_gives_same_logits(arch, shortcuts, mode, size):
  net = models.build(arch, shortcuts, mode, width=4, num_classes=10)
  variables = randomise(models.init(net, jax.random.key(0), (size, size, 3)), jax.random.key(1))
  folded_net, folded = fold.fold(net, variables)
  assert folded_net.variant == net.variant
  x = jax.random.normal(jax.random.key(2), (4, size, size, 3))
  logits = jax.jit(net.apply)(variables, x)[0]
  folded_logits = jax.jit(folded_net.apply)(folded, x)[0]
  np.testing.assert_allclose(np.asarray(folded_logits), np.asarray(logits), rtol=0,
                             atol=_f32_tolerance(net, logits))
  flat = flax.traverse_util.flatten_dict(folded["params"])
  assert not [k for k in flat if k[-2] == "bn" or k[-1].startswith(dirac.PARAM_PREFIX)]
  assert "batch_stats" not in folded


def test_relu_max_pool_equals_relu_of_the_minus_inf_padded_pool():
  """The folded ImageNet stem pools the ReLU's output over zero padding: bitwise the
  values of ReLU after PyTorch's -inf-padded pool, windows of only negative values (the
  ReLU makes them 0), border windows and odd sizes included."""
  x = jax.random.normal(jax.random.key(0), (2, 15, 14, 3)) - 0.7  # ~75 % negative
  x = x.at[0, :4, :4, :].set(-1.0)  # a corner of only negative values
  got = models.relu_max_pool(x)
  want = jax.nn.relu(models.max_pool(x))
  assert got.shape == want.shape == (2, 8, 7, 3)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  assert float(got[0, 0, 0, 0]) == 0.0 and float(got.max()) > 0


@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("imagenet_resnet10", 64)])
def test_start_stage_runs_later_stages_on_given_features(arch, size):
  net = models.build(arch, width=4, num_classes=10)
  variables = randomise(models.init(net, jax.random.key(0), (size, size, 3)), jax.random.key(1))
  x = jax.random.normal(jax.random.key(2), (3, size, size, 3))
  logits, feats = net.apply(variables, x)
  for k in (1, 2, 3):
    hybrid, later = net.apply(variables, feats[k - 1], start_stage=k)
    np.testing.assert_array_equal(np.asarray(hybrid), np.asarray(logits))
    assert len(later) == 4 - k


def test_jitted_forward_and_train_mode_update_stats():
  net = models.build("resnet50", "projection", "reparam", width=4, num_classes=10)
  variables = models.init(net, jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (4, 32, 32, 3)) + 3.0

  @jax.jit
  def step(v, x):
    return net.apply(v, x, train=True, mutable=["batch_stats"])

  (logits, feats), new = step(variables, x)
  assert logits.shape == (4, 10) and len(feats) == 4
  assert np.all(np.isfinite(np.asarray(logits)))
  # Momentum 0.9 (PyTorch 0.1): the running mean starts at 0 and moves 10% of the way
  # to the batch mean of the stem conv's output.
  conv_out = models.Conv(4, 3).apply({"params": variables["params"]["stem"]["conv"]}, x)
  np.testing.assert_allclose(np.asarray(new["batch_stats"]["stem"]["bn"]["mean"]),
                             0.1 * np.asarray(conv_out.mean(axis=(0, 1, 2))), rtol=1e-4)


def test_bf16_compute_keeps_fp32_params():
  net = models.build("resnet18", width=4, num_classes=10, dtype=jnp.bfloat16)
  variables = models.init(net, jax.random.key(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree_util.tree_leaves(variables))
  logits, feats = jax.jit(net.apply)(variables, jnp.ones((2, 32, 32, 3)))
  assert logits.dtype == jnp.bfloat16 and feats[0].dtype == jnp.bfloat16


@pytest.mark.parametrize("kwargs,message", [
    ({"arch": "resnet51"}, f"unknown arch 'resnet51'; choose one of "
     f"{', '.join(models.arch_names())}."),
    ({"arch": "resnet18", "shortcuts": "some"},
     "unknown shortcut policy 'some'; choose one of all, projection, none."),
    ({"arch": "resnet18", "dirac": "yes"},
     f"unknown conv 'yes'; choose one of {', '.join(models.CONVS)}."),
    ({"arch": "resnet18", "conv": "yes"},
     f"unknown conv 'yes'; choose one of {', '.join(models.CONVS)}."),
    ({"arch": "resnet18", "width": 0}, "width (0) and num_classes (100) must be positive."),
])
def test_build_rejects_unknown_choices_without_naming_a_flag(kwargs, message):
  """The library names the valid choices; each tool adds its own flag (--arch, ...)."""
  # The choices named are every arch, the zoo's included.
  assert {"resnet18", "resnet50", "imagenet_resnet50", "resnet10", "resnet14", "resnet8",
          "resnet14_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
          "resnet8x4", "resnet32x4", "vgg8", "vgg11", "vgg13", "vgg16", "vgg19", "wrn_16_2",
          "wrn_40_1", "wrn_40_2", "mobilenetv2", "shufflenetv1", "shufflenetv2"} <= set(
              models.arch_names())
  with pytest.raises(UserError) as e:
    models.build(**kwargs)
  assert str(e.value) == message
