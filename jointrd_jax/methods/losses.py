"""Pure, jittable loss functions for JointRD and its KD baselines.

Every function upcasts its floating inputs to float32 (so bfloat16 activations
are fine), and returns ``(loss, metrics)`` where ``metrics`` maps each term,
and the total under ``'loss'``, to a float32 scalar. ``labels`` are integer
class ids of shape [B]; ``CE(z, y)`` is the batch mean of the softmax
cross-entropy.

* ``cross_entropy``:   ``L = CE(z, y)``.
* ``kd_logits`` (Hinton KD):
  ``L = (1 - tau) CE(z_S, y) + tau t^2 KL(softmax(z_T/t) || softmax(z_S/t))``,
  KL summed over classes and averaged over the batch.
* ``feature_mse_all``: ``L = sum_k sum_{h,w,c} (s_k - t_k)^2 / B`` (un-weighted;
  the caller multiplies by ``alpha``).
* ``jointrd_weight``:  ``m(e) = dc + (1 - dc) (1 + cos(pi min(e, E) / E)) / 2``.
* ``jointrd``:         ``L = 1/(K+1) [m sum_k CE(z_Hk, y) + CE(z_S, y)]``,
  i.e. the reference's fixed ``1/4`` for its ``K = 3`` hybrid heads.
* ``logit_standardize``: ``(z - mean(z)) / (std(z) + eps)`` per example (an
  option of ``kd_logits`` and ``dkd``: ``standardize=True``).
* ``dkd`` (DKD):       ``L = T^2 (alpha TCKD + beta NCKD)``; ``dkd_warmup`` its
  linear warm-up weight.
* ``dist`` (DIST):     ``L = tau^2 (beta (1 - rho_inter) + gamma (1 - rho_intra))``
  with Pearson correlations of the softmaxes over classes and over the batch.

Teacher logits/features are wrapped in ``jax.lax.stop_gradient``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import optax

Array = jax.Array
Metrics = dict[str, Array]


def _f32(x) -> Array:
  return jnp.asarray(x).astype(jnp.float32)


def _ce(logits: Array, labels: Array) -> Array:
  """Batch-mean softmax cross-entropy in float32."""
  labels = jnp.asarray(labels).astype(jnp.int32)
  return jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(_f32(logits), labels))


def cross_entropy(logits: Array, labels: Array) -> tuple[Array, Metrics]:
  """``CE(z, y)``; logits [B, C], labels [B]."""
  ce = _ce(logits, labels)
  return ce, {'loss': ce, 'ce': ce}


def _num_classes(logits: Array, name: str) -> int:
  """The class count of ``[..., C]`` logits; a ``ValueError`` unless C >= 2."""
  shape = jnp.shape(logits)
  if len(shape) < 1 or shape[-1] < 2:
    raise ValueError(f'{name} needs logits [..., C] with C >= 2 classes, '
                     f'got shape {shape}.')
  return shape[-1]


def _safe_sqrt(x: Array) -> Array:
  """``sqrt(x)`` for ``x >= 0``, with gradient 0 (not inf or NaN) at ``x == 0``."""
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def logit_standardize(logits: Array, eps: float = 1e-7) -> Array:
  """Per-example z-score over the class axis: ``(z - mean(z)) / (std(z) + eps)``.

  As the reference code of Sun et al. (CVPR 2024), ``std`` is the sample
  standard deviation (Bessel's correction, ``1 / (C - 1)``: ``torch.std``'s
  default) and ``eps = 1e-7`` is added to it. Float32 out; the gradient stays
  finite for constant logits (``std = 0``).
  """
  num_classes = _num_classes(logits, 'logit_standardize')
  z = _f32(logits)
  centred = z - jnp.mean(z, axis=-1, keepdims=True)
  var = jnp.sum(jnp.square(centred), axis=-1, keepdims=True) / (num_classes - 1)
  return centred / (_safe_sqrt(var) + jnp.float32(eps))


def kd_logits(student_logits: Array,
              teacher_logits: Array,
              labels: Array,
              tau: float = 0.9,
              temperature: float = 4.0,
              standardize: bool = False) -> tuple[Array, Metrics]:
  """Hinton KD: ``(1 - tau) CE(z_S, y) + tau t^2 KL(p_T^t || p_S^t)``.

  With ``standardize=True`` (logit standardisation, Sun et al., CVPR 2024) the
  KL's logits are z-scored first, ``p^t = softmax(logit_standardize(z) / t)``,
  and ``t`` is the paper's base temperature; CE stays on the raw logits.
  Metrics: ``'loss'``, ``'ce'`` and ``'kl'`` (the un-weighted KL at
  temperature ``t``, summed over classes, averaged over the batch).
  """
  s = _f32(student_logits)
  t_logits = jax.lax.stop_gradient(_f32(teacher_logits))
  t = jnp.asarray(temperature, jnp.float32)
  tau = jnp.asarray(tau, jnp.float32)
  ce = _ce(s, labels)
  if standardize:
    s, t_logits = logit_standardize(s), logit_standardize(t_logits)
  log_p_s = jax.nn.log_softmax(s / t, axis=-1)
  log_p_t = jax.nn.log_softmax(t_logits / t, axis=-1)
  kl = jnp.mean(jnp.sum(jnp.exp(log_p_t) * (log_p_t - log_p_s), axis=-1))
  loss = (1.0 - tau) * ce + tau * t * t * kl
  return loss, {'loss': loss, 'ce': ce, 'kl': kl}


def feature_mse_all(student_feats: Sequence[Array],
                    teacher_feats: Sequence[Array]) -> tuple[Array, Metrics]:
  """``sum_k sum_{h,w,c} (s_k - t_k)^2 / B`` over the K >= 1 stages.

  Un-weighted (the caller multiplies by ``alpha``). Metrics: ``'loss'`` and
  ``'mse_stage{k}'`` for k = 1..K (each summed per example, batch-averaged).
  """
  student_feats = list(student_feats)
  teacher_feats = list(teacher_feats)
  if not student_feats:
    raise ValueError('feature_mse_all needs at least one feature stage, got 0.')
  if len(student_feats) != len(teacher_feats):
    raise ValueError(
        f'feature_mse_all: got {len(student_feats)} student stages but '
        f'{len(teacher_feats)} teacher stages; they must match.')
  metrics: Metrics = {}
  total = jnp.zeros((), jnp.float32)
  for k, (s, t) in enumerate(zip(student_feats, teacher_feats), start=1):
    if jnp.shape(s) != jnp.shape(t):
      raise ValueError(
          f'feature_mse_all: stage {k} student shape {jnp.shape(s)} != '
          f'teacher shape {jnp.shape(t)}.')
    if jnp.ndim(s) < 1:
      raise ValueError(
          f'feature_mse_all: stage {k} features need a leading batch axis, '
          f'got a scalar.')
    s = _f32(s)
    t = jax.lax.stop_gradient(_f32(t))
    sq = jnp.square(s - t).reshape(s.shape[0], -1)
    mse_k = jnp.mean(jnp.sum(sq, axis=-1))
    metrics[f'mse_stage{k}'] = mse_k
    total = total + mse_k
  metrics['loss'] = total
  return total, metrics


def jointrd_weight(epoch, dc: float = 0.5, decay_epochs: float = 60) -> Array:
  """Cosine-decayed hybrid weight ``m(e)``; ``e`` is the 0-based epoch.

  ``m(e) = dc + (1 - dc) (1 + cos(pi e / E)) / 2`` for ``e <= E``, ``dc`` after.
  ``epoch`` may be a Python int or a traced array. Returns a float32 scalar.
  """
  e = jnp.asarray(epoch, jnp.float32)
  big_e = jnp.asarray(decay_epochs, jnp.float32)
  dc = jnp.asarray(dc, jnp.float32)
  frac = jnp.minimum(e, big_e) / big_e
  return dc + (1.0 - dc) * 0.5 * (1.0 + jnp.cos(jnp.float32(math.pi) * frac))


def jointrd(student_logits: Array,
            hybrid_logits: Sequence[Array],
            labels: Array,
            m) -> tuple[Array, Metrics]:
  """``1/(K+1) [m sum_k CE(z_Hk, y) + CE(z_S, y)]``.

  The reference fixes the factor at ``1/4`` for its K = 3 hybrid heads; for
  general K we use ``1/(K+1)``, which equals ``1/4`` when K = 3. Metrics:
  ``'loss'``, ``'ce_student'``, ``'ce_hybrid{k}'`` (k = 1..K) and ``'m'``.
  """
  hybrid_logits = list(hybrid_logits)
  num_hybrid = len(hybrid_logits)
  for k, z_h in enumerate(hybrid_logits, start=1):
    if jnp.shape(z_h) != jnp.shape(student_logits):
      raise ValueError(
          f'jointrd: hybrid_logits[{k - 1}] shape {jnp.shape(z_h)} != '
          f'student_logits shape {jnp.shape(student_logits)}.')
  m = jnp.asarray(m, jnp.float32)
  # One batched CE over [K+1, B, C]: row 0 is the student, rows 1..K hybrids.
  all_logits = jnp.stack([_f32(student_logits)] +
                         [_f32(z_h) for z_h in hybrid_logits])
  labels = jnp.broadcast_to(
      jnp.asarray(labels).astype(jnp.int32), all_logits.shape[:-1])
  ces = jnp.mean(
      optax.softmax_cross_entropy_with_integer_labels(all_logits, labels),
      axis=-1)
  ce_s = ces[0]
  metrics: Metrics = {'ce_student': ce_s}
  for k in range(1, num_hybrid + 1):
    metrics[f'ce_hybrid{k}'] = ces[k]
  loss = (m * jnp.sum(ces[1:]) + ce_s) / jnp.float32(num_hybrid + 1)
  metrics['loss'] = loss
  metrics['m'] = m
  return loss, metrics


def dkd_warmup(epoch, warmup_epochs: float = 20) -> Array:
  """DKD's linear warm-up of its distillation weight; ``epoch`` is 0-based.

  The reference (mdistiller) counts epochs from 1 and weights its DKD loss by
  ``min(epoch / warmup, 1)``; our 0-based epoch ``e`` is its epoch ``e + 1``,
  so ``w(e) = min((e + 1) / warmup_epochs, 1)``: 1/20 in the first epoch, 1
  from the 20th (e = 19) on. ``warmup_epochs = 1`` means no warm-up.
  ``epoch`` may be traced. Returns a float32 scalar.
  """
  if not warmup_epochs > 0:
    raise ValueError(
        f'dkd_warmup: warmup_epochs must be > 0 (1 for no warm-up), got '
        f'{warmup_epochs}.')
  e = jnp.asarray(epoch, jnp.float32)
  return jnp.minimum((e + 1.0) / jnp.float32(warmup_epochs), 1.0)


def _dkd_log_probs(z: Array, target: Array) -> tuple[Array, Array]:
  """Log-probabilities of DKD's two distributions of one tensor of logits.

  ``log_b`` [B, 2]: the binary (target, all non-target) distribution;
  ``log_q`` [B, C]: softmax over the non-target classes, 0 at the target
  (where the probability is exactly 0). Both in log space from log-sum-exps,
  so no ``log(0)``, and no ``-1000`` mask that extreme logits could defeat.
  """
  lse = jax.nn.logsumexp(z, axis=-1)
  lse_other = jax.nn.logsumexp(jnp.where(target, -jnp.inf, z), axis=-1)
  z_target = jnp.sum(jnp.where(target, z, 0.0), axis=-1)
  log_b = jnp.stack([z_target - lse, lse_other - lse], axis=-1)
  log_q = jnp.where(target, 0.0, z - lse_other[:, None])
  return log_b, log_q


def dkd(student_logits: Array,
        teacher_logits: Array,
        labels: Array,
        alpha: float = 1.0,
        beta: float = 8.0,
        temperature: float = 4.0,
        standardize: bool = False) -> tuple[Array, Metrics]:
  """Decoupled KD (Zhao et al., CVPR 2022): ``T^2 (alpha TCKD + beta NCKD)``.

  At temperature ``T`` (on ``logit_standardize``d logits if ``standardize``):
  ``TCKD = KL(b_T || b_S)`` with ``b = (p_y, 1 - p_y)`` the target / non-target
  probabilities, and ``NCKD = KL(q_T || q_S)`` with ``q`` the softmax over the
  non-target classes; each summed per example and averaged over the batch.
  Only the distillation part: the reference's total is
  ``CE_WEIGHT CE + dkd_warmup(e) * dkd(...)``, its CE and warm-up are the
  caller's. Metrics: ``'loss'``, ``'tckd'`` and ``'nckd'`` (the plain KLs,
  without ``T^2``, ``alpha`` or ``beta``).
  """
  num_classes = _num_classes(student_logits, 'dkd')
  s = _f32(student_logits)
  t_logits = jax.lax.stop_gradient(_f32(teacher_logits))
  if standardize:
    s, t_logits = logit_standardize(s), logit_standardize(t_logits)
  t = jnp.asarray(temperature, jnp.float32)
  target = jax.nn.one_hot(
      jnp.asarray(labels).astype(jnp.int32), num_classes, dtype=jnp.bool_)
  log_b_s, log_q_s = _dkd_log_probs(s / t, target)
  log_b_t, log_q_t = _dkd_log_probs(t_logits / t, target)
  tckd = jnp.mean(jnp.sum(jnp.exp(log_b_t) * (log_b_t - log_b_s), axis=-1))
  q_t = jnp.where(target, 0.0, jnp.exp(log_q_t))
  nckd = jnp.mean(jnp.sum(q_t * (log_q_t - log_q_s), axis=-1))
  loss = t * t * (jnp.asarray(alpha, jnp.float32) * tckd +
                  jnp.asarray(beta, jnp.float32) * nckd)
  return loss, {'loss': loss, 'tckd': tckd, 'nckd': nckd}


def _pearson(a: Array, b: Array, axis: int, eps: float = 1e-8) -> Array:
  """DIST's Pearson correlation along ``axis``: the cosine of the centred
  vectors, ``<a_c, b_c> / (|a_c| |b_c| + eps)`` (the reference's eps)."""
  a = a - jnp.mean(a, axis=axis, keepdims=True)
  b = b - jnp.mean(b, axis=axis, keepdims=True)
  norm_a = _safe_sqrt(jnp.sum(jnp.square(a), axis=axis))
  norm_b = _safe_sqrt(jnp.sum(jnp.square(b), axis=axis))
  return jnp.sum(a * b, axis=axis) / (norm_a * norm_b + jnp.float32(eps))


def dist(student_logits: Array,
         teacher_logits: Array,
         beta: float = 1.0,
         gamma: float = 1.0,
         tau: float = 1.0,
         intra_group: Optional[int] = None) -> tuple[Array, Metrics]:
  """DIST (Huang et al., NeurIPS 2022): ``tau^2 (beta inter + gamma intra)``.

  With ``P = softmax(z / tau)`` [B, C] for student and teacher:
  ``inter = 1 - mean_i pearson(P_S[i, :], P_T[i, :])`` (over classes, per
  example) and ``intra = 1 - mean_c pearson(P_S[:, c], P_T[:, c])`` (over the
  batch, per class). A batch of one has ``intra = 1`` (no variation to
  correlate), as in the reference. With ``intra_group`` g smaller than the
  batch B, ``intra`` is the mean over the B / g contiguous groups of g images
  of each group's term (the reference computes it per process: its per-GPU
  batch); g must divide B. None, or g >= B: one group, the whole batch.
  Metrics: ``'loss'``, ``'inter'`` and ``'intra'`` (without ``tau^2``,
  ``beta`` or ``gamma``).
  """
  _num_classes(student_logits, 'dist')
  tau = jnp.asarray(tau, jnp.float32)
  p_s = jax.nn.softmax(_f32(student_logits) / tau, axis=-1)
  p_t = jax.nn.softmax(
      jax.lax.stop_gradient(_f32(teacher_logits)) / tau, axis=-1)
  inter = 1.0 - jnp.mean(_pearson(p_s, p_t, axis=1))
  b, c = p_s.shape
  if intra_group is None or intra_group >= b:
    intra = 1.0 - jnp.mean(_pearson(p_s, p_t, axis=0))
  elif b % intra_group:
    raise ValueError(f'dist: intra_group {intra_group} does not divide the batch {b}.')
  else:
    shape = (b // intra_group, intra_group, c)
    intra = 1.0 - jnp.mean(_pearson(p_s.reshape(shape), p_t.reshape(shape), axis=1))
  loss = tau * tau * (jnp.asarray(beta, jnp.float32) * inter +
                      jnp.asarray(gamma, jnp.float32) * intra)
  return loss, {'loss': loss, 'inter': inter, 'intra': intra}
