"""The logit losses' references (tests/test_logit_losses.py, tests/test_dist_groups.py):
the papers' formulas transcribed loop by loop in float64, the float32 error bounds of the
code under test, and the hypothesis strategies that draw their inputs."""

import math

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

SETTINGS = settings(deadline=None, max_examples=15)

batch_st = st.integers(1, 8)
classes_st = st.integers(2, 20)
seed_st = st.integers(0, 2**31 - 1)
lim_st = st.floats(0.5, 30.0)  # logits uniform in [-lim, lim]
temp_st = st.floats(0.5, 10.0)


def weight_st(hi):
  """0, or a weight in [1e-3, hi]: tinier ones make float32 products underflow."""
  return st.one_of(st.just(0.0), st.floats(1e-3, hi))


EPS_LS = 1e-7  # logit_standardize's eps (the reference's)
EPS_PEARSON = 1e-8  # DIST's eps (the reference's)

# ----------------------------------------------------------------------------
# The papers' formulas, transcribed loop by loop in float64.
# ----------------------------------------------------------------------------


def ref_softmax(row):
  m = max(row)
  e = [math.exp(v - m) for v in row]
  s = math.fsum(e)
  return [v / s for v in e]


def ref_kl(p, q):
  """KL(p || q) = sum_k p_k log(p_k / q_k) (0 log 0 = 0)."""
  return math.fsum(pk * math.log(pk / qk) for pk, qk in zip(p, q) if pk > 0)


def ref_standardize(z):
  """Sun et al.'s z-score per example, with the reference's sample std and eps."""
  out = []
  for row in np.asarray(z, np.float64).tolist():
    c = len(row)
    mean = math.fsum(row) / c
    std = math.sqrt(math.fsum((v - mean)**2 for v in row) / (c - 1))
    out.append([(v - mean) / (std + EPS_LS) for v in row])
  return out


def ref_kd_kl(zs, zt, t):
  """Batch mean of KL(softmax(z_T / t) || softmax(z_S / t))."""
  kls = [ref_kl(ref_softmax([v / t for v in rt]), ref_softmax([v / t for v in rs]))
         for rs, rt in zip(zs, zt)]
  return math.fsum(kls) / len(kls)


def ref_dkd(zs, zt, labels, alpha, beta, t):
  """Zhao et al.: T^2 (alpha TCKD + beta NCKD). Returns (loss, tckd, nckd, parts):
  ``parts[i] = (b_T, log b_T, log b_S, q_T, log q_T, log q_S)`` for the error bounds."""
  tckd, nckd, parts = [], [], []
  for rs, rt, y in zip(zs, zt, labels):
    ps, pt = ref_softmax([v / t for v in rs]), ref_softmax([v / t for v in rt])
    others = [j for j in range(len(rs)) if j != y]
    # b: (target, non-target); the non-target mass is summed, not 1 - p_y.
    bs = [ps[y], math.fsum(ps[j] for j in others)]
    bt = [pt[y], math.fsum(pt[j] for j in others)]
    # q: the softmax over the non-target classes only (the paper's p-hat).
    qs = ref_softmax([rs[j] / t for j in others])
    qt = ref_softmax([rt[j] / t for j in others])
    tckd.append(ref_kl(bt, bs))
    nckd.append(ref_kl(qt, qs))
    # mdistiller's mask (subtract 1000 from the target's z/T) gives the same NCKD.
    mt = ref_softmax([v / t - (1000.0 if j == y else 0.0) for j, v in enumerate(rt)])
    ms = ref_softmax([v / t - (1000.0 if j == y else 0.0) for j, v in enumerate(rs)])
    assert abs(ref_kl(mt, ms) - nckd[-1]) <= 1e-12 * (1 + nckd[-1])
    logs = lambda p: [math.log(v) for v in p]
    parts.append((bt, logs(bt), logs(bs), qt, logs(qt), logs(qs)))
  tckd_m, nckd_m = math.fsum(tckd) / len(tckd), math.fsum(nckd) / len(nckd)
  return t * t * (alpha * tckd_m + beta * nckd_m), tckd_m, nckd_m, parts


