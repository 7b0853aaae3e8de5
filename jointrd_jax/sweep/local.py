"""The local launcher: every run a subprocess of this machine, at most one per slot
(`devices.slots`), a distillation run once its teacher has finished."""
import os
import signal
import subprocess
import time
from typing import Callable, List

from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.sweep import planning
from jointrd_jax.sweep.devices import Slot
from jointrd_jax.sweep.planning import (BLOCKED, COMPLETE, DONE, FAILED, RUNNING, STOPPED,
                                        WAITING, Plan, Run)
from jointrd_jax.sweep.tracking import Reporter, clock, last_line


class Terminated(Exception):
  """SIGTERM to the sweep: stop the runs (they checkpoint), then stop."""


def _launch(plan: Plan, r: Run, slot: int, s: Slot) -> None:
  cmd = planning.prepare(plan, r)
  env = dict(os.environ)
  env.update(s.env)
  env["PYTHONPATH"] = planning.python_path()
  pinned = " ".join(f"{k}={v}" for k, v in sorted(s.env.items()))
  header = (f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} launched by the sweep on {s.device}"
            f"{f' ({pinned})' if pinned else ''}: {' '.join(cmd)}")
  out, err = planning.open_logs(plan, r, header)
  with out, err:
    # Own session: a Ctrl-C in the terminal reaches the sweep only, which then stops each
    # run with SIGTERM (the trainer's preemption signal: it checkpoints first).
    r.proc = subprocess.Popen(cmd, cwd=str(planning.ROOT), env=env,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              start_new_session=True)
  r.state, r.slot, r.where = RUNNING, slot, s.device
  r.started, r.ended, r.rc, r.error = time.time(), None, None, ""


def _reap(plan: Plan, r: Run) -> None:
  r.rc, r.ended = r.proc.returncode, time.time()
  r.proc = None
  if planning.is_finished(r.workdir, r.config):
    r.state = DONE
    return
  r.state = FAILED
  err = last_line(plan.log(r, "err"), r.log_offsets[1])
  r.error = f"exit {r.rc}: {err}" if err else f"exit {r.rc} before the last epoch"


def _stop(runs: List[Run]) -> None:
  for r in runs:
    try:
      os.kill(r.proc.pid, signal.SIGTERM)
    except OSError:
      pass
  for r in runs:
    try:
      r.proc.wait()
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait for the checkpoint
      r.proc.kill()
      r.proc.wait()
    r.rc, r.ended, r.proc, r.state = r.proc.returncode, time.time(), None, STOPPED
    r.error = "stopped by the sweep (resumes from its checkpoint on the next sweep)"


def done_line(r: Run) -> str:
  s = workdir_lib.read_summary(r.workdir) or {}
  top1 = s.get("final", {}).get("student_top1", float("nan"))
  took = f" (took {clock(r.ended - r.started)})" if r.started and r.ended else ""
  return f"done {r.name}: final {s.get('eval_split')} top-1 {top1:.2f}{took}"


def execute(plan: Plan, slots: List[Slot], *, say: Callable[[str], None],
            poll_s: float = 0.2, status_every_s: float = 60.0) -> bool:
  """Runs every waiting run of `plan`; returns False when interrupted (runs stopped).

  Prints one line per start / end / failure followed by the status table, and the table
  alone every `status_every_s` while nothing changes.
  """
  free = list(range(len(slots)))
  reporter = Reporter(plan, len(slots), say, status_every_s)

  def now():
    return time.strftime("%H:%M:%S")

  try:
    while True:
      changed = False
      for r in plan.runs:
        if r.state == RUNNING and r.proc.poll() is not None:
          _reap(plan, r)
          free.append(r.slot)
          changed = True
          if r.state == DONE:
            say(f"[{now()}] {done_line(r)}")
          else:
            say(f"[{now()}] FAILED {r.name} ({r.error}); its log: {plan.log(r, 'err')}")
      for r in plan.runs:
        dep = plan.get(r.needs)
        if r.state == WAITING and dep is not None and dep.state in (FAILED, BLOCKED, STOPPED):
          r.state, r.error = BLOCKED, f"not started: its teacher {dep.name} {dep.state}"
          changed = True
          say(f"[{now()}] {r.name} {r.error}")
      for r in plan.runs:
        if not free:
          break
        dep = plan.get(r.needs)
        if r.state == WAITING and (dep is None or dep.state in COMPLETE):
          free.sort()
          slot = free.pop(0)
          _launch(plan, r, slot, slots[slot])
          changed = True
          say(f"[{now()}] started {r.name} on {slots[slot].device}; log {plan.log(r, 'out')}")
      active = any(r.state in (RUNNING, WAITING) for r in plan.runs)
      reporter.update(changed, final=not active)
      if not active:
        break
      time.sleep(poll_s)
  except (KeyboardInterrupt, Terminated):
    running = [r for r in plan.runs if r.state == RUNNING]
    say(f"[{now()}] interrupted: stopping {len(running)} run(s) "
        "(each saves a checkpoint first)...")
    _stop(running)
    reporter.update(True, final=True)
    return False
  return True
