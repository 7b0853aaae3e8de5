"""Evaluation of a run: masked sums over every evaluation image once, per head (the
student; the teacher and JointRD's hybrid paths where the method has them)."""
import time

import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import methods
from jointrd_jax.training.steps import make_eval_step


def evaluate(eval_step, state, teacher_vars, batches, num_eval: int) -> dict:
  sums = None
  for batch in batches:
    out = eval_step(state, teacher_vars, batch)
    sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  count = float(sums.pop("count"))
  if int(round(count)) != num_eval:  # every eval image counts exactly once
    raise AssertionError(f"evaluated {count} of {num_eval} examples")
  # Means (top-1/top-5 in %); confusion counts (`make_eval_step(confusion=True)`) as ints.
  return {k: np.rint(v).astype(np.int64) if k.endswith("_confusion")
          else float(v) / count * (100.0 if k.endswith(("top1", "top5")) else 1.0)
          for k, v in sums.items()}


class Evaluator:
  """Evaluates the student every epoch; JointRD's hybrid paths when asked (they are
  diagnostics, and cost about twice the student's forward); a frozen teacher, which never
  changes, once per run. A jointly trained teacher every epoch."""

  def __init__(self, method: methods.Method, feed, batch_size: int, num_eval: int):
    self.feed, self.batch_size, self.num_eval = feed, batch_size, num_eval
    frozen = method.frozen_teacher
    student = ("student",) if frozen else ("student", "teacher")
    self._steps = {False: jax.jit(make_eval_step(method, student))}
    if method.uses_hybrids:
      self._steps[True] = jax.jit(make_eval_step(method, student + ("hybrid",)))
    self._teacher_step = jax.jit(make_eval_step(method, ("teacher",))) if frozen else None
    self._teacher = None
    self.teacher_s = 0.0  # the one evaluation of a frozen teacher

  def compile(self, state_spec, teacher_vars) -> None:
    """Compiles the evaluation steps for states like `state_spec` (ahead of their use)."""
    batch = self.feed.eval_spec(self.batch_size)
    for key, step in self._steps.items():
      self._steps[key] = step.lower(state_spec, teacher_vars, batch).compile()
    if self._teacher_step is not None:
      self._teacher_step = self._teacher_step.lower(state_spec, teacher_vars, batch).compile()

  def __call__(self, state, teacher_vars, hybrids: bool = True) -> dict:
    step = self._steps.get(hybrids, self._steps[False])
    out = evaluate(step, state, teacher_vars, self.feed.eval_batches(self.batch_size),
                   self.num_eval)
    if self._teacher_step is not None:
      if self._teacher is None:
        t0 = time.perf_counter()
        self._teacher = evaluate(self._teacher_step, state, teacher_vars,
                                 self.feed.eval_batches(self.batch_size), self.num_eval)
        self.teacher_s = time.perf_counter() - t0
      out.update(self._teacher)
    return dict(sorted(out.items()))
