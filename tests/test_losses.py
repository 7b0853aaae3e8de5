"""Tests for jointrd_jax.methods.losses against independent NumPy references."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jointrd_jax.methods import losses

SETTINGS = settings(deadline=None, max_examples=25)

batch_st = st.integers(1, 16)
classes_st = st.integers(2, 20)
seed_st = st.integers(0, 2**31 - 1)
temp_st = st.floats(0.5, 10.0, allow_nan=False, allow_infinity=False)
tau_st = st.floats(0.0, 1.0, allow_nan=False, allow_infinity=False)


# ----------------------------------------------------------------------------
# NumPy references (float64; independent of the library).
# ----------------------------------------------------------------------------


def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_ce(logits, labels):
  lp = np_log_softmax(logits)
  return float(-lp[np.arange(len(labels)), labels].mean())


def np_kl(student, teacher, t):
  lps = np_log_softmax(np.asarray(student, np.float64) / t)
  lpt = np_log_softmax(np.asarray(teacher, np.float64) / t)
  return float((np.exp(lpt) * (lpt - lps)).sum(axis=-1).mean())


def np_kd(student, teacher, labels, tau, t):
  return (1 - tau) * np_ce(student, labels) + tau * t * t * np_kl(
      student, teacher, t)


def np_feature_mse(sf, tf):
  per_stage = []
  for s, t in zip(sf, tf):
    d = np.asarray(s, np.float64) - np.asarray(t, np.float64)
    per_stage.append(float((d**2).reshape(d.shape[0], -1).sum(-1).mean()))
  return sum(per_stage), per_stage


def np_weight(e, dc=0.5, big_e=60):
  if e > big_e:
    return dc
  return dc + (1 - dc) * (1 + math.cos(math.pi * e / big_e)) / 2


def np_jointrd(student, hybrids, labels, m):
  return (m * sum(np_ce(h, labels) for h in hybrids) +
          np_ce(student, labels)) / (len(hybrids) + 1)


# ----------------------------------------------------------------------------
# Float32 error bounds (the library computes in float32, the references in float64).
#
# A float32 formula that adds, subtracts or averages terms rounds each intermediate
# result with a relative error of at most u = 2^-24. To first order its absolute error
# is at most  n * u * S,  where n is the longest chain of roundings (the terms of the
# longest sum plus the few elementwise operations before it) and S the sum of the
# magnitudes of the terms involved (the standard forward bound gamma_n = n u / (1 - n u)
# of a sum). S, not the result, sets the bound: a small loss can come out of a
# difference of large terms (CE = logsumexp(z) - z_y with z_y the largest logit), where a
# relative tolerance would fail by luck. Each bound below is that product, with S
# computed from the inputs by the float64 reference; a wrong formula misses by orders of
# magnitude more.
# ----------------------------------------------------------------------------

U32 = 2.0**-24  # float32 unit roundoff
OPS = 8  # elementwise roundings before the sums: shift by the max, /t, exp, log, x weight


def tol(scale, n_terms):
  """The first-order float32 error bound (n_terms + OPS) * u * scale."""
  return (n_terms + OPS) * U32 * float(scale)


def ce_scale(logits, labels):
  """Magnitudes in CE: the max shift, logsumexp and z_y, batch-averaged."""
  z = np.asarray(logits, np.float64)
  lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
  zy = z[np.arange(len(labels)), labels]
  return np.abs(z).max() + np.mean(np.abs(lse) + np.abs(zy))


def ce_tol(logits, labels):
  b, c = np.shape(logits)
  return tol(ce_scale(logits, labels), c + b)


def kl_scale(student, teacher, t):
  """Magnitudes in KL(p_T || p_S) at temperature t: p_T |log p_T| + p_T |log p_S|."""
  lps = np_log_softmax(np.asarray(student, np.float64) / t)
  lpt = np_log_softmax(np.asarray(teacher, np.float64) / t)
  terms = np.exp(lpt) * (np.abs(lpt) + np.abs(lps))
  big = max(np.abs(student).max(), np.abs(teacher).max()) / t
  return big + terms.sum(-1).mean()


def kd_tol(student, teacher, labels, tau, t):
  b, c = np.shape(student)
  return tol((1 - tau) * ce_scale(student, labels)
             + tau * t * t * kl_scale(student, teacher, t), c + b)


def jointrd_tol(student, hybrids, labels, m):
  b, c = np.shape(student)
  scale = (m * sum(ce_scale(h, labels) for h in hybrids)
           + ce_scale(student, labels)) / (len(hybrids) + 1)
  return tol(scale, c + b + len(hybrids) + 1)


def mse_tol(student_feats, total):
  """Every term of the MSE sum is >= 0: S is the result itself (no cancellation); the
  longest sum is over one example's elements, then the batch, then the stages."""
  elems = max(int(np.prod(np.shape(f)[1:])) for f in student_feats)
  return tol(total, elems + np.shape(student_feats[0])[0] + len(student_feats))


