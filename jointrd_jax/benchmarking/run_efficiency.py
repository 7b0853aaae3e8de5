"""Whole-run efficiency: a short real run of the trainer against its bare step (what
`experiments.run_efficiency` reports; its docstring says what each figure means).

    efficiency = steps x bare step time / (run wall time - compilation)

The bare step and the trainer's dispatch of it are timed (`train_step.run_case`, data
'fixed' and 'trainer') before and after the run and averaged: on a shared machine the
speed drifts, and the comparison should not depend on when it was measured.
"""
import os
import time

from jointrd_jax import methods, sharding
from jointrd_jax.benchmarking import random_weights, train_step
from jointrd_jax.training import train

TEACHER_SUBDIR = "random_teacher"
RUN_SUBDIR = "run"


def step_rates(config, bench_steps: int, mesh) -> dict:
  """{'fixed': the bare step's record, 'trainer': the trainer's dispatch's}, measured back
  to back, of the training `config` (its method, network, loss settings and batch)."""
  opts = dict(arch=config.model.arch, width=config.model.width,
              num_classes=config.synthetic.num_classes, steps=bench_steps, steps_per_block=10,
              warmup=3, steps_per_dispatch=config.steps_per_dispatch)
  return {d: train_step.run_case(config.method, config.batch_size,
                                 train_step.Options(data=d, **opts), mesh, config)
          for d in train_step.DATA}


def measure(config, root: str, bench_steps: int) -> dict:
  """Runs `config` (synthetic data) into ROOT/run, a distillation method with a random
  frozen teacher written to ROOT/random_teacher first, between two `step_rates`; the
  record (figures, and `parts_s`: where the run's time went)."""
  if methods.needs_teacher(config.method, config.terms):
    teacher_dir = os.path.join(root, TEACHER_SUBDIR)
    config.teacher.checkpoint = ""
    random_weights.write_random_teacher(config, teacher_dir)
    config.teacher.checkpoint = teacher_dir
  mesh = sharding.make_mesh()
  before = step_rates(config, bench_steps, mesh)
  t0 = time.perf_counter()
  summary = train.train_and_evaluate(config, os.path.join(root, RUN_SUBDIR))
  outer_wall = time.perf_counter() - t0
  after = step_rates(config, bench_steps, mesh)
  return _record(config, summary, before, after, outer_wall)


def _record(config, summary, before, after, outer_wall: float) -> dict:
  rate = {d: (before[d]["images_per_s"] + after[d]["images_per_s"]) / 2 for d in before}
  bare = after["fixed"]
  batch = config.batch_size
  steps = summary["epochs_done"] * (config.synthetic.train_size // batch)
  step_s = batch / rate["fixed"]
  dispatch_s = batch / rate["trainer"]
  wall, compile_s = summary["wall_time_s"], summary["compile_s"]
  run_s = wall - compile_s
  spent = dict(summary["time_s"])
  loop_s = spent["train_steps"]  # the training loop, log steps included
  record = {
      "method": config.method, "arch": config.model.arch, "width": config.model.width,
      "batch": batch, "epochs": summary["epochs_done"], "steps": steps,
      "device_kind": bare["device_kind"], "platform": bare["platform"],
      "bare_step_images_per_s": rate["fixed"], "dispatch_images_per_s": rate["trainer"],
      "bare_step_images_per_s_before_after": [before["fixed"]["images_per_s"],
                                              after["fixed"]["images_per_s"]],
      "bare_steps_s": steps * step_s, "run_wall_s": wall, "compile_s": compile_s,
      "startup_and_load_s": outer_wall - wall,
      "run_images_per_s": steps * batch / run_s,
      "efficiency": steps * step_s / run_s,
      "loop_share": loop_s / run_s,
      "time_s": spent,
  }
  record["parts_s"] = {
      "bare": steps * step_s,
      "input_dispatch": steps * (dispatch_s - step_s),
      "loop_beyond_dispatch": loop_s - steps * dispatch_s,
      "eval": spent["eval"], "checkpoint": spent["checkpoint"],
      "rest": run_s - loop_s - spent["eval"] - spent["checkpoint"],
  }
  return record


def report(record: dict) -> list:
  """The lines printed after the record's JSON line: the summary and the breakdown."""
  r, parts, spent = record, record["parts_s"], record["time_s"]
  run_s = r["run_wall_s"] - r["compile_s"]
  b0, b1 = r["bare_step_images_per_s_before_after"]
  lines = [
      f"# {r['method']} {r['arch']} width {r['width']}, batch {r['batch']}, "
      f"{r['epochs']} epochs x {r['steps'] // max(r['epochs'], 1)} steps on "
      f"{r['platform']} {r['device_kind']}",
      f"# bare step {r['bare_step_images_per_s']:.0f} img/s ({b0:.0f} before the run, "
      f"{b1:.0f} after), the trainer's dispatch {r['dispatch_images_per_s']:.0f} img/s; the "
      f"run trained at {r['run_images_per_s']:.0f} img/s = {100 * r['efficiency']:.1f} % of "
      f"the bare step (wall {r['run_wall_s']:.1f} s, compile {r['compile_s']:.1f} s "
      f"excluded); its training loop took {100 * r['loop_share']:.1f} % of that time"]
  rows = [("bare steps (steps x bare step time)", parts["bare"]),
          ("input in the step + dispatch (benchmarks)", parts["input_dispatch"]),
          ("training loop beyond that (drift, host)", parts["loop_beyond_dispatch"]),
          ("  of which metric records and log lines", spent["log"]),
          ("evaluation, every epoch", parts["eval"]),
          ("  of which the frozen teacher, once", spent["teacher_eval"]),
          ("checkpoint saves", parts["checkpoint"]),
          ("rest: epoch starts, the summary", parts["rest"])]
  lines += [f"#   {name:<42}{v:8.2f} s  {100 * v / run_s:6.1f} %" for name, v in rows]
  return lines
