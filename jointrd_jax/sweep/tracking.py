"""The sweep's progress: epochs done and ETA per run (from its files and log), the status
table printed on every change and every `status_every_s`, and DIR/status.{txt,json}."""
import json
import os
import re
import time
from typing import Callable, Optional

from jointrd_jax.training import reporting
from jointrd_jax.sweep.planning import (COMPLETE, DONE, FAILED, BLOCKED, FINISHED, RUNNING,
                                        STATES, STATUS_JSON, STATUS_TXT, STOPPED, TEACHER,
                                        WAITING, Plan, Run, write_text)

_ETA = re.compile(r"ETA ((?:\d+ days?, )?\d+:\d\d:\d\d|\?)")


def _tail(path: str, start: int = 0, size: int = 8192) -> str:
  """The end of a log, from byte `start` on at most (this launch's part of the log)."""
  try:
    with open(path, "rb") as f:
      f.seek(0, os.SEEK_END)
      f.seek(max(start, f.tell() - size))
      return f.read().decode("utf-8", "replace")
  except OSError:
    return ""


def last_line(path: str, start: int = 0) -> str:
  lines = [line.strip() for line in _tail(path, start).splitlines() if line.strip()]
  return lines[-1] if lines else ""


def eta_seconds(text: str) -> Optional[float]:
  m = re.match(r"(?:(\d+) days?, )?(\d+):(\d\d):(\d\d)$", text or "")
  if not m:
    return None
  d, h, mi, s = (int(x or 0) for x in m.groups())
  return float(((d * 24 + h) * 60 + mi) * 60 + s)


def progress(plan: Plan, r: Run) -> dict:
  """Epochs done (metrics.jsonl) and, while running, the ETA of its last progress line."""
  done = sum(1 for rec in reporting.read_metrics(r.workdir) if rec.get("split") == "eval")
  eta = ""
  if r.state == RUNNING:
    found = _ETA.findall(_tail(plan.log(r, "out"), r.log_offsets[0]))
    eta = found[-1] if found else "?"
  return {"epochs_done": done, "num_epochs": int(r.config.num_epochs), "eta": eta}


def clock(seconds: Optional[float]) -> str:
  return reporting.format_eta(seconds) if seconds is not None else "?"


def status(plan: Plan, width: int, started: float) -> dict:
  """The sweep's state; `width`: how many runs go at once (for the sweep's ETA)."""
  runs = []
  for r in plan.runs:
    p = progress(plan, r)
    runs.append(dict(name=r.name, method=r.method, seed=r.seed, state=r.state,
                     workdir=r.workdir, teacher=r.is_teacher, needs=r.needs,
                     started=r.started, ended=r.ended, rc=r.rc, error=r.error,
                     where=r.where or None, job=r.job or None, **p))
  counts = {s: sum(1 for r in plan.runs if r.state == s) for s in STATES}
  # A rough sweep ETA: what the running runs say, plus the waiting ones at the mean
  # duration of the runs this sweep finished, over the slots.
  took = [r.ended - r.started for r in plan.runs if r.state == DONE and r.started]
  etas = [eta_seconds(x["eta"]) for x in runs if x["state"] == RUNNING]
  eta = None
  if took and all(e is not None for e in etas):
    eta = (sum(etas) + counts[WAITING] * sum(took) / len(took)) / max(1, width)
  elif not counts[WAITING] and etas and all(e is not None for e in etas):
    eta = max(etas)
  return {"updated": time.time(), "workdir": plan.workdir, "elapsed_s": time.time() - started,
          "eta_s": eta, "counts": counts, "runs": runs}


def render_status(st: dict) -> str:
  c = st["counts"]
  head = (f"[{time.strftime('%H:%M:%S')}] sweep {st['workdir']}: "
          f"{c[DONE] + c[FINISHED]}/{len(st['runs'])} done, {c[RUNNING]} running, "
          f"{c[WAITING]} waiting, {c[FAILED] + c[BLOCKED]} failed"
          + (f", {c[STOPPED]} stopped" if c[STOPPED] else "")
          + f" | elapsed {clock(st['elapsed_s'])}"
          + (f" | ETA ~{clock(st['eta_s'])}" if st["eta_s"] is not None else ""))
  lines = [head]
  for x in st["runs"]:
    name = x["name"] + (" (teacher)" if x["teacher"] and x["name"] != TEACHER else "")
    ep = f"epoch {x['epochs_done']}/{x['num_epochs']}"
    where = f"  [{x['where']}]" if x.get("where") else ""
    if x["state"] == RUNNING:
      detail = f"{ep}  ETA {x['eta']}{where}"
    elif x["state"] == WAITING:
      detail = ep + (f"  (after {x['needs']})" if x["needs"] else "") + where
    elif x["state"] in COMPLETE:
      took = (f"  took {clock(x['ended'] - x['started'])}"
              if x["started"] is not None and x["ended"] is not None else "")
      detail = ep + ("  (finished before)" if x["state"] == FINISHED else took + where)
    else:
      detail = f"{ep}  {x['error']}"
    lines.append(f"  {x['state']:<8} {name:<28} {detail}")
  return "\n".join(lines)


class Reporter:
  """Prints the status table at the start, after every change, at the end, and otherwise
  every `every_s` seconds; rewrites DIR/status.{txt,json} on each of these."""

  def __init__(self, plan: Plan, width: int, say: Callable[[str], None], every_s: float):
    self.plan, self.width, self.say, self.every_s = plan, width, say, every_s
    self.started = time.time()
    self.last = None  # when the table was last printed

  def update(self, changed: bool, final: bool = False) -> None:
    due = self.last is None or time.time() - self.last >= self.every_s
    if not (changed or final or due):
      return
    st = status(self.plan, self.width, self.started)
    text = render_status(st)
    write_text(self.plan.path(STATUS_TXT), text + "\n")
    write_text(self.plan.path(STATUS_JSON), json.dumps(st, indent=2))
    self.say(text)
    self.last = time.time()
