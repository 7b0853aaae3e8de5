"""Tests of the logit-distillation losses: logit standardisation, DKD and DIST.

Each loss is checked against a loop-level NumPy transcription of its paper's formula in
float64 (Python loops over examples and classes, no call of the code under test; in
tests/logit_refs.py), with a float32 error bound derived there, and by properties (zero at
equality, invariances, finite gradients at extreme logits, no teacher gradient, bfloat16
inputs).
"""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

from jointrd_jax.methods import losses
from logit_refs import (EPS_PEARSON, SETTINGS, U32, batch_st, classes_st, dist_bounds, dkd_bounds,
                        draw, kd_kl_bound, lim_st, ref_dist, ref_dkd, ref_kd_kl, ref_standardize,
                        seed_st, standardize_bound, temp_st, weight_st)


def assert_f32_scalar_metrics(loss, metrics, keys):
  assert set(metrics) == keys
  for k, v in metrics.items():
    chex.assert_shape(v, ())
    assert v.dtype == jnp.float32, (k, v.dtype)
  np.testing.assert_array_equal(np.asarray(loss), np.asarray(metrics['loss']))


# Jitted entry points: one compilation per drawn shape and test (see test_losses.py).
_FAST_COMPILE = {'xla_backend_optimization_level': 0}


def _jit(fn):
  return jax.jit(fn, compiler_options=_FAST_COMPILE)


# ----------------------------------------------------------------------------
# Logit standardisation, alone and inside kd_logits
# ----------------------------------------------------------------------------


@_jit
def _ls_and_kd(zs, zt, y, t, scale, shift):
  moved_s, moved_t = zs * scale + shift, zt * scale[::-1] - shift
  return {
      'ls': losses.logit_standardize(zs),
      'kd_ls': losses.kd_logits(zs, zt, y, 1.0, t, standardize=True),
      'kd_ls_moved': losses.kd_logits(moved_s, moved_t, y, 1.0, t, standardize=True),
      'kd': losses.kd_logits(zs, zt, y, 1.0, t),
      'kd_same': losses.kd_logits(zs, zs, y, 1.0, t, standardize=True),
  }


@SETTINGS
@given(b=batch_st, c=classes_st, lim=lim_st, t=temp_st, seed=seed_st)
def test_logit_standardize_and_kd_ls_match_numpy(b, c, lim, t, seed):
  rng = np.random.default_rng(seed)
  zs, zt = draw(rng, b, c, lim), draw(rng, b, c, lim)
  y = rng.integers(0, c, b).astype(np.int32)
  # A positive scale and a shift per example (the moved copies must give the same loss).
  scale = rng.uniform(0.1, 10.0, (b, 1)).astype(np.float32)
  shift = rng.uniform(-20.0, 20.0, (b, 1)).astype(np.float32)
  out = _ls_and_kd(zs, zt, y, t, scale, shift)

  # logit_standardize: the z-score, row by row.
  ls = np.asarray(out['ls'])
  assert ls.dtype == np.float32 and ls.shape == (b, c)
  err_s, err_t = standardize_bound(zs), standardize_bound(zt)
  assert np.all(np.abs(ls - ref_standardize(zs)) <= err_s[:, None])

  # KD + LS = KL of the standardised logits at the base temperature t (tau = 1).
  loss, metrics = out['kd_ls']
  assert_f32_scalar_metrics(loss, metrics, {'loss', 'ce', 'kl'})
  ls_s, ls_t = ref_standardize(zs), ref_standardize(zt)
  expected = ref_kd_kl(ls_s, ls_t, t)
  bound, s = kd_kl_bound(ls_s, ls_t, t)
  bound += 2 / t * (err_s.max() + s * err_t.max())
  np.testing.assert_allclose(float(metrics['kl']), expected, rtol=0, atol=bound)
  np.testing.assert_allclose(float(loss), t * t * expected, rtol=0,
                             atol=t * t * bound + 4 * U32 * t * t * expected)
  # CE stays on the raw student logits: the very same value as without standardising.
  assert float(metrics['ce']) == float(out['kd'][1]['ce'])
  # Standardising is invariant to a positive scale and a shift of each example's logits:
  # both losses are within their bounds of the float64 values, which (but for eps) agree.
  moved_s, moved_t = zs * scale + shift, zt * scale[::-1] - shift
  ms, mt = ref_standardize(moved_s), ref_standardize(moved_t)
  moved_bound, s2 = kd_kl_bound(ms, mt, t)
  moved_bound += 2 / t * (standardize_bound(moved_s).max()
                          + s2 * standardize_bound(moved_t).max())
  np.testing.assert_allclose(
      float(out['kd_ls_moved'][1]['kl']), float(metrics['kl']), rtol=0,
      atol=bound + moved_bound + abs(ref_kd_kl(ms, mt, t) - expected))
  # Student == teacher: the same float32 operations on both sides, so exactly 0.
  assert float(out['kd_same'][1]['kl']) == 0.0