def make_logits(rng, b, c, scale=3.0):
  return (scale * rng.standard_normal((b, c))).astype(np.float32)


def make_labels(rng, b, c):
  return rng.integers(0, c, size=(b,)).astype(np.int32)


def assert_f32_scalar_metrics(loss, metrics):
  chex.assert_shape(loss, ())
  assert loss.dtype == jnp.float32
  assert 'loss' in metrics
  for k, v in metrics.items():
    chex.assert_shape(v, ())
    assert v.dtype == jnp.float32, (k, v.dtype)
  np.testing.assert_array_equal(np.asarray(loss), np.asarray(metrics['loss']))


# ----------------------------------------------------------------------------
# Jitted entry points for the hypothesis tests. On CPU every new input shape
# costs an XLA compilation, and un-jitted (eager) calls compile each primitive
# separately, which is ~5x slower per new shape. So each example calls these
# jitted functions, with tau / temperature / m traced, and every call of one
# example that shares a shape reuses the same executable. Un-jitted calls are
# checked against the NumPy references in `VariantsTest`.
# ----------------------------------------------------------------------------

# Test-only: skip LLVM optimisation of these tiny graphs (~35% less compile
# time on CPU); the HLO, and so the arithmetic, is unchanged.
_FAST_COMPILE = {'xla_backend_optimization_level': 0}
_jit_ce = jax.jit(losses.cross_entropy, compiler_options=_FAST_COMPILE)
_jit_kd = jax.jit(losses.kd_logits, compiler_options=_FAST_COMPILE)
_jit_mse = jax.jit(losses.feature_mse_all, compiler_options=_FAST_COMPILE)
_jit_jointrd = jax.jit(losses.jointrd, compiler_options=_FAST_COMPILE)


# ----------------------------------------------------------------------------
# cross_entropy
# ----------------------------------------------------------------------------


@SETTINGS
@given(b=batch_st, c=classes_st, seed=seed_st)
def test_cross_entropy_matches_numpy(b, c, seed):
  rng = np.random.default_rng(seed)
  z, y = make_logits(rng, b, c), make_labels(rng, b, c)
  loss, metrics = _jit_ce(z, y)
  assert_f32_scalar_metrics(loss, metrics)
  assert set(metrics) == {'loss', 'ce'}
  np.testing.assert_allclose(float(loss), np_ce(z, y), rtol=0, atol=ce_tol(z, y))
  np.testing.assert_allclose(float(metrics['ce']), float(loss))


# ----------------------------------------------------------------------------
# kd_logits
# ----------------------------------------------------------------------------


