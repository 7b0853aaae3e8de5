"""The training loop of one run: epochs of chunked steps, logging, evaluation, checkpoints.

`Loop(run, run_steps, evaluator).run_epochs(state)` trains from `run.start_step` to the
last epoch. Steps run in chunks of up to `run.k` (one compiled call each); chunks end at
every `log_every_steps` step and at each epoch's end, where the loop logs, checks for
preemption (SIGTERM/SIGINT: checkpoint and stop, `interrupts.py`) and evaluates.
"""
import contextlib
import dataclasses
import signal
import time
from typing import Any

import jax
import numpy as np
from etils import epath

from jointrd_jax.errors import Preempted, UserError
from jointrd_jax.training import checkpoints, interrupts, reporting


@dataclasses.dataclass
class Run:
  """A set-up run: what the loop trains, on what, and where it writes (`train._set_up`)."""
  config: Any
  path: epath.Path
  data: Any
  method: Any
  feed: Any
  k: int  # steps per dispatch
  teacher_vars: Any
  ckpt: checkpoints.Checkpoints
  writer: reporting.Writer
  progress: reporting.Progress
  start_step: int = 0
  resumed_metrics: list = dataclasses.field(default_factory=list)  # of a partly done epoch

  @property
  def steps_per_epoch(self) -> int:
    return self.feed.steps_per_epoch

  @property
  def total_steps(self) -> int:
    return self.steps_per_epoch * self.config.num_epochs


def checkpoint_meta(method, data, epoch, step, epoch_metrics=None) -> dict:
  """The JSON `meta` a checkpoint keeps beside the state (see `checkpoints.py`)."""
  nets = {"student": checkpoints.network_meta(method.student)}
  if "teacher" in method.trained:
    nets["teacher"] = checkpoints.network_meta(method.teacher)
  meta = {"epoch": int(epoch), "step": int(step), "num_classes": data.num_classes,
          "image_shape": list(data.image_shape), "networks": nets}
  if epoch_metrics:  # a mid-epoch checkpoint: the epoch's step metrics so far, exactly
    meta["epoch_metrics"] = {k: [np.asarray(epoch_metrics[0][k]).dtype.name,
                                 [float(m[k]) for m in epoch_metrics]] for k in epoch_metrics[0]}
  return meta


def restore_epoch_metrics(meta) -> list:
  """The step metrics a mid-epoch checkpoint holds (see `checkpoint_meta`), as the loop
  keeps them."""
  saved = meta.get("epoch_metrics") or {}
  columns = {k: np.asarray(values, dtype) for k, (dtype, values) in saved.items()}
  n = min((len(v) for v in columns.values()), default=0)
  return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def means(step_metrics: list) -> dict:
  return {k: float(np.mean(np.asarray([m[k] for m in step_metrics], np.float64)))
          for k in step_metrics[0]}


def check_finite(step_metrics, epoch: int, step: int, ckpt) -> None:
  """Stops the run at the first step whose loss or gradient norm is not finite."""
  for m in step_metrics:
    loss, grad_norm = float(m["loss"]), float(m.get("grad_norm", 0.0))
    if not (np.isfinite(loss) and np.isfinite(grad_norm)):
      kept = ckpt.steps()
      raise UserError(
          f"the loss became {loss:.4g} (gradient norm {grad_norm:.4g}) in epoch {epoch + 1} "
          f"(by step {step}); stopped without saving this state; the last good checkpoint "
          f"is step {kept[-1] if kept else 'none'}. Lower --config.optimizer.learning_rate "
          "or check the data.")


def stop_preempted(ckpt, writer, step, signum, state=None, meta=None):
  """After SIGTERM or SIGINT: checkpoint (unless the epoch's end just did), close, stop."""
  if state is not None:
    ckpt.save(step, state, meta)
  writer.close()
  ckpt.close()
  if signum == signal.SIGINT:
    raise Preempted(f"interrupted at step {step}; checkpoint saved in {ckpt.directory}; "
                    "rerun the same command to resume.", exit_code=130)
  reporting.log("SIGTERM: checkpoint saved at step %d; rerun the same command to resume.", step)
  raise Preempted(f"preempted at step {step}; checkpoint saved in {ckpt.directory}")


