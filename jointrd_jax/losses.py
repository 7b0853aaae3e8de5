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

Teacher logits/features are wrapped in ``jax.lax.stop_gradient``.
"""

from __future__ import annotations

import math
from typing import Sequence

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


def kd_logits(student_logits: Array,
              teacher_logits: Array,
              labels: Array,
              tau: float = 0.9,
              temperature: float = 4.0) -> tuple[Array, Metrics]:
  """Hinton KD: ``(1 - tau) CE(z_S, y) + tau t^2 KL(p_T^t || p_S^t)``.

  Metrics: ``'loss'``, ``'ce'`` and ``'kl'`` (the un-weighted KL at
  temperature ``t``, summed over classes, averaged over the batch).
  """
  s = _f32(student_logits)
  t_logits = jax.lax.stop_gradient(_f32(teacher_logits))
  t = jnp.asarray(temperature, jnp.float32)
  tau = jnp.asarray(tau, jnp.float32)
  ce = _ce(s, labels)
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
