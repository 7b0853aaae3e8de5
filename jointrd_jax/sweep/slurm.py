"""The SLURM launcher: the teacher as one job, every other run as a task of one job array
that starts once the teacher job succeeded (`--dependency=afterok`), each running exactly
the local launcher's command (`planning.command`). Then either return (the user follows
the jobs with squeue and aggregates with --report_only) or poll squeue until they end.

Files, under the sweep's workdir: `slurm/teacher.sh`, `slurm/array.sh` (task i runs line
i+1 of `slurm/array.txt`, one run's command per line), `slurm/jobs.json` (the job ids:
a new submission is refused while they are still queued), and SLURM's own output in
`logs/slurm-<job>.out`; each run's output goes to `logs/<run>.{out,err}` as locally.
"""
import json
import os
import shlex
import shutil
import subprocess
import time
from typing import Callable, Dict, List, Optional

from jointrd_jax.errors import UserError
from jointrd_jax.sweep import planning
from jointrd_jax.sweep.local import done_line
from jointrd_jax.sweep.planning import (BLOCKED, DONE, FAILED, LOGS_SUBDIR, RUNNING, SLURM_SUBDIR,
                                        WAITING, Plan, Run)
from jointrd_jax.sweep.tracking import Reporter, last_line

JOBS_JSON = "jobs.json"
# squeue states of a job that has not ended (COMPLETING: its processes are being reaped).
PENDING_STATES = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                  "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING")
RUNNING_STATES = ("RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT")

_HEAD = """#!/bin/bash
# {what}, submitted by experiments.table12 --launcher=slurm.
set -eo pipefail
cd {root}
export PYTHONPATH={pythonpath}
"""
_TEACHER = _HEAD + "exec {line}\n"
_ARRAY = _HEAD + """list={list}
line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$list")
if [ -z "$line" ]; then
  echo "error: $list has no line $((SLURM_ARRAY_TASK_ID + 1)) for task $SLURM_ARRAY_TASK_ID" >&2
  exit 2
fi
echo "task $SLURM_ARRAY_TASK_ID of job $SLURM_ARRAY_JOB_ID on $(hostname): $line"
eval "exec $line"
"""


def site_options(s) -> List[str]:
  """sbatch options from the sweep config's `slurm` keys; empty / 0 ones are not passed."""
  opts = []
  for key, flag in (("partition", "--partition"), ("gpus_per_task", "--gpus-per-task"),
                    ("cpus_per_task", "--cpus-per-task"), ("time", "--time"),
                    ("mem", "--mem")):
    if s[key]:
      opts.append(f"{flag}={s[key]}")
  return opts + list(s.extra)


def _require(tool: str) -> str:
  path = shutil.which(tool)
  if not path:
    raise UserError(f"--launcher=slurm needs SLURM's {tool}, which is not on PATH; run the "
                    "sweep on a SLURM login node, or use --launcher=local.")
  return path


