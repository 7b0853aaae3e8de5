"""The methods of Table 12: which networks exist, which are trained, which loss is used.

`METHODS` is the one declarative table. `Method` turns an entry into jittable pure
functions over explicit variable trees:

- `trainable`: `{'student': params}`, plus `'teacher': params` when the teacher is
  trained jointly (JointRD's `teacher_train='joint'`);
- `other`: `{'batch_stats': {net: stats for each trained net}, 'teacher': frozen
  teacher variables or None}`.

`loss_fn(trainable, other, batch, epoch, rng)` returns `(loss, (metrics, new_batch_stats))`
so that `jax.value_and_grad(loss_fn, has_aux=True)` differentiates the trainable subtree
only (as big_vision's distill trainer does): a frozen teacher gets no gradient and its
batch statistics never change.
"""
import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from jointrd_jax import losses, models
from jointrd_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class MethodSpec:
  student_shortcuts: str   # shortcut policy of the trained network
  student_dirac: str       # Dirac mode of the trained network
  loss: str                # 'ce' | 'kd_logits' | 'kd_mse_all' | 'jointrd'
  description: str

  @property
  def needs_teacher(self) -> bool:
    return self.loss != "ce"


METHODS = {
    "resnet": MethodSpec("all", "none", "ce",
                         "the ResNet baseline (also how every teacher is trained)"),
    "plain": MethodSpec("projection", "none", "ce", "plain CNN from scratch"),
    "plain_dirac": MethodSpec("projection", "reparam", "ce", "plain CNN + Dirac, from scratch"),
    "kd_logits": MethodSpec("projection", "none", "kd_logits", "Hinton KD from the ResNet teacher"),
    "kd_logits_dirac": MethodSpec("projection", "reparam", "kd_logits", "Hinton KD, Dirac student"),
    "kd_mse_all_dirac": MethodSpec("projection", "reparam", "kd_mse_all",
                                   "CE + MSE on all 4 stage outputs, Dirac student"),
    "jointrd": MethodSpec("projection", "reparam", "jointrd",
                          "Residual Distillation: student stages through the teacher's later stages"),
}
TEACHER_TRAIN = ("frozen", "joint")
# What an evaluation can report: the student, the teacher, JointRD's hybrid paths.
EVAL_HEADS = ("student", "teacher", "hybrid")


def get_spec(name: str) -> MethodSpec:
  if name not in METHODS:
    raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}.")
  return METHODS[name]


@dataclasses.dataclass(frozen=True)
class LossConfig:
  kd_tau: float = 0.9
  kd_temperature: float = 4.0
  mse_alpha: float = 1e-3
  jointrd_dc: float = 0.5
  jointrd_decay_epochs: int = 60


def hybrid_logits(teacher: models.ResNet, teacher_vars, feats):
  """JointRD's hybrid paths, inference-mode teacher: logits of path k = 1..3.

  Path k feeds the student's stage-k output through the teacher's stages k+1..4 and
  head. With the teacher's BN in inference mode every example is independent, so the
  paths are batched stage by stage: stage 2 sees path 1, stage 3 paths 1-2, stage 4 and
  the head paths 1-3 (one large call each instead of six small ones).
  """
  batch = feats[0].shape[0]
  h = None
  for k in range(1, models.NUM_STAGES):  # teacher stage k + 1 (0-based index k)
    x = feats[k - 1] if h is None else jnp.concatenate([h, feats[k - 1].astype(h.dtype)])
    _, (h,) = teacher.apply(teacher_vars, x, train=False, start_stage=k, end_stage=k + 1)
  z, _ = teacher.apply(teacher_vars, h, train=False, start_stage=models.NUM_STAGES)
  return tuple(z[i * batch:(i + 1) * batch] for i in range(models.NUM_STAGES - 1))


def _accuracy(logits, labels):
  return jnp.mean(jnp.argmax(logits, -1) == labels).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  student: models.ResNet
  teacher: Optional[models.ResNet] = None
  teacher_train: str = "frozen"
  loss_config: LossConfig = LossConfig()

  @property
  def spec(self) -> MethodSpec:
    return METHODS[self.name]

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
    c = self.loss_config
    kind = self.spec.loss
    if kind == "ce":
      loss, metrics = losses.cross_entropy(z_s, y)
    elif kind == "kd_logits":
      z_t, _ = self.teacher.apply(self._teacher_vars(trainable, other), x, train=False)
      loss, metrics = losses.kd_logits(z_s, z_t, y, tau=c.kd_tau, temperature=c.kd_temperature)
    elif kind == "kd_mse_all":
      _, t_feats = self.teacher.apply(self._teacher_vars(trainable, other), x, train=False)
      ce, ce_metrics = losses.cross_entropy(z_s, y)
      mse, metrics = losses.feature_mse_all(feats, t_feats)
      loss = ce + c.mse_alpha * mse
      metrics = dict(metrics, mse_all=mse, ce=ce, loss=loss)
    elif kind == "jointrd":
      m = losses.jointrd_weight(epoch, c.jointrd_dc, c.jointrd_decay_epochs)
      z_h = hybrid_logits(self.teacher, self._teacher_vars(trainable, other), feats)
      loss, metrics = losses.jointrd(z_s, z_h, y, m)
    else:  # pragma: no cover - METHODS is closed
      raise ValueError(kind)
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
      if "hybrid" in heads and self.spec.loss == "jointrd":
        for k, z in enumerate(hybrid_logits(self.teacher, t_vars, feats), 1):
          out[f"hybrid{k}"] = z
    return out


def build(name: str, *, arch: str, num_classes: int, width: int = 64, shortcuts: str = "",
          dirac: str = "", teacher_arch: str = "", teacher_width: int = 0,
          teacher_train: str = "frozen", dtype=jnp.float32,
          loss_config: LossConfig = LossConfig()) -> Method:
  """A `Method` for `name`; empty `shortcuts`/`dirac` take the method's defaults.

  The teacher is always a ResNet (`shortcuts='all'`, no Dirac) of `teacher_arch`
  (default: the student's arch) and `teacher_width` (default: the student's width).
  """
  spec = get_spec(name)
  if teacher_train not in TEACHER_TRAIN:
    raise UserError(f"unknown teacher.train {teacher_train!r}; choose frozen or joint.")
  if teacher_train == "joint" and name != "jointrd":
    raise UserError(f"teacher.train='joint' is JointRD's option; method {name!r} uses a frozen teacher.")
  student = models.build(arch, shortcuts or spec.student_shortcuts, dirac or spec.student_dirac,
                         num_classes=num_classes, width=width, dtype=dtype)
  teacher = None
  if spec.needs_teacher:
    teacher = models.build(teacher_arch or arch, "all", "none", num_classes=num_classes,
                           width=teacher_width or width, dtype=dtype)
    if spec.loss in ("kd_mse_all", "jointrd") and (
        student.stage_channels() != teacher.stage_channels()):
      raise UserError(
          f"{name} needs the student's and teacher's stage outputs to have the same shapes; "
          f"student {arch} width {width} has {student.stage_channels()}, teacher "
          f"{teacher_arch or arch} width {teacher_width or width} has {teacher.stage_channels()}.")
  return Method(name, student, teacher, teacher_train, loss_config)