def test_kd_logits_standardize_false_is_todays_computation():
  rng = np.random.default_rng(0)
  zs, zt = draw(rng, 8, 10, 5.0), draw(rng, 8, 10, 5.0)
  y = rng.integers(0, 10, 8).astype(np.int32)
  default = jax.make_jaxpr(lambda s, t: losses.kd_logits(s, t, y, 0.9, 4.0))(zs, zt)
  false = jax.make_jaxpr(
      lambda s, t: losses.kd_logits(s, t, y, 0.9, 4.0, standardize=False))(zs, zt)
  assert str(default) == str(false)  # the same program, hence the same bits
  for jit in (False, True):
    fn = jax.jit(losses.kd_logits, static_argnames='standardize') if jit else losses.kd_logits
    chex.assert_trees_all_equal(fn(zs, zt, y), fn(zs, zt, y, standardize=False))


# ----------------------------------------------------------------------------
# DKD
# ----------------------------------------------------------------------------


@_jit
def _dkd_all(zs, zt, y, alpha, beta, t):
  one = lambda s, tt, yy, st_: losses.dkd(s[None], tt[None], yy[None], alpha, beta, t,
                                          standardize=st_)[1]
  return {
      'raw': losses.dkd(zs, zt, y, alpha, beta, t),
      'ls': losses.dkd(zs, zt, y, alpha, beta, t, standardize=True),
      'same': losses.dkd(zs, zs, y, alpha, beta, t),
      'same_ls': losses.dkd(zs, zs, y, alpha, beta, t, standardize=True),
      # Per example (batches of one), for the paper's decomposition of KD.
      'per_example': jax.vmap(lambda s, tt, yy: one(s, tt, yy, False))(zs, zt, y),
      'kd_per_example': jax.vmap(
          lambda s, tt, yy: losses.kd_logits(s[None], tt[None], yy[None], 1.0, t)[1]
      )(zs, zt, y),
  }


@SETTINGS
@given(b=batch_st, c=classes_st, lim=lim_st, t=temp_st, seed=seed_st,
       alpha=weight_st(2.0), beta=weight_st(10.0))
