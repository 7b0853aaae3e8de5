"""A method as jittable pure functions over explicit variable trees.

- `trainable`: `{'student': params}`, plus `'teacher': params` when the teacher is
  trained jointly (JointRD's `teacher_train='joint'`);
- `other`: `{'batch_stats': {net: stats for each trained net}, 'teacher': frozen
  teacher variables or None}`.

`loss_fn(trainable, other, batch, epoch, rng)` returns `(loss, (metrics, new_batch_stats))`
so that `jax.value_and_grad(loss_fn, has_aux=True)` differentiates the trainable subtree
only (as big_vision's distill trainer does): a frozen teacher gets no gradient and its
batch statistics never change. The step computes only what the method's terms need: no
teacher forward pass for CE-only methods, the hybrid paths only for a term that reads them.
"""
import dataclasses
from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from jointrd_jax import models
from jointrd_jax.methods import losses
from jointrd_jax.methods import presets
from jointrd_jax.methods.terms import Inputs, Weighted, combine

# What an evaluation can report: the student, the teacher, JointRD's hybrid paths.
EVAL_HEADS = ("student", "teacher", "hybrid")


def hybrid_logits(teacher: models.ResNet, teacher_vars, feats):
  """JointRD's hybrid paths, inference-mode teacher: logits of path k = 1..S-1 (S stages:
  4 for the ResNets, 3 or 5 for the zoo's; the examples below are for S = 4).

  Path k feeds the student's stage-k output through the teacher's stages k+1..S and
  head. With the teacher's BN in inference mode every example is independent, so the
  paths are batched stage by stage: stage 2 sees path 1, stage 3 paths 1-2, stage 4 and
  the head paths 1-3 (one large call each instead of six small ones).
  """
  batch, stages = feats[0].shape[0], len(feats)
  h = None
  for k in range(1, stages):  # teacher stage k + 1 (0-based index k)
    x = feats[k - 1] if h is None else jnp.concatenate([h, feats[k - 1].astype(h.dtype)])
    _, (h,) = teacher.apply(teacher_vars, x, train=False, start_stage=k, end_stage=k + 1)
  z, _ = teacher.apply(teacher_vars, h, train=False, start_stage=stages)
  return tuple(z[i * batch:(i + 1) * batch] for i in range(stages - 1))


def _accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  student: models.ResNet
  teacher: Optional[models.ResNet] = None
  teacher_train: str = "frozen"
  terms: Tuple[Weighted, ...] = ()
  num_epochs: Optional[int] = None  # the run's, that resolved the terms' epoch settings

  @property
  def spec(self) -> presets.Preset:
    return presets.METHODS[self.name]

  @property
  def needs(self) -> frozenset:
    """What the step computes besides the student's logits (`terms.NEEDS`)."""
    return frozenset().union(*(w.term.needs for w in self.terms))

  @property
  def uses_hybrids(self) -> bool:
    return "hybrid_logits" in self.needs

  @property
  def trained(self):
    """Names of the networks this method updates."""
    joint = self.teacher is not None and self.teacher_train == "joint"
    return ("student", "teacher") if joint else ("student",)

  @property
  def frozen_teacher(self) -> bool:
    return self.teacher is not None and self.teacher_train == "frozen"

  def _teacher_vars(self, trainable, other):
    if self.frozen_teacher:
      return jax.tree_util.tree_map(jax.lax.stop_gradient, other["teacher"])
    return {"params": jax.lax.stop_gradient(trainable["teacher"]),
            "batch_stats": other["batch_stats"]["teacher"]}

  def loss_fn(self, trainable, other, batch, epoch, rng=None):
    del rng  # no stochastic layers; augmentation happens in the input pipeline
    x, y = batch["image"], batch["label"]
    stats = other["batch_stats"]
    (z_s, feats), new = self.student.apply(
        {"params": trainable["student"], "batch_stats": stats["student"]}, x, train=True,
        mutable=["batch_stats"])
    new_stats = {"student": new["batch_stats"]}
    inputs = {"student_logits": z_s, "labels": y, "student_feats": feats, "epoch": epoch}
    needs = self.needs
    if needs & {"teacher_logits", "teacher_feats"}:
      z_t, t_feats = self.teacher.apply(self._teacher_vars(trainable, other), x, train=False)
      inputs.update(teacher_logits=z_t, teacher_feats=t_feats)
    if "hybrid_logits" in needs:
      inputs["hybrid_logits"] = hybrid_logits(self.teacher, self._teacher_vars(trainable, other),
                                              feats)
    loss, metrics = combine(self.terms, Inputs(**inputs))
    metrics = dict(metrics, accuracy=_accuracy(z_s, y))
    if "teacher" in self.trained:
      # Joint training: the teacher learns from its own CE only (its parameters enter
      # the student's loss under stop_gradient above).
      (z_t, _), t_new = self.teacher.apply(
          {"params": trainable["teacher"], "batch_stats": stats["teacher"]}, x, train=True,
          mutable=["batch_stats"])
      new_stats["teacher"] = t_new["batch_stats"]
      t_ce, _ = losses.cross_entropy(z_t, y)
      metrics = dict(metrics, student_loss=loss, teacher_ce=t_ce,
                     teacher_accuracy=_accuracy(z_t, y))
      loss = loss + t_ce
      metrics["loss"] = loss
    return loss, (metrics, new_stats)

  def eval_logits(self, trainable, other, images, heads=None):
    """Inference-mode logits of `heads` (default: all the method has): `student`, and
    `teacher`, `hybrid` (-> `hybrid1..3`) where they exist."""
    heads = EVAL_HEADS if heads is None else heads
    stats = other["batch_stats"]
    out, feats = {}, None
    if "student" in heads or "hybrid" in heads:
      z_s, feats = self.student.apply(
          {"params": trainable["student"], "batch_stats": stats["student"]}, images,
          train=False)
      if "student" in heads:
        out["student"] = z_s
    if self.teacher is not None:
      t_vars = self._teacher_vars(trainable, other)
      if "teacher" in heads:
        out["teacher"], _ = self.teacher.apply(t_vars, images, train=False)
      if "hybrid" in heads and self.uses_hybrids:
        for k, z in enumerate(hybrid_logits(self.teacher, t_vars, feats), 1):
          out[f"hybrid{k}"] = z
    return out