def queue(job_ids: List[str]) -> Optional[Dict[str, tuple]]:
  """{'12': (state, node), '13_0': ...} of those jobs (array tasks one by one) that SLURM
  still lists; None when squeue is absent or failed (try again later)."""
  if not job_ids:
    return {}
  if not shutil.which("squeue"):
    return None
  try:
    p = subprocess.run(["squeue", "-h", "-r", "-j", ",".join(job_ids), "-o", "%i|%T|%N"],
                       capture_output=True, text=True, timeout=120, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return None
  if p.returncode != 0:
    return {} if "Invalid job id" in p.stderr else None
  out = {}
  for line in p.stdout.splitlines():
    parts = line.strip().split("|")
    if len(parts) == 3:
      out[parts[0]] = (parts[1], parts[2])
  return out


def _numeric(job_id: str) -> tuple:
  return (len(job_id), job_id)  # job ids are numbers: 9 before 10


def id_list(jobs: Dict[str, str]) -> str:
  """'12,13': the job ids of a submission, in order."""
  return ",".join(sorted(jobs.values(), key=_numeric))


def _jobs_file(p: Plan) -> str:
  return p.path(SLURM_SUBDIR, JOBS_JSON)


def previous_jobs(p: Plan) -> List[str]:
  """The job ids of this sweep's last submission that SLURM still lists (not ended)."""
  try:
    with open(_jobs_file(p)) as f:
      ids = json.load(f)["job_ids"]
  except (OSError, ValueError, KeyError):
    return []
  q = queue(ids) or {}
  return sorted({k.split("_")[0] for k, (state, _) in q.items()
                 if state in PENDING_STATES + RUNNING_STATES}, key=_numeric)


def _sbatch(args: List[str], what: str) -> str:
  p = subprocess.run([_require("sbatch"), *args], capture_output=True, text=True,
                     timeout=300, check=False)
  if p.returncode != 0:
    msg = last_line_of(p.stderr) or f"exit {p.returncode}"
    raise UserError(f"sbatch refused the {what} ({msg}); check the site options "
                    "--config.slurm.* (partition, time, gpus_per_task, extra, ...).")
  return p.stdout.strip().split(";")[0]


def last_line_of(text: str) -> str:
  lines = [x.strip() for x in text.splitlines() if x.strip()]
  return lines[-1] if lines else ""


def _line(p: Plan, r: Run) -> str:
  """The run's command (the local launcher's), its output appended to its own logs."""
  cmd = planning.prepare(p, r)
  if any("\n" in a for a in cmd):
    raise UserError(f"a path of run {r.name} holds a line break, which --launcher=slurm "
                    "cannot list one command per line; choose a --workdir without one.")
  for f in planning.open_logs(p, r, f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} submitted to "
                              f"SLURM by the sweep: {' '.join(cmd)}"):
    f.close()
  return (f"{shlex.join(cmd)} >>{shlex.quote(p.log(r, 'out'))} "
          f"2>>{shlex.quote(p.log(r, 'err'))}")


def _script(p: Plan, name: str, template: str, what: str, **kw) -> str:
  path = p.path(SLURM_SUBDIR, name)
  planning.write_text(path, template.format(
      what=what, root=shlex.quote(str(planning.ROOT)),
      pythonpath=shlex.quote(planning.python_path()), **kw))
  os.chmod(path, 0o755)
  return path


def submit(p: Plan, sc, say: Callable[[str], None]) -> Dict[str, str]:
  """Submits the plan's waiting runs; returns {'teacher': id, 'array': id} (those submitted)."""
  _require("sbatch")
  queued = previous_jobs(p)
  if queued:
    raise UserError(f"SLURM jobs {','.join(queued)} of an earlier submission of this sweep are "
                    f"still queued or running (squeue -j {','.join(queued)}); wait for them, "
                    f"or cancel them (scancel {' '.join(queued)}), then submit again.")
  os.makedirs(p.path(SLURM_SUBDIR), exist_ok=True)
  todo = [r for r in p.runs if r.state == WAITING]
  teacher = next((r for r in todo if r.is_teacher), None)
  others = [r for r in todo if r is not teacher]
  common = [f"--chdir={planning.ROOT}", "--export=ALL", "--parsable", "--open-mode=append",
            *site_options(sc.slurm)]
  logs = p.path(LOGS_SUBDIR)
  jobs = {}
  if teacher:
    script = _script(p, "teacher.sh", _TEACHER, f"The sweep's teacher ({teacher.name})",
                     line=_line(p, teacher))
    jobs["teacher"] = _sbatch([*common, "--job-name=t12-teacher",
                               f"--output={logs}/slurm-%j.out", script], "teacher job")
    teacher.job = jobs["teacher"]
  if others:
    listing = p.path(SLURM_SUBDIR, "array.txt")
    planning.write_text(listing, "".join(_line(p, r) + "\n" for r in others))
    script = _script(p, "array.sh", _ARRAY, "The sweep's runs as one job array",
                     list=shlex.quote(listing))
    throttle = f"%{sc.slurm.max_parallel}" if sc.slurm.max_parallel else ""
    args = [*common, f"--array=0-{len(others) - 1}{throttle}", "--job-name=t12-runs",
            f"--output={logs}/slurm-%A_%a.out"]
    if teacher:
      args += [f"--dependency=afterok:{teacher.job}", "--kill-on-invalid-dep=yes"]
    try:
      jobs["array"] = _sbatch([*args, script], "job array")
    except UserError:
      if teacher:
        subprocess.run(["scancel", teacher.job], capture_output=True, check=False)
      raise
    for i, r in enumerate(others):
      r.job = f"{jobs['array']}_{i}"
  for r in todo:
    r.where = f"SLURM job {r.job}" + (
        f", after job {teacher.job}" if teacher and r is not teacher else "")
  planning.write_text(_jobs_file(p), json.dumps(
      {"job_ids": sorted(jobs.values(), key=_numeric), **jobs, "submitted": time.time(),
       "runs": {r.name: r.job for r in todo}}, indent=2))
  ids = id_list(jobs)
  if teacher:
    say(f"submitted the teacher {teacher.name} as SLURM job {jobs['teacher']} "
        f"({p.path(SLURM_SUBDIR, 'teacher.sh')})")
  if others:
    say(f"submitted {len(others)} run(s) as SLURM job array {jobs['array']}, tasks "
        f"0-{len(others) - 1}{' after job ' + jobs['teacher'] + ' succeeds' if teacher else ''} "
        f"({p.path(SLURM_SUBDIR, 'array.sh')}; task i runs line i+1 of "
        f"{p.path(SLURM_SUBDIR, 'array.txt')})")
  say(f"follow them: squeue -j {ids}  (logs in {logs}/)")
  return jobs