def test_dkd_matches_numpy_and_properties(b, c, lim, t, seed, alpha, beta):
  rng = np.random.default_rng(seed)
  zs, zt = draw(rng, b, c, lim), draw(rng, b, c, lim)
  y = rng.integers(0, c, b).astype(np.int32)
  out = _dkd_all(zs, zt, y, alpha, beta, t)
  keys = {'loss', 'tckd', 'nckd'}

  for name, (zs_ref, zt_ref), raw in (
      ('raw', (zs, zt), None),
      ('ls', (ref_standardize(zs), ref_standardize(zt)), (zs, zt))):
    loss, metrics = out[name]
    assert_f32_scalar_metrics(loss, metrics, keys)
    exp_loss, exp_tckd, exp_nckd, parts = ref_dkd(
        np.asarray(zs_ref).tolist(), np.asarray(zt_ref).tolist(), y.tolist(), alpha, beta, t)
    e_t, e_n = dkd_bounds(zs_ref, zt_ref, parts, t, standardized_from=raw)
    np.testing.assert_allclose(float(metrics['tckd']), exp_tckd, rtol=0, atol=e_t,
                               err_msg=name)
    np.testing.assert_allclose(float(metrics['nckd']), exp_nckd, rtol=0, atol=e_n,
                               err_msg=name)
    # The loss: T^2 (alpha TCKD + beta NCKD), plus the roundings of that combination.
    np.testing.assert_allclose(
        float(loss), exp_loss, rtol=0,
        atol=t * t * (alpha * e_t + beta * e_n) + 6 * U32 * t * t * (
            alpha * exp_tckd + beta * exp_nckd), err_msg=name)
    # KL divergences are >= 0.
    assert float(metrics['tckd']) >= -e_t and float(metrics['nckd']) >= -e_n

  # Student == teacher: the same float32 operations on both sides, so exactly 0.
  for name in ('same', 'same_ls'):
    assert all(float(v) == 0.0 for v in out[name][1].values()), name

  # The paper's decomposition (its Eq. 1): KL(p_T || p_S) = TCKD + (1 - p_y^T) NCKD,
  # per example, with the non-target mass of the teacher from the float64 reference.
  per, kd = out['per_example'], out['kd_per_example']
  for i in range(b):
    _, _, _, parts = ref_dkd([zs[i].tolist()], [zt[i].tolist()], [int(y[i])], 1, 1, t)
    e_t, e_n = dkd_bounds(zs[i:i + 1], zt[i:i + 1], parts, t)
    e_kd, _ = kd_kl_bound(zs[i:i + 1], zt[i:i + 1], t)
    b_nt = parts[0][0][1]
    np.testing.assert_allclose(
        float(kd['kl'][i]), float(per['tckd'][i]) + b_nt * float(per['nckd'][i]),
        rtol=0, atol=e_kd + e_t + e_n)


@pytest.mark.parametrize('warmup', [20, 5, 1])
def test_dkd_warmup_is_the_references_weight_of_epoch_e_plus_1(warmup):
  # mdistiller: min(epoch / WARMUP, 1.0) with its epochs counted 1, 2, ...
  epochs = np.arange(0, 40)
  ref = np.array([min((e + 1) / warmup, 1.0) for e in epochs], np.float32)
  eager = np.array([float(losses.dkd_warmup(int(e), warmup)) for e in epochs])
  jitted = np.asarray(jax.vmap(jax.jit(lambda e: losses.dkd_warmup(e, warmup)))(
      jnp.asarray(epochs)))
  for vals in (eager, jitted):
    np.testing.assert_allclose(vals, ref, rtol=2 * U32, atol=0)
  assert losses.dkd_warmup(0, warmup).dtype == jnp.float32
  if warmup == 20:  # the CIFAR-100 default: 1/20 in our epoch 0, 1 from epoch 19 on
    assert float(losses.dkd_warmup(0)) == np.float32(0.05)
    assert float(losses.dkd_warmup(9)) == 0.5
    assert float(losses.dkd_warmup(18)) < 1.0 == float(losses.dkd_warmup(19))


def test_dkd_warmup_rejects_non_positive_warmup():
  for bad in (0, -3):
    with pytest.raises(ValueError, match='warmup_epochs must be > 0'):
      losses.dkd_warmup(0, bad)


# ----------------------------------------------------------------------------
# DIST
# ----------------------------------------------------------------------------


@_jit
def _dist_all(zs, zt, beta, gamma, tau, shift):
  return {
      'dist': losses.dist(zs, zt, beta, gamma, tau),
      'swapped': losses.dist(zt, zs, beta, gamma, tau),
      'shifted': losses.dist(zs + shift, zt - shift, beta, gamma, tau),
      'same': losses.dist(zs, zs, beta, gamma, tau),
  }


@SETTINGS
@given(b=batch_st, c=classes_st, lim=lim_st, tau=temp_st, seed=seed_st,
       beta=weight_st(2.0), gamma=weight_st(2.0))