@SETTINGS
@given(b=batch_st, c=classes_st, tau=tau_st, t=temp_st, seed=seed_st)
def test_kd_logits_matches_numpy_and_properties(b, c, tau, t, seed):
  rng = np.random.default_rng(seed)
  zs, zt = make_logits(rng, b, c), make_logits(rng, b, c)
  y = make_labels(rng, b, c)

  loss, metrics = _jit_kd(zs, zt, y, tau, t)
  assert_f32_scalar_metrics(loss, metrics)
  assert set(metrics) == {'loss', 'ce', 'kl'}
  np.testing.assert_allclose(
      float(loss), np_kd(zs, zt, y, tau, t), rtol=0, atol=kd_tol(zs, zt, y, tau, t))
  kl_tol = tol(kl_scale(zs, zt, t), c + b)
  np.testing.assert_allclose(float(metrics['kl']), np_kl(zs, zt, t), rtol=0, atol=kl_tol)
  np.testing.assert_allclose(float(metrics['ce']), np_ce(zs, y), rtol=0, atol=ce_tol(zs, y))
  assert float(metrics['kl']) >= -kl_tol

  # KL vanishes when student == teacher (to rounding: the two log-softmaxes are the same
  # float32 computation, so their difference is exactly 0).
  _, same = _jit_kd(zs, zs, y, tau, t)
  assert float(same['kl']) == 0.0

  # tau = 0: exactly CE; tau = 1: exactly t^2 KL.
  loss0, m0 = _jit_kd(zs, zt, y, 0.0, t)
  loss1, m1 = _jit_kd(zs, zt, y, 1.0, t)
  np.testing.assert_array_equal(np.asarray(loss0), np.asarray(m0['ce']))
  # tau = 1 is t^2 * KL up to the two roundings of the product (relative 2u each).
  np.testing.assert_allclose(
      float(loss1), np.float32(t)**2 * float(m1['kl']), rtol=4 * U32, atol=0)

  # Linear in tau: the same float32 terms, weighted; the roundings of the weights and
  # of the sum are relative to the terms' magnitudes.
  terms = (1 - tau) * abs(float(loss0)) + tau * abs(float(loss1))
  np.testing.assert_allclose(
      float(loss), (1 - tau) * float(loss0) + tau * float(loss1),
      rtol=0, atol=tol(terms, 2))


def test_kd_logits_teacher_gradient_is_zero():
  rng = np.random.default_rng(0)
  zs, zt = make_logits(rng, 8, 10), make_logits(rng, 8, 10)
  y = make_labels(rng, 8, 10)
  grad_fn = jax.jit(
      jax.grad(lambda s, t: losses.kd_logits(s, t, y)[0], argnums=(0, 1)))
  g_s, g_t = grad_fn(zs, zt)
  chex.assert_shape(g_t, zt.shape)
  np.testing.assert_array_equal(np.asarray(g_t), np.zeros_like(zt))
  assert np.abs(np.asarray(g_s)).sum() > 0


# ----------------------------------------------------------------------------
# feature_mse_all
# ----------------------------------------------------------------------------


@st.composite
def feature_pairs(draw):
  b = draw(batch_st)
  n_stages = draw(st.integers(1, 4))
  seed = draw(seed_st)
  rng = np.random.default_rng(seed)
  shapes = [(b, draw(st.integers(1, 5)), draw(st.integers(1, 5)),
             draw(st.integers(1, 8))) for _ in range(n_stages)]
  sf = [rng.standard_normal(s).astype(np.float32) for s in shapes]
  tf = [rng.standard_normal(s).astype(np.float32) for s in shapes]
  return sf, tf, seed


@SETTINGS
@given(pair=feature_pairs())
def test_feature_mse_all_matches_numpy_and_properties(pair):
  sf, tf, seed = pair
  rng = np.random.default_rng(seed + 1)
  n = len(sf)
  # One call over 3n stages: the drawn stages, the batch concatenated with
  # itself, and the spatial size doubled by tiling. All calls below share the
  # shapes, hence one compilation per example.
  dup = lambda fs: [np.concatenate([f, f]) for f in fs]
  tile = lambda fs: [np.tile(f, (1, 2, 1, 1)) for f in fs]
  student, teacher = sf + dup(sf) + tile(sf), tf + dup(tf) + tile(tf)
  total, metrics = _jit_mse(student, teacher)
  assert_f32_scalar_metrics(total, metrics)
  assert set(metrics) == ({'loss'} |
                          {f'mse_stage{k}' for k in range(1, 3 * n + 1)})
  ref_total, ref_stages = np_feature_mse(student, teacher)
  total_tol = mse_tol(student, ref_total)
  np.testing.assert_allclose(float(total), ref_total, rtol=0, atol=total_tol)
  per_stage = np.array([float(metrics[f'mse_stage{k}'])
                        for k in range(1, 3 * n + 1)])
  np.testing.assert_allclose(per_stage, ref_stages, rtol=0, atol=total_tol)
  base, dup_sum, tile_sum = per_stage.reshape(3, n).sum(axis=1)

  # Per-example sum, batch mean: a batch concatenated with itself is unchanged.
  np.testing.assert_allclose(dup_sum, base, rtol=0, atol=2 * total_tol)
  # Sum over elements: doubling the spatial size by tiling doubles the loss.
  np.testing.assert_allclose(tile_sum, 2 * base, rtol=0, atol=3 * total_tol)

  # Exactly zero when features match.
  zero, zero_metrics = _jit_mse(student, student)
  assert float(zero) == 0.0
  assert all(float(v) == 0.0 for v in zero_metrics.values())

  # Strictly positive when a single element of one stage differs.
  stage = int(rng.integers(n))
  idx = tuple(int(rng.integers(d)) for d in sf[stage].shape)
  perturbed = [f.copy() for f in student]
  perturbed[stage][idx] += 0.5
  pos, pos_metrics = _jit_mse(perturbed, student)
  assert float(pos) > 0.0
  assert float(pos_metrics[f'mse_stage{stage + 1}']) > 0.0