def ref_pearson(a, b):
  """DIST's Pearson correlation: cosine of the centred vectors, with its eps."""
  ma, mb = math.fsum(a) / len(a), math.fsum(b) / len(b)
  ac, bc = [v - ma for v in a], [v - mb for v in b]
  num = math.fsum(x * y for x, y in zip(ac, bc))
  na = math.sqrt(math.fsum(x * x for x in ac))
  nb = math.sqrt(math.fsum(y * y for y in bc))
  return num / (na * nb + EPS_PEARSON)


def ref_dist(zs, zt, beta, gamma, tau):
  """Huang et al.: tau^2 (beta inter + gamma intra). Returns (loss, inter, intra, ps, pt)."""
  ps = [ref_softmax([v / tau for v in r]) for r in np.asarray(zs, np.float64).tolist()]
  pt = [ref_softmax([v / tau for v in r]) for r in np.asarray(zt, np.float64).tolist()]
  b, c = len(ps), len(ps[0])
  inter = 1 - math.fsum(ref_pearson(ps[i], pt[i]) for i in range(b)) / b
  intra = 1 - math.fsum(
      ref_pearson([ps[i][k] for i in range(b)], [pt[i][k] for i in range(b)])
      for k in range(c)) / c
  return tau * tau * (beta * inter + gamma * intra), inter, intra, ps, pt


# ----------------------------------------------------------------------------
# Float32 error bounds (the code computes in float32, the references in float64).
#
# u = 2^-24 is float32's unit roundoff; every bound is first order in u, with OPS a few
# elementwise roundings per value, and n the longest sum (whose rounding adds n u times
# the sum of the magnitudes of its terms). A wrong formula misses by orders of magnitude.
#
# KL-type terms (KD, TCKD, NCKD), z in [-M, M] at temperature t, L = 1 + M/t + log C.
#   Each log-probability is a difference of log-sum-exps (shifted by their max) of at
#   most C terms: error e <= 2 (C + OPS) u L. A term p_T (log p_T - log p_S) then errs by
#   p_T |d| (e + 3u) + 2 e p_T (d = log p_T - log p_S; p_T = exp(log p_T) has relative
#   error e + u); the sums over classes and the batch add (C + B) u sum p_T |d|. With
#   S = mean_i sum_k p_T |d| <= mean_i sum_k p_T (|log p_T| + |log p_S|):
#     err(KL) <= (C + B + OPS) u [S (2L + 1) + 4L].
# Logits perturbed by dz (infinity norm) before the softmax at t (here: the float32
#   error of the standardisation) move a KL by at most (2 / t) (dz_S + S dz_T): the
#   gradient of KL(p_T || p_S) has l1 norm <= 2 / t in z_S and <= 2 S / t in z_T; the
#   same holds for TCKD and NCKD (each a KL of a coarser or restricted softmax).
# Standardisation (z - m) / (s + eps) of a row with max |z| = M, sample std s:
#   the centring errs by (C + 3) u M, s by sqrt(2) (C + 3) u M + (C + OPS) u s, so with
#   kappa = M / (s + eps) (the condition number) and |z_std| <= sqrt(C):
#     err(z_std) <= (C + OPS) u (kappa + 1) (1 + 3 sqrt(C)).
# Pearson (DIST) of probability vectors a, b of length n (softmax at tau of logits with
#   max |z| = M: each p relative error r = (3 M / tau + C + OPS) u): the centred vector
#   errs by |da| <= (2 r + (n + 2) u) |p|; the cosine with eps moves by at most
#   2 min(1 / (|a_c| - |da|), (|b_c| + |db|) / eps) |da| (its gradient in a is bounded by
#   2 |b_c| / (|a_c| |b_c| + eps)), likewise in b, plus (2n + 8) u for its own sums.
# ----------------------------------------------------------------------------

