"""The method table (reference §3-5): hybrid paths, gradients, frozen vs joint teachers."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jointrd_jax import methods, models
from jointrd_jax.methods import losses
from jointrd_jax.training import steps
from jointrd_jax.errors import UserError

ARCH = "resnet10"
WIDTH = 4
C = 10


def _setup(name, teacher_train="frozen", arch=ARCH, loss_params=None):
  m = methods.build(name, arch=arch, num_classes=C, width=WIDTH, teacher_train=teacher_train,
                    loss_params=loss_params)
  sv = models.init(m.student, jax.random.key(0))
  trainable = {"student": sv["params"]}
  other = {"batch_stats": {"student": sv["batch_stats"]}, "teacher": None}
  if m.teacher is not None:
    tv = models.init(m.teacher, jax.random.key(1))
    # Non-trivial running statistics, so inference mode differs from train mode.
    (_, _), upd = m.teacher.apply(tv, _batch(seed=9)["image"], train=True, mutable=["batch_stats"])
    tv = {"params": tv["params"], "batch_stats": upd["batch_stats"]}
    if teacher_train == "joint":
      trainable["teacher"] = tv["params"]
      other["batch_stats"]["teacher"] = tv["batch_stats"]
    else:
      other["teacher"] = tv
  return m, trainable, other


def _batch(n=8, seed=2):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"image": jax.random.normal(k1, (n, 32, 32, 3)),
          "label": jax.random.randint(k2, (n,), 0, C)}


def test_method_table_matches_reference():
  spec = methods.METHODS
  assert set(spec) >= {"resnet", "plain", "plain_dirac", "kd_logits", "kd_logits_dirac",
                       "kd_mse_all_dirac", "jointrd"}
  spec = {n: spec[n] for n in ("resnet", "plain", "plain_dirac", "kd_logits", "kd_logits_dirac",
                               "kd_mse_all_dirac", "jointrd")}
  assert (spec["resnet"].student_shortcuts, spec["resnet"].needs_teacher) == ("all", False)
  for name in ("kd_logits_dirac", "kd_mse_all_dirac", "jointrd", "plain_dirac"):
    assert (spec[name].student_shortcuts, spec[name].student_conv) == ("projection", "reparam")
  assert spec["kd_logits"].student_conv == "none"
  assert [n for n in spec if spec[n].needs_teacher] == [
      "kd_logits", "kd_logits_dirac", "kd_mse_all_dirac", "jointrd"]


@pytest.mark.parametrize("arch", ["resnet10", "resnet14"])
def test_hybrid_paths_fed_teacher_features_reproduce_teacher_logits(arch):
  m, _, other = _setup("jointrd", arch=arch)
  x = _batch()["image"]
  logits, feats = m.teacher.apply(other["teacher"], x, train=False)
  hybrids = jax.jit(methods.hybrid_logits, static_argnums=0)(m.teacher, other["teacher"], feats)
  assert len(hybrids) == 3
  for z in hybrids:
    np.testing.assert_allclose(np.asarray(z), np.asarray(logits), rtol=1e-5, atol=1e-5)


def test_batched_hybrid_paths_equal_separate_paths():
  m, trainable, other = _setup("jointrd")
  x = _batch()["image"]
  _, s_feats = m.student.apply({"params": trainable["student"],
                                "batch_stats": other["batch_stats"]["student"]}, x)
  batched = methods.hybrid_logits(m.teacher, other["teacher"], s_feats)
  for k in (1, 2, 3):
    separate, _ = m.teacher.apply(other["teacher"], s_feats[k - 1], start_stage=k)
    np.testing.assert_allclose(np.asarray(batched[k - 1]), np.asarray(separate),
                               rtol=1e-5, atol=1e-6)


def test_jointrd_loss_is_reference_formula():
  m, trainable, other = _setup("jointrd")
  batch = _batch()
  loss, (metrics, _) = m.loss_fn(trainable, other, batch, jnp.int32(15))
  stats = other["batch_stats"]["student"]
  z_s, feats = m.student.apply({"params": trainable["student"], "batch_stats": stats},
                               batch["image"], train=True, mutable=["batch_stats"])[0]
  ce = lambda z: float(optax.softmax_cross_entropy_with_integer_labels(z, batch["label"]).mean())
  hyb = [m.teacher.apply(other["teacher"], feats[k - 1], start_stage=k)[0] for k in (1, 2, 3)]
  mm = 0.5 + 0.5 * (1 + np.cos(np.pi * 15 / 60)) / 2
  expected = 0.25 * (mm * sum(ce(z) for z in hyb) + ce(z_s))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  np.testing.assert_allclose(float(metrics["m"]), 0.9268, atol=1e-4)


def test_jointrd_with_m_zero_has_quarter_of_plain_ce_gradient():
  # dc = 0 and an epoch past decay_epochs make m = 0.
  m, trainable, other = _setup("jointrd", loss_params={"jointrd": {"dc": 0.0, "decay_epochs": 60}})
  plain = methods.build("plain_dirac", arch=ARCH, num_classes=C, width=WIDTH)
  batch = _batch()
  g_jrd = jax.jit(jax.grad(lambda p: m.loss_fn(p, other, batch, jnp.int32(100))[0]))(trainable)
  g_ce = jax.jit(jax.grad(lambda p: plain.loss_fn(p, other, batch, jnp.int32(100))[0]))(trainable)
  chex.assert_trees_all_close(g_jrd, jax.tree_util.tree_map(lambda g: g / 4, g_ce),
                              rtol=1e-4, atol=1e-7)


def test_hybrid_gradient_reaches_early_student_stages_only_through_teacher():
  """With the student CE removed from view, stage-1 weights still get gradient from the
  hybrid paths (the gradient mixture), and the head gets none from them."""
  m, trainable, other = _setup("jointrd")
  batch = _batch()

  def hybrid_only(p):
    _, (metrics, _) = m.loss_fn(p, other, batch, jnp.int32(0))
    return metrics["ce_hybrid1"] + metrics["ce_hybrid2"] + metrics["ce_hybrid3"]

  g = jax.jit(jax.grad(hybrid_only))(trainable)["student"]
  assert float(jnp.abs(g["stage1_block0"]["conv1"]["conv"]["kernel"]).max()) > 0
  assert float(jnp.abs(g["head"]["kernel"]).max()) == 0
  assert float(jnp.abs(g["stage4_block0"]["conv1"]["conv"]["kernel"]).max()) == 0


@pytest.mark.parametrize("name", ["kd_logits", "kd_mse_all_dirac", "jointrd"])
def test_frozen_teacher_untouched_by_jitted_update(name):
  m, trainable, other = _setup(name)
  sample = jax.tree_util.tree_map(np.array, other["teacher"])  # host copy
  tx, schedule = optax.sgd(0.1), optax.constant_schedule(0.1)
  state = steps.TrainState(step=jnp.int32(0), params=trainable, batch_stats=other["batch_stats"],
                           opt_state=tx.init(trainable))
  step = jax.jit(steps.make_train_step(m, tx, schedule), donate_argnums=(0,))
  new_state, metrics = step(state, other["teacher"], _batch(), np.int32(0))
  assert set(new_state.params) == {"student"} and set(new_state.batch_stats) == {"student"}
  jax.tree_util.tree_map(np.testing.assert_array_equal, sample,
                         jax.tree_util.tree_map(np.asarray, other["teacher"]))
  assert np.isfinite(float(metrics["loss"]))


def test_joint_teacher_update_equals_its_own_ce_update():
  m, trainable, other = _setup("jointrd", teacher_train="joint")
  assert m.trained == ("student", "teacher")
  batch = _batch()
  g = jax.grad(lambda p: m.loss_fn(p, other, batch, jnp.int32(0))[0])(trainable)

  def teacher_ce(tp):
    (z, _), _ = m.teacher.apply({"params": tp, "batch_stats": other["batch_stats"]["teacher"]},
                                batch["image"], train=True, mutable=["batch_stats"])
    return losses.cross_entropy(z, batch["label"])[0]

  chex.assert_trees_all_close(g["teacher"], jax.grad(teacher_ce)(trainable["teacher"]),
                              rtol=1e-5, atol=1e-8)
  # ...and the student's gradient is JointRD's alone (the teacher CE does not reach it).
  frozen = dict(other, teacher={"params": trainable["teacher"],
                                "batch_stats": other["batch_stats"]["teacher"]})
  m_frozen = methods.Method("jointrd", m.student, m.teacher, "frozen", m.terms)
  g_frozen = jax.grad(lambda p: m_frozen.loss_fn(p, frozen, batch, jnp.int32(0))[0])(
      {"student": trainable["student"]})
  chex.assert_trees_all_close(g["student"], g_frozen["student"], rtol=1e-5, atol=1e-8)
  _, (_, new_stats) = m.loss_fn(trainable, other, batch, jnp.int32(0))
  assert set(new_stats) == {"student", "teacher"}


def test_kd_and_mse_losses_use_teacher_in_inference_mode():
  m, trainable, other = _setup("kd_mse_all_dirac")
  batch = _batch()
  _, (metrics, _) = m.loss_fn(trainable, other, batch, jnp.int32(0))
  (z_s, s_feats), _ = m.student.apply(
      {"params": trainable["student"], "batch_stats": other["batch_stats"]["student"]},
      batch["image"], train=True, mutable=["batch_stats"])
  _, t_feats = m.teacher.apply(other["teacher"], batch["image"], train=False)
  expected = sum(float(jnp.sum((s - t) ** 2)) / 8 for s, t in zip(s_feats, t_feats))
  np.testing.assert_allclose(float(metrics["mse_all"]), expected, rtol=1e-4)
  np.testing.assert_allclose(float(metrics["loss"]),
                             float(metrics["ce"]) + 1e-3 * expected, rtol=1e-4)


def test_loss_does_not_retrace_when_epoch_changes():
  m, trainable, other = _setup("jointrd")
  batch = _batch()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(p, epoch):
    return m.loss_fn(p, other, batch, epoch)[0]

  values = [float(loss(trainable, np.int32(e))) for e in (0, 15, 30, 80)]
  assert values[0] > values[1] > values[2] > values[3]  # m(e) decreases


def test_build_rejects_bad_choices():
  with pytest.raises(UserError, match="unknown method"):
    methods.build("jointrd2", arch=ARCH, num_classes=C)
  with pytest.raises(UserError, match="joint"):
    methods.build("kd_logits", arch=ARCH, num_classes=C, teacher_train="joint")
  with pytest.raises(UserError, match="same shapes"):
    methods.build("jointrd", arch="resnet18", num_classes=C, teacher_arch="resnet50")