def test_dist_matches_numpy_and_properties(b, c, lim, tau, seed, beta, gamma):
  rng = np.random.default_rng(seed)
  zs, zt = draw(rng, b, c, lim), draw(rng, b, c, lim)
  shift = rng.uniform(-20.0, 20.0, (b, 1)).astype(np.float32)
  out = _dist_all(zs, zt, beta, gamma, tau, shift)
  loss, metrics = out['dist']
  assert_f32_scalar_metrics(loss, metrics, {'loss', 'inter', 'intra'})
  exp_loss, exp_inter, exp_intra, ps, pt = ref_dist(zs, zt, beta, gamma, tau)
  e_inter, e_intra = dist_bounds(zs, zt, ps, pt, tau)
  np.testing.assert_allclose(float(metrics['inter']), exp_inter, rtol=0, atol=e_inter)
  np.testing.assert_allclose(float(metrics['intra']), exp_intra, rtol=0, atol=e_intra)
  np.testing.assert_allclose(
      float(loss), exp_loss, rtol=0,
      atol=tau * tau * (beta * e_inter + gamma * e_intra) + 6 * U32 * abs(exp_loss))
  # 1 - Pearson lies in [0, 2] (|cosine| <= 1, eps only shrinks it).
  for k, e in (('inter', e_inter), ('intra', e_intra)):
    assert -e <= float(metrics[k]) <= 2 + e
  # Pearson is symmetric, and computed symmetrically: swapping gives the same bits.
  chex.assert_trees_all_equal(out['swapped'], out['dist'])
  # A batch of one has nothing to correlate over the batch: intra is exactly 1.
  if b == 1:
    assert float(metrics['intra']) == 1.0
  # Softmax ignores a per-example shift of the logits.
  ex_shift, _, _, ps2, pt2 = ref_dist(zs + shift, zt - shift, beta, gamma, tau)
  e2_inter, e2_intra = dist_bounds(zs + shift, zt - shift, ps2, pt2, tau)
  np.testing.assert_allclose(
      float(out['shifted'][0]), float(loss), rtol=0,
      atol=tau * tau * (beta * (e_inter + e2_inter) + gamma * (e_intra + e2_intra))
      + 12 * U32 * abs(exp_loss) + abs(ex_shift - exp_loss))
  # Student == teacher: each correlation is |a|^2 / (|a|^2 + eps), so 1 - Pearson is
  # eps / (|a|^2 + eps) per row or column (0 but for eps), up to the rounding bound.
  _, same_inter, same_intra, ps_same, _ = ref_dist(zs, zs, beta, gamma, tau)
  e_same = dist_bounds(zs, zs, ps_same, ps_same, tau)
  same = out['same'][1]
  np.testing.assert_allclose(float(same['inter']), same_inter, rtol=0, atol=e_same[0])
  np.testing.assert_allclose(float(same['intra']), same_intra, rtol=0, atol=e_same[1])
  centred = np.asarray(ps_same) - np.mean(ps_same, axis=1, keepdims=True)
  sq = np.sum(centred**2, axis=1)
  assert same_inter == pytest.approx(np.mean(EPS_PEARSON / (sq + EPS_PEARSON)), abs=1e-12)


# ----------------------------------------------------------------------------
# Every loss: errors, gradients at extreme logits, the teacher, bfloat16, jit.
# ----------------------------------------------------------------------------

LOSSES = {
    'kd_ls': lambda s, t, y: losses.kd_logits(s, t, y, 1.0, 2.0, standardize=True),
    'dkd': lambda s, t, y: losses.dkd(s, t, y),
    'dkd_ls': lambda s, t, y: losses.dkd(s, t, y, 9.0, 72.0, 2.0, standardize=True),
    'dist': lambda s, t, y: losses.dist(s, t, 2.0, 2.0, 4.0),
    'dist_t1': lambda s, t, y: losses.dist(s, t),
}