def test_feature_mse_all_accepts_tuples_and_numpy():
  rng = np.random.default_rng(5)
  sf = tuple(rng.standard_normal((3, 2, 2, 4)).astype(np.float32)
             for _ in range(2))
  total, metrics = losses.feature_mse_all(sf, sf)
  assert float(total) == 0.0
  assert set(metrics) == {'loss', 'mse_stage1', 'mse_stage2'}


def test_feature_mse_all_teacher_gradient_is_zero():
  rng = np.random.default_rng(1)
  sf = [rng.standard_normal((2, 4, 4, 3)).astype(np.float32) for _ in range(4)]
  tf = [rng.standard_normal((2, 4, 4, 3)).astype(np.float32) for _ in range(4)]
  g_s, g_t = jax.jit(jax.grad(
      lambda s, t: losses.feature_mse_all(s, t)[0], argnums=(0, 1)))(sf, tf)
  for g, s, t in zip(g_s, sf, tf):
    np.testing.assert_allclose(np.asarray(g), 2 * (s - t) / 2, rtol=1e-6)
  for g in g_t:
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_feature_mse_all_rejects_bad_inputs():
  a = np.zeros((2, 4, 4, 3), np.float32)
  b = np.zeros((2, 4, 4, 5), np.float32)
  with pytest.raises(ValueError, match='stage 2'):
    losses.feature_mse_all([a, a], [a, b])
  with pytest.raises(ValueError, match='stages'):
    losses.feature_mse_all([a, a], [a])
  with pytest.raises(ValueError, match='at least one'):
    losses.feature_mse_all([], [])


# ----------------------------------------------------------------------------
# jointrd_weight
# ----------------------------------------------------------------------------


@pytest.mark.parametrize('epoch,expected', [(0, 1.0), (15, 0.9268), (30, 0.75),
                                            (45, 0.5732), (60, 0.5), (61, 0.5),
                                            (200, 0.5)])
def test_jointrd_weight_check_values(epoch, expected):
  w = losses.jointrd_weight(epoch, dc=0.5, decay_epochs=60)
  chex.assert_shape(w, ())
  assert w.dtype == jnp.float32
  np.testing.assert_allclose(float(w), expected, atol=1e-4)


def test_jointrd_weight_monotone_constant_and_jittable():
  epochs = np.arange(0, 201)
  eager = np.array([float(losses.jointrd_weight(int(e))) for e in epochs])
  jitted_fn = jax.jit(losses.jointrd_weight)
  jitted = np.array([float(jitted_fn(jnp.asarray(e))) for e in epochs])
  vmapped = np.asarray(jax.vmap(losses.jointrd_weight)(jnp.asarray(epochs)))
  ref = np.array([np_weight(int(e)) for e in epochs])
  for vals in (eager, jitted, vmapped):
    np.testing.assert_allclose(vals, ref, atol=1e-6)
    assert np.all(np.diff(vals) <= 0.0)
    np.testing.assert_array_equal(vals[60:], np.float32(0.5))
  # Traced epoch with non-default schedule.
  fn = jax.jit(lambda e: losses.jointrd_weight(e, dc=0.2, decay_epochs=10))
  np.testing.assert_allclose(float(fn(jnp.int32(5))), np_weight(5, 0.2, 10),
                             atol=1e-6)
  np.testing.assert_allclose(float(fn(jnp.int32(50))), 0.2, atol=1e-7)