def _ended(p: Plan, r: Run, teacher: Optional[Run], seen_running: bool) -> None:
  r.ended = time.time()
  if planning.is_finished(r.workdir, r.config):
    r.state = DONE
  elif not seen_running and teacher is not None and teacher.state in (FAILED, BLOCKED):
    r.state, r.error = BLOCKED, (f"not started: the teacher job {teacher.job} failed, "
                                 "so SLURM cancelled the array")
  else:
    r.state = FAILED
    err = last_line(p.log(r, "err"), r.log_offsets[1])
    r.error = (f"SLURM job {r.job}: {err}" if err else
               f"SLURM job {r.job} ended before the last epoch (see "
               f"{p.path(LOGS_SUBDIR, 'slurm-' + r.job + '.out')})")


def wait(p: Plan, sc, *, say: Callable[[str], None], poll_s: float = 5.0) -> None:
  """Polls squeue until every submitted run's job has ended; keeps the runs' states (and
  the status table) up to date. Raises KeyboardInterrupt / Terminated to stop waiting."""
  runs = [r for r in p.runs if r.job]
  teacher = next((r for r in runs if r.is_teacher), None)
  ids = sorted({r.job.split("_")[0] for r in runs}, key=_numeric)
  width = sc.slurm.max_parallel or len(runs)
  reporter = Reporter(p, width, say, sc.status_every_s)
  seen = set()
  while True:
    q = queue(ids)
    changed = False
    if q is not None:
      # The teacher first: whether it failed decides how the array's vanished tasks read.
      for r in sorted(runs, key=lambda x: not x.is_teacher):
        if r.state not in (WAITING, RUNNING):
          continue
        state, node = q.get(r.job, ("", ""))
        stamp = time.strftime("%H:%M:%S")
        if state in PENDING_STATES:
          continue
        if state in RUNNING_STATES:
          if r.state != RUNNING:
            r.state, r.started, r.where = RUNNING, time.time(), f"SLURM job {r.job} on {node}"
            seen.add(r.name)
            changed = True
            say(f"[{stamp}] started {r.name} (SLURM job {r.job} on {node})")
          continue
        _ended(p, r, teacher, r.name in seen)
        changed = True
        if r.state == DONE:
          say(f"[{stamp}] {done_line(r)}")
        elif r.state == BLOCKED:
          say(f"[{stamp}] {r.name} {r.error}")
        else:
          say(f"[{stamp}] FAILED {r.name} ({r.error}); its log: {p.log(r, 'err')}")
    active = any(r.state in (WAITING, RUNNING) for r in runs)
    reporter.update(changed, final=not active)
    if not active:
      return
    time.sleep(poll_s)