def _extreme_logits():
  """[B=4, C=5] student / teacher pairs at the float32 edge of sane logits."""
  big = 1e4
  one_hot = np.full((4, 5), -big, np.float32)
  one_hot[np.arange(4), [0, 1, 2, 0]] = big  # teacher certain; labels 0, 1, 2, 3
  alternating = np.tile(np.float32([big, -big, big, -big, 0.0]), (4, 1))
  return {
      'one_hot_teacher': (alternating, one_hot),
      'student_certain_wrong': (-one_hot, one_hot),
      'constant_rows': (np.full((4, 5), 3.0, np.float32), np.zeros((4, 5), np.float32)),
      'huge_vs_zero': (np.full((4, 5), big, np.float32) * np.float32([1, 0, 0, 0, -1]),
                       np.zeros((4, 5), np.float32)),
  }


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_gradients_finite_and_teacher_gets_none(name):
  fn = LOSSES[name]
  y = np.array([0, 1, 2, 3], np.int32)
  grad = _jit(jax.value_and_grad(lambda s, t: fn(s, t, y)[0], argnums=(0, 1)))
  for case, (zs, zt) in _extreme_logits().items():
    value, (g_s, g_t) = grad(zs, zt)
    assert np.isfinite(float(value)), (name, case)
    assert np.all(np.isfinite(np.asarray(g_s))), (name, case)
    np.testing.assert_array_equal(np.asarray(g_t), 0.0, err_msg=f'{name} {case}')
  # On ordinary logits the student does get a gradient.
  rng = np.random.default_rng(1)
  _, (g_s, g_t) = grad(draw(rng, 4, 5, 3.0), draw(rng, 4, 5, 3.0))
  assert np.abs(np.asarray(g_s)).sum() > 0
  np.testing.assert_array_equal(np.asarray(g_t), 0.0)


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_bfloat16_inputs_give_the_float32_result(name):
  fn = _jit(LOSSES[name])
  rng = np.random.default_rng(11)
  zs, zt = draw(rng, 8, 10, 5.0), draw(rng, 8, 10, 5.0)
  y = rng.integers(0, 10, 8).astype(np.int32)
  bf = lambda x: jnp.asarray(x, jnp.bfloat16)
  loss, metrics = fn(bf(zs), bf(zt), y)
  for v in metrics.values():
    assert v.dtype == jnp.float32
  # The upcast is exact, so the float32 run on the bf16-rounded values is the same
  # computation: equal up to XLA fusing the convert differently (a few roundings).
  rounded = lambda x: np.asarray(bf(x), np.float32)
  chex.assert_trees_all_close(fn(rounded(zs), rounded(zt), y), (loss, metrics),
                              rtol=16 * U32, atol=16 * U32)


def test_new_losses_reject_a_single_class():
  z = np.zeros((4, 1), np.float32)
  y = np.zeros((4,), np.int32)
  for call in (lambda: losses.logit_standardize(z), lambda: losses.dkd(z, z, y),
               lambda: losses.dist(z, z),
               lambda: losses.kd_logits(z, z, y, standardize=True)):
    with pytest.raises(ValueError, match='C >= 2'):
      call()


class VariantsTest(chex.TestCase):
  """Un-jitted and jitted calls agree with the float64 references."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_against_references(self):
    rng = np.random.default_rng(7)
    zs, zt = draw(rng, 6, 5, 4.0), draw(rng, 6, 5, 4.0)
    y = rng.integers(0, 5, 6).astype(np.int32)
    dkd = self.variant(lambda s, t, yy: losses.dkd(s, t, yy, 1.0, 8.0, 4.0))
    dist = self.variant(lambda s, t: losses.dist(s, t, 1.0, 1.0, 4.0))
    exp_dkd, _, _, parts = ref_dkd(zs.tolist(), zt.tolist(), y.tolist(), 1.0, 8.0, 4.0)
    e_t, e_n = dkd_bounds(zs, zt, parts, 4.0)
    np.testing.assert_allclose(float(dkd(zs, zt, y)[0]), exp_dkd, rtol=0,
                               atol=16 * (e_t + 8 * e_n) + 6 * U32 * exp_dkd)
    exp_dist, _, _, ps, pt = ref_dist(zs, zt, 1.0, 1.0, 4.0)
    e_inter, e_intra = dist_bounds(zs, zt, ps, pt, 4.0)
    np.testing.assert_allclose(float(dist(zs, zt)[0]), exp_dist, rtol=0,
                               atol=16 * (e_inter + e_intra) + 6 * U32 * exp_dist)