# ----------------------------------------------------------------------------
# jointrd
# ----------------------------------------------------------------------------


@SETTINGS
@given(b=batch_st, c=classes_st, seed=seed_st,
       m=st.floats(0.0, 1.0, width=32), k=st.integers(1, 4))
def test_jointrd_matches_numpy_and_properties(b, c, seed, m, k):
  rng = np.random.default_rng(seed)
  zs = make_logits(rng, b, c)
  hs = [make_logits(rng, b, c) for _ in range(k)]
  y = make_labels(rng, b, c)
  loss, metrics = _jit_jointrd(zs, hs, y, m)
  assert_f32_scalar_metrics(loss, metrics)
  assert set(metrics) == ({'loss', 'ce_student', 'm'} |
                          {f'ce_hybrid{i}' for i in range(1, k + 1)})
  np.testing.assert_allclose(float(loss), np_jointrd(zs, hs, y, m), rtol=0,
                             atol=jointrd_tol(zs, hs, y, m))
  assert float(metrics['m']) == np.float32(m)  # m passes through unchanged
  for i, h in enumerate(hs, start=1):
    np.testing.assert_allclose(
        float(metrics[f'ce_hybrid{i}']), np_ce(h, y), rtol=0, atol=ce_tol(h, y))

  # m = 0: only the student term, scaled by 1/(K+1).
  loss0, _ = _jit_jointrd(zs, hs, y, 0.0)
  np.testing.assert_allclose(float(loss0), np_ce(zs, y) / (k + 1), rtol=0,
                             atol=jointrd_tol(zs, hs, y, 0.0))

  # Hybrids equal to the student and m = 1: plain CE.
  loss_eq, _ = _jit_jointrd(zs, [zs] * k, y, 1.0)
  np.testing.assert_allclose(float(loss_eq), np_ce(zs, y), rtol=0,
                             atol=jointrd_tol(zs, [zs] * k, y, 1.0))


def test_jointrd_reference_k3_quarter_factor_and_gradient():
  rng = np.random.default_rng(3)
  zs = make_logits(rng, 8, 10)
  hs = [make_logits(rng, 8, 10) for _ in range(3)]
  y = make_labels(rng, 8, 10)
  loss, metrics = losses.jointrd(zs, hs, y, 0.0)
  assert set(metrics) == {'loss', 'ce_student', 'ce_hybrid1', 'ce_hybrid2',
                          'ce_hybrid3', 'm'}
  np.testing.assert_allclose(float(loss), np_ce(zs, y) / 4, rtol=0,
                             atol=jointrd_tol(zs, hs, y, 0.0))

  @jax.jit
  def grads(zs, hs):
    g = jax.grad(lambda s: losses.jointrd(s, hs, y, 0.0)[0])(zs)
    g_ce = jax.grad(lambda s: losses.cross_entropy(s, y)[0])(zs)
    # With m > 0, each hybrid head gets m/4 of its plain CE gradient.
    g_h = jax.grad(lambda h: losses.jointrd(zs, h, y, 0.5)[0])(hs)
    g_h_ce = [jax.grad(lambda h: losses.cross_entropy(h, y)[0])(h) for h in hs]
    return g, g_ce, g_h, g_h_ce

  g, g_ce, g_h, g_h_ce = grads(zs, hs)
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ce) / 4,
                             rtol=1e-6, atol=1e-8)
  for a, b in zip(g_h, g_h_ce):
    np.testing.assert_allclose(np.asarray(a), 0.5 * np.asarray(b) / 4,
                               rtol=1e-5, atol=1e-8)


def test_jointrd_rejects_mismatched_hybrid_shapes():
  z = np.zeros((4, 10), np.float32)
  y = np.zeros((4,), np.int32)
  with pytest.raises(ValueError, match='hybrid_logits'):
    losses.jointrd(z, [z, np.zeros((4, 9), np.float32)], y, 0.5)