class Loop:
  """Trains `run` with the compiled `run_steps` and evaluates with `evaluator`; `spent`
  and `eval_s` say where the wall time went (summary.json's `time_s`)."""

  def __init__(self, run: Run, run_steps, evaluator, compile_s: float):
    self.run, self.run_steps, self.evaluator = run, run_steps, evaluator
    self.compile_s = compile_s
    self.spent = {"checkpoint": 0.0, "host_sync": 0.0, "log": 0.0}
    self.eval_s = 0.0
    self.step = run.start_step
    self.epoch_metrics, self.pending = [], []  # chunks dispatched since the last host read
    self._compile_logged = False

  def run_epochs(self, state):
    """Every epoch left; returns the final state."""
    run = self.run
    resumed = run.resumed_metrics
    with interrupts.Interruption() as interruption, contextlib.closing(run.feed):
      for epoch in range(run.start_step // run.steps_per_epoch, run.config.num_epochs):
        self.epoch_metrics, resumed = resumed, []
        state = self._train_epoch(state, epoch, interruption)
        self._evaluate(state, epoch)
        self._end_epoch(state, epoch, interruption)
    return state

  def _fetch(self) -> None:
    """The chunks' step metrics to the host: a host sync."""
    t0 = time.perf_counter()
    for rows, m in jax.device_get(self.pending):
      self.epoch_metrics.extend({key: v[j] for key, v in rows.items()} for j in range(m))
    self.pending = []
    self.spent["host_sync"] += time.perf_counter() - t0

  def _train_epoch(self, state, epoch: int, interruption):
    run, config = self.run, self.run.config
    spe, log_every = run.steps_per_epoch, config.log_every_steps
    i = self.step - epoch * spe  # steps done in this epoch
    logged = len(self.epoch_metrics) // log_every * log_every  # steps up to the last record
    epoch_arr = np.int32(epoch)
    run.feed.start_epoch(config.seed, epoch)
    if not self._compile_logged:
      reporting.log("compiled the train step and the evaluation in %.1f s", self.compile_s)
      self._compile_logged = True
    run.progress.start()
    self.pending, pending_steps = [], 0
    while i < spe:
      n = min(run.k, spe - i, log_every - i % log_every)
      state, rows = self.run_steps(state, run.teacher_vars, run.feed.chunk(i, n), epoch_arr,
                                   np.int32(n))
      self.pending.append((rows, n))
      i, self.step, pending_steps = i + n, self.step + n, pending_steps + n
      if i % log_every == 0 or i == spe:  # a log step, or the epoch's end
        logged = self._log_interval(epoch, i, logged, pending_steps)
        pending_steps = 0
      signum = interrupts.stop_now(interruption, i, log_every) if i < spe else 0
      if signum:
        self._fetch()
        check_finite(self.epoch_metrics, epoch, self.step, run.ckpt)
        stop_preempted(run.ckpt, run.writer, self.step, signum, state,
                       checkpoint_meta(run.method, run.data, epoch, self.step,
                                       self.epoch_metrics))
    jax.block_until_ready(state)
    return state

  def _log_interval(self, epoch: int, i: int, logged: int, pending_steps: int) -> int:
    """The record of the steps since the last one; returns the steps recorded so far."""
    run = self.run
    self._fetch()
    interval = self.epoch_metrics[logged:]
    check_finite(interval, epoch, self.step, run.ckpt)
    run.progress.add(pending_steps)
    t0 = time.perf_counter()
    record = dict(means(interval), steps=len(interval), images_per_s=run.progress.images_per_s)
    run.writer.write("train", epoch + 1, self.step, record)
    if i < run.steps_per_epoch:
      reporting.log("epoch %d/%d step %d/%d loss %.4f | %.0f img/s | ETA %s",
                    epoch + 1, run.config.num_epochs, self.step, run.total_steps,
                    record["loss"], run.progress.images_per_s, run.progress.eta(self.step))
    self.spent["log"] += time.perf_counter() - t0
    return len(self.epoch_metrics)

  def _evaluate(self, state, epoch: int) -> None:
    run, config = self.run, self.run.config
    t_eval = time.perf_counter()
    every = config.eval_hybrids_every_epochs
    ev = self.evaluator(state, run.teacher_vars, hybrids=epoch + 1 == config.num_epochs or (
        every > 0 and (epoch + 1) % every == 0))
    self.eval_s += time.perf_counter() - t_eval
    ev["train_loss"] = means(self.epoch_metrics)["loss"]
    run.writer.write("eval", epoch + 1, self.step, ev)
    heads = " ".join(f"{k[:-5]} {v:.2f}" for k, v in ev.items() if k.endswith("_top1"))
    epochs_run = epoch + 1 - run.start_step // run.steps_per_epoch
    reporting.log("epoch %d/%d done: train loss %.4f | %s top-1 %s | %.0f img/s | ETA %s",
                  epoch + 1, config.num_epochs, ev["train_loss"], run.data.eval_split, heads,
                  run.progress.images_per_s,
                  run.progress.eta(self.step, self.eval_s / epochs_run,
                                   config.num_epochs - epoch - 1))

  def _end_epoch(self, state, epoch: int, interruption) -> None:
    """The epoch's checkpoint (when due, or to stop) and the stop a signal asked for."""
    run, config = self.run, self.run.config
    stop = interrupts.stop_now(interruption)
    if ((epoch + 1) % config.checkpoint_every_epochs == 0 or epoch + 1 == config.num_epochs
        or stop):
      t0 = time.perf_counter()
      run.ckpt.save(self.step, state, checkpoint_meta(run.method, run.data, epoch + 1,
                                                      self.step))
      self.spent["checkpoint"] += time.perf_counter() - t0
    if stop and epoch + 1 < config.num_epochs:
      stop_preempted(run.ckpt, run.writer, self.step, stop)