U32 = 2.0**-24
OPS = 8


def kl_bound(p_t, log_p_t, log_p_s, big, n_terms):
  """err(KL) for one batch; p_t, log_p_* are per-example lists (the float64 values)."""
  s = np.mean([math.fsum(p * (abs(lt) + abs(ls)) for p, lt, ls in zip(pr, ltr, lsr))
               for pr, ltr, lsr in zip(p_t, log_p_t, log_p_s)])
  lvl = 1 + big
  return (n_terms + OPS) * U32 * (s * (2 * lvl + 1) + 4 * lvl), s


def kd_kl_bound(zs, zt, t):
  zs, zt = np.asarray(zs, np.float64), np.asarray(zt, np.float64)
  b, c = zs.shape
  pt = [ref_softmax(list(r / t)) for r in zt]
  log = lambda rows: [[math.log(v) for v in r] for r in rows]
  big = max(np.abs(zs).max(), np.abs(zt).max()) / t + math.log(c)
  return kl_bound(pt, log(pt), log([ref_softmax(list(r / t)) for r in zs]), big, c + b)


def standardize_bound(z):
  """Per-example bound on the float32 error of logit_standardize (see above)."""
  z = np.asarray(z, np.float64)
  c = z.shape[-1]
  kappa = np.abs(z).max(-1) / (z.std(-1, ddof=1) + EPS_LS)
  return (c + OPS) * U32 * (kappa + 1) * (1 + 3 * math.sqrt(c))


def dkd_bounds(zs, zt, parts, t, standardized_from=None):
  """Bounds on TCKD and NCKD; with ``standardized_from=(zs_raw, zt_raw)`` the logits
  are the float64 standardised ones, and the standardisation's error is propagated."""
  b, c = np.shape(zs)
  big = max(np.abs(zs).max(), np.abs(zt).max()) / t + math.log(c)
  e_t, s_t = kl_bound([p[0] for p in parts], [p[1] for p in parts],
                      [p[2] for p in parts], big, c + b)
  e_n, s_n = kl_bound([p[3] for p in parts], [p[4] for p in parts],
                      [p[5] for p in parts], big, c + b)
  if standardized_from is not None:
    dz_s, dz_t = (standardize_bound(z).max() for z in standardized_from)
    e_t += 2 / t * (dz_s + s_t * dz_t)
    e_n += 2 / t * (dz_s + s_n * dz_t)
  return e_t, e_n


def pearson_bound(a, b, r_a, r_b):
  a, b = np.asarray(a), np.asarray(b)
  n = len(a)
  norm = lambda v: float(np.linalg.norm(v - v.mean()))
  da = (2 * r_a + (n + 2) * U32) * float(np.linalg.norm(a))
  db = (2 * r_b + (n + 2) * U32) * float(np.linalg.norm(b))
  na, nb = norm(a), norm(b)
  inv = lambda x, dx: 1 / (x - dx) if x > dx else math.inf
  lip_a = 2 * min(inv(na, da), (nb + db) / EPS_PEARSON)
  lip_b = 2 * min(inv(nb, db), (na + da) / EPS_PEARSON)
  return (2 * n + 8) * U32 + lip_a * da + lip_b * db


def dist_bounds(zs, zt, ps, pt, tau):
  b, c = np.shape(zs)
  r_s = (3 * np.abs(zs).max() / tau + c + OPS) * U32
  r_t = (3 * np.abs(zt).max() / tau + c + OPS) * U32
  ps, pt = np.asarray(ps), np.asarray(pt)
  e_inter = np.mean([pearson_bound(ps[i], pt[i], r_s, r_t) for i in range(b)])
  e_intra = np.mean([pearson_bound(ps[:, k], pt[:, k], r_s, r_t) for k in range(c)])
  return e_inter + (b + 2) * U32, e_intra + (c + 2) * U32


def draw(rng, b, c, lim):
  return rng.uniform(-lim, lim, (b, c)).astype(np.float32)
