"""Methods as weighted loss terms: presets, composition, what the step computes, settings.

(The seven methods' numbers are checked bitwise against recorded runs in test_train.py and
test_imagenet.py; the formulas of the terms in test_losses.py and test_logit_losses.py.)
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from jointrd_jax import methods, models
from jointrd_jax.errors import UserError
from jointrd_jax.methods import losses
from jointrd_jax.methods import method as method_lib
from jointrd_jax.training import identity

ARCH, WIDTH, C = "resnet10", 4, 10


def _batch(n=8, seed=2):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return {"image": jax.random.normal(k1, (n, 32, 32, 3)),
          "label": jax.random.randint(k2, (n,), 0, C)}


def _state(m):
  sv = models.init(m.student, jax.random.key(0))
  other = {"batch_stats": {"student": sv["batch_stats"]}, "teacher": None}
  if m.teacher is not None:
    other["teacher"] = models.init(m.teacher, jax.random.key(1))
  return {"student": sv["params"]}, other


def _build(name, **kw):
  return methods.build(name, arch=ARCH, num_classes=C, width=WIDTH, **kw)


def test_every_preset_names_registered_terms_and_its_teacher_follows_them():
  for name, preset in methods.METHODS.items():
    m = _build(name)
    assert [w.name for w in m.terms] == [t for t, _ in preset.term_entries()], name
    assert (m.teacher is not None) == preset.teacher == methods.needs_teacher(name), name
    assert m.student.shortcuts == preset.student_shortcuts
    assert m.student.conv == preset.student_conv


def test_the_seven_methods_terms_weights_and_settings():
  got = {name: [(w.name, w.weight, dict(w.params)) for w in _build(name).terms]
         for name in ("resnet", "plain", "plain_dirac", "kd_logits", "kd_logits_dirac",
                      "kd_mse_all_dirac", "jointrd")}
  kd = [("kd", 1.0, {"standardize": False, "tau": 0.9, "temperature": 4.0})]
  assert got == {"resnet": [("ce", 1.0, {})], "plain": [("ce", 1.0, {})],
                 "plain_dirac": [("ce", 1.0, {})], "kd_logits": kd, "kd_logits_dirac": kd,
                 "kd_mse_all_dirac": [("ce", 1.0, {}), ("mse_all", 1e-3, {})],
                 "jointrd": [("jointrd", 1.0, {"dc": 0.5, "decay_epochs": 60})]}


def test_terms_strings_replace_or_extend_the_presets_terms():
  preset = methods.METHODS["jointrd"]
  assert methods.parse_terms("", preset) == [("jointrd", None)]
  assert methods.parse_terms("+kd:0.5", preset) == [("jointrd", None), ("kd", 0.5)]
  assert methods.parse_terms(" ce , kd:2 ", preset) == [("ce", None), ("kd", 2.0)]
  for spec, message in (("+dkdd", "unknown loss term 'dkdd'; choose one of"),
                        ("ce,kd:half", "the weight 'half' of loss term 'kd' is not a number; "
                                       "write e.g. kd:0.5."),
                        ("+jointrd", "loss term 'jointrd' appears twice"),
                        (",", "names no loss term")):
    with pytest.raises(UserError, match=message):
      methods.parse_terms(spec, preset)


def test_settings_precedence_term_preset_config_and_terms_string():
  # mse_all's own default weight (alpha = 1e-3) < config < a weight in the terms string.
  w = {t.name: t for t in methods.resolve_terms("kd_mse_all_dirac")}
  assert w["mse_all"].weight == 1e-3
  w = {t.name: t for t in methods.resolve_terms(
      "kd_mse_all_dirac", "", {"mse_all": {"weight": 0.01}, "kd": {"tau": None}})}
  assert w["mse_all"].weight == 0.01
  w = {t.name: t for t in methods.resolve_terms(
      "kd_mse_all_dirac", "ce,mse_all:0.1", {"mse_all": {"weight": 0.01}})}
  assert w["mse_all"].weight == 0.1
  w = {t.name: t for t in methods.resolve_terms("jointrd", "", {"jointrd": {"dc": 5e-3}})}
  assert dict(w["jointrd"].params) == {"dc": 5e-3, "decay_epochs": 60}
  with pytest.raises(UserError, match="loss term 'kd' has no setting 'alpha'; its settings: "
                                      "weight, tau, temperature"):
    methods.resolve_terms("kd_logits", "", {"kd": {"alpha": 1.0}})


def test_a_term_that_needs_a_teacher_is_refused_in_a_method_without_one():
  with pytest.raises(UserError, match="loss term 'kd' needs a teacher, and method 'plain' "
                                      "trains without one"):
    _build("plain", terms="+kd")
  # A method with a teacher whose composed terms need none has no teacher at all.
  assert _build("kd_logits_dirac", terms="ce").teacher is None
  with pytest.raises(UserError, match="teacher.train='joint' is JointRD's option"):
    _build("kd_logits", teacher_train="joint")


def test_the_step_computes_only_what_the_terms_need(monkeypatch):
  def forbidden(*args, **kwargs):
    raise AssertionError("computed although no term needs it")

  batch = _batch()
  # CE only: no teacher at all (nothing to run).
  m = _build("plain_dirac")
  assert m.teacher is None and m.needs == frozenset()
  # KD: the teacher's forward pass, never the hybrid paths.
  monkeypatch.setattr(method_lib, "hybrid_logits", forbidden)
  m = _build("kd_logits_dirac")
  trainable, other = _state(m)
  loss, _ = m.loss_fn(trainable, other, batch, jnp.int32(0))
  assert np.isfinite(float(loss))
  # JointRD: the hybrid paths, never the teacher's forward pass on the batch.
  monkeypatch.undo()
  m = _build("jointrd")
  trainable, other = _state(m)
  calls = []
  real_apply = type(m.teacher).apply

  def counting_apply(self, variables, x, *args, **kwargs):
    calls.append(kwargs.get("start_stage", 0))
    return real_apply(self, variables, x, *args, **kwargs)

  monkeypatch.setattr(type(m.teacher), "apply", counting_apply)
  m.loss_fn(trainable, other, batch, jnp.int32(0))
  assert 0 not in calls[1:]  # calls[0]: the student's own forward pass


def test_a_composed_loss_is_the_weighted_sum_of_its_terms():
  # JointRD plus half a KD term: the sum of the two terms' losses as the library computes
  # them separately, metrics under each term's name.
  m = _build("jointrd", terms="+kd:0.5")
  trainable, other = _state(m)
  batch = _batch()
  loss, (metrics, _) = jax.jit(m.loss_fn)(trainable, other, batch, jnp.int32(3))
  z_s, feats = m.student.apply({"params": trainable["student"],
                                "batch_stats": other["batch_stats"]["student"]},
                               batch["image"], train=True, mutable=["batch_stats"])[0]
  z_t, _ = m.teacher.apply(other["teacher"], batch["image"], train=False)
  hyb = methods.hybrid_logits(m.teacher, other["teacher"], feats)
  j, _ = losses.jointrd(z_s, hyb, batch["label"], losses.jointrd_weight(3, 0.5, 60))
  k, _ = losses.kd_logits(z_s, z_t, batch["label"], tau=0.9, temperature=4.0)
  # Two float32 sums of the same values, differently fused: a few ulps of the loss.
  np.testing.assert_allclose(float(loss), float(j) + 0.5 * float(k), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["jointrd"]), float(j), rtol=1e-5)
  np.testing.assert_allclose(float(metrics["kd"]), float(k), rtol=1e-5)
  assert {"ce_student", "ce_hybrid1", "m", "kl", "ce", "loss", "accuracy"} <= set(metrics)
  assert identity.of_built(m).description.endswith("; loss jointrd + 0.5 kd")


def test_the_config_has_every_terms_settings_unset_by_default():
  c = default.get_config()
  assert c.terms == ""
  for name, term in methods.TERMS.items():
    assert set(c.loss[name]) == {"weight", *term.params}, name
    assert all(v is None for v in c.loss[name].values()), name
  c.loss.kd.temperature = 2.0  # typed like the term's default
  with pytest.raises(TypeError):
    c.loss.kd.temperature = "two"


def test_dkd_ls_dirac_is_dkd_on_standardised_logits_with_the_ls_authors_settings():
  # The logit-standardisation authors' DKD: alpha and beta times their KD weight 9, T 2,
  # beside DKD's own CE (weight 1); dkd_dirac with standardize=True alone keeps 1, 8, 4.
  ls = {w.name: w for w in methods.resolve_terms("dkd_ls_dirac")}
  assert (ls["ce"].weight, ls["dkd"].weight) == (1.0, 1.0)
  p = ls["dkd"].params
  assert (p["alpha"], p["beta"], p["temperature"], p["standardize"]) == (9.0, 72.0, 2.0, True)
  plain = methods.resolve_terms("dkd_dirac", loss_params={"dkd": {"standardize": True}})[1]
  assert (plain.params["alpha"], plain.params["beta"], plain.params["temperature"]) == (
      1.0, 8.0, 4.0)
  # DKD is linear in (alpha, beta): 9 times DKD's own (1, 8) on standardised logits at T 2.
  k1, k2, k3 = jax.random.split(jax.random.key(4), 3)
  z_s, z_t = jax.random.normal(k1, (8, C)), 3 * jax.random.normal(k2, (8, C))
  y = jax.random.randint(k3, (8,), 0, C)
  got, _ = losses.dkd(z_s, z_t, y, alpha=9.0, beta=72.0, temperature=2.0, standardize=True)
  one, _ = losses.dkd(z_s, z_t, y, alpha=1.0, beta=8.0, temperature=2.0, standardize=True)
  # The same float32 sums scaled by 9 (exact) before rounding: a few ulps.
  np.testing.assert_allclose(float(got), 9 * float(one), rtol=1e-6)