# ----------------------------------------------------------------------------
# jit vs. non-jit (chex.variants) and bfloat16 inputs
# ----------------------------------------------------------------------------


class VariantsTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(7)
    self.zs = make_logits(rng, 6, 5)
    self.zt = make_logits(rng, 6, 5)
    self.hs = [make_logits(rng, 6, 5) for _ in range(3)]
    self.y = make_labels(rng, 6, 5)
    self.sf = [rng.standard_normal((6, 4 // i, 4 // i, 2 * i)).astype(
        np.float32) for i in (1, 2, 4)]
    self.tf = [rng.standard_normal(s.shape).astype(np.float32)
               for s in self.sf]

  @chex.variants(with_jit=True, without_jit=True)
  def test_all_losses(self):
    ce = self.variant(losses.cross_entropy)
    kd = self.variant(
        lambda s, t, y: losses.kd_logits(s, t, y, tau=0.7, temperature=2.0))
    mse = self.variant(losses.feature_mse_all)
    jrd = self.variant(losses.jointrd)
    out = {
        'ce': ce(self.zs, self.y),
        'kd': kd(self.zs, self.zt, self.y),
        'mse': mse(self.sf, self.tf),
        'jrd': jrd(self.zs, self.hs, self.y, jnp.float32(0.75)),
    }
    expected = {
        'ce': np_ce(self.zs, self.y),
        'kd': np_kd(self.zs, self.zt, self.y, 0.7, 2.0),
        'mse': np_feature_mse(self.sf, self.tf)[0],
        'jrd': np_jointrd(self.zs, self.hs, self.y, 0.75),
    }
    bounds = {
        'ce': ce_tol(self.zs, self.y),
        'kd': kd_tol(self.zs, self.zt, self.y, 0.7, 2.0),
        'mse': mse_tol(self.sf, expected['mse']),
        'jrd': jointrd_tol(self.zs, self.hs, self.y, 0.75),
    }
    for name, (loss, metrics) in out.items():
      assert_f32_scalar_metrics(loss, metrics)
      np.testing.assert_allclose(float(loss), expected[name], rtol=0,
                                 atol=bounds[name], err_msg=name)


@pytest.mark.parametrize('jit', [False, True])
def test_bfloat16_inputs_give_float32_close_to_fp32(jit):
  rng = np.random.default_rng(11)
  zs = make_logits(rng, 8, 10)
  zt = make_logits(rng, 8, 10)
  hs = [make_logits(rng, 8, 10) for _ in range(3)]
  y = make_labels(rng, 8, 10)
  sf = [rng.standard_normal((8, 4, 4, 3)).astype(np.float32) for _ in range(4)]
  tf = [rng.standard_normal((8, 4, 4, 3)).astype(np.float32) for _ in range(4)]

  def run_all(zs, zt, hs, sf, tf):
    return {
        'ce': losses.cross_entropy(zs, y),
        'kd': losses.kd_logits(zs, zt, y),
        'mse': losses.feature_mse_all(sf, tf),
        'jrd': losses.jointrd(zs, hs, y, 0.75),
    }

  fn = jax.jit(run_all) if jit else run_all
  bf = lambda x: jnp.asarray(x, jnp.bfloat16)
  # fp32 run on the bf16-rounded values: only compute precision differs.
  rounded = lambda x: np.asarray(bf(x), np.float32)
  out_bf = fn(bf(zs), bf(zt), [bf(h) for h in hs], [bf(s) for s in sf],
              [bf(t) for t in tf])
  out_32 = fn(rounded(zs), rounded(zt), [rounded(h) for h in hs],
              [rounded(s) for s in sf], [rounded(t) for t in tf])
  out_raw = fn(zs, zt, hs, sf, tf)
  for name in out_bf:
    loss, metrics = out_bf[name]
    assert_f32_scalar_metrics(loss, metrics)
    chex.assert_trees_all_close(out_bf[name], out_32[name], rtol=1e-5,
                                atol=1e-5)
    # And close to the un-rounded fp32 result (bf16 has ~3 significant digits).
    chex.assert_trees_all_close(out_bf[name], out_raw[name], rtol=5e-2,
                                atol=5e-2)
