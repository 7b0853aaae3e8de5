"""Many runs in one command (the paper's Table 12): plan, launch, track, aggregate.

`run(sweep_config, workdir)` takes a `configs/table12.py` config and

1. **plans** one run per method x seed, each in `DIR/runs/<method>/seed<k>/` with its full
   config (`base` with `method`, `seed` and the teacher set), and the teacher;
2. **skips** runs that finished before (`summary.json` has `epochs_done == num_epochs` and
   `config.json` is this very config); an interrupted run is relaunched and resumes from
   its last checkpoint (that is `experiments.main`'s own resume);
3. **launches** each run as a subprocess `python -m experiments.main
   --config=configs/from_json.py:DIR/configs/<run>.json --workdir=...`, at most `parallel`
   at a time, each pinned to its own accelerator(s) by environment variables
   (`CUDA_VISIBLE_DEVICES` on GPUs, `TPU_VISIBLE_CHIPS` & co. on TPUs, nothing on CPU);
   a distillation run starts once its teacher has finished;
4. **tracks** them: a status table (done / running / waiting / failed, epoch, ETA) on stdout
   on every change and every `status_every_s`, also in `DIR/status.txt` and `status.json`;
5. **aggregates** the finished runs into `DIR/results.{md,csv,png}` (`jointrd_jax.results`),
   also when some runs failed or the sweep was interrupted.

The teacher: one ResNet for the whole sweep, as the paper (one pretrained teacher; the seeds
measure the spread of the student given it). It is `teacher_checkpoint` when given, else it
is trained with `teacher_seed`: by the sweep's own `resnet` run of that seed when that run
has exactly the teacher's config (the default), else into `DIR/teacher`.

The sweep process itself never initialises a JAX backend (on a GPU host that would claim
every GPU's memory before the runs start): it only reads and writes files.
"""
import copy
import dataclasses
import glob
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from etils import epath

from jointrd_jax import methods as methods_lib
from jointrd_jax import reporting, results
from jointrd_jax import workdir as workdir_lib
from jointrd_jax.errors import UserError

ROOT = pathlib.Path(__file__).resolve().parent.parent  # holds experiments/ and configs/
FROM_JSON = ROOT / "configs" / "from_json.py"
TEACHER = "teacher"
RUNS_SUBDIR, CONFIGS_SUBDIR, LOGS_SUBDIR = "runs", "configs", "logs"
STATUS_TXT, STATUS_JSON, SWEEP_CONFIG = "status.txt", "status.json", "sweep_config.json"

# Run states. `finished`: found finished, not rerun; `done`: finished by this sweep;
# `blocked`: not started because its teacher failed; `stopped`: interrupted (resumable).
WAITING, RUNNING, DONE, FINISHED = "waiting", "running", "done", "finished"
FAILED, BLOCKED, STOPPED = "failed", "blocked", "stopped"
COMPLETE = (DONE, FINISHED)

TPU_BASE_PORT = 8476


@dataclasses.dataclass
class Run:
  name: str                 # 'teacher' or '<method>/seed<k>'
  method: str
  seed: int
  workdir: str
  config: Any               # the run's full ConfigDict
  in_table: bool = True
  needs: Optional[str] = None  # the run that must finish first (its teacher)
  is_teacher: bool = False
  state: str = WAITING
  proc: Any = None
  slot: Optional[int] = None
  started: Optional[float] = None
  ended: Optional[float] = None
  rc: Optional[int] = None
  error: str = ""
  log_offsets: tuple = (0, 0)  # where this launch's stdout / stderr begin in the logs

  @property
  def key(self) -> str:
    return self.name.replace("/", "-")


@dataclasses.dataclass
class Plan:
  workdir: str
  runs: List[Run]
  methods: tuple
  seeds: tuple
  teacher_dir: str           # '' when no method needs a teacher
  teacher_note: str
  holdout: int = 0           # base.holdout: >0 evaluates on a held-out split

  def get(self, name: Optional[str]) -> Optional[Run]:
    return next((r for r in self.runs if r.name == name), None) if name else None

  def path(self, *parts) -> str:
    return os.path.join(self.workdir, *parts)


@dataclasses.dataclass
class SweepResult:
  plan: Plan
  rows: list
  paths: dict
  interrupted: bool = False

  @property
  def failed(self) -> List[Run]:
    return [r for r in self.plan.runs if r.state in (FAILED, BLOCKED)]


# ------------------------------------------------------------------ planning


def identity(config_dict: dict) -> dict:
  """What makes two runs the same run (keys that do not change the result removed)."""
  return {k: v for k, v in config_dict.items() if k not in workdir_lib.RESUME_SAFE_KEYS}


def needs_frozen_teacher(config) -> bool:
  spec = methods_lib.get_spec(config.method)
  return spec.needs_teacher and config.teacher.train != "joint"


def _check_sweep_config(sc) -> None:
  ms = tuple(sc.methods)
  if not ms:
    raise UserError("config.methods is empty; name at least one method (--methods=jointrd,resnet).")
  for m in ms:
    if m not in methods_lib.METHODS:
      raise UserError(f"unknown method {m!r} in config.methods; choose from "
                      f"{', '.join(methods_lib.METHODS)} (e.g. --methods=jointrd,resnet).")
  if len(set(ms)) != len(ms):
    raise UserError(f"config.methods={ms} names a method twice.")
  seeds = tuple(sc.seeds)
  if not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
    raise UserError(f"config.seeds={seeds} must be non-negative integers (--seeds=0,1,2).")
  if len(set(seeds)) != len(seeds):
    raise UserError(f"config.seeds={seeds} names a seed twice.")
  if sc.parallel < 0:
    raise UserError(f"config.parallel={sc.parallel} must be >= 1 (0 = one run per accelerator).")


def run_config(base, method: str, seed: int, teacher_dir: str):
  c = copy.deepcopy(base)
  c.method = method
  c.seed = seed
  c.teacher.checkpoint = teacher_dir if needs_frozen_teacher(c) else ""
  return c


def is_finished(workdir: str, config) -> bool:
  """The run in `workdir` finished all epochs of exactly `config`."""
  summary = workdir_lib.read_summary(workdir)
  if not summary or summary.get("epochs_done") != config.num_epochs:
    return False
  saved = epath.Path(workdir) / workdir_lib.CONFIG_FILE
  if not saved.exists():
    return False
  return identity(json.loads(saved.read_text())) == identity(
      workdir_lib.config_to_dict(config))


def plan(sc, workdir: str) -> Plan:
  """The runs of the sweep config `sc` under `workdir`, teacher first, then seed by seed."""
  from jointrd_jax import train  # pylint: disable=g-import-not-at-top

  _check_sweep_config(sc)
  wd = os.path.abspath(workdir)
  base, ms, seeds = sc.base, tuple(sc.methods), tuple(sc.seeds)

  def run_dir(method, seed):
    return os.path.join(wd, RUNS_SUBDIR, method, f"seed{seed}")

  teacher_dir, note, teacher_run = "", "", None
  teacher_name = None  # the run of this sweep that trains the teacher, if one does
  if any(needs_frozen_teacher(run_config(base, m, 0, "")) for m in ms):
    given = sc.teacher_checkpoint or base.teacher.checkpoint
    if given:
      teacher_dir = os.path.abspath(given)
      summary = workdir_lib.read_summary(teacher_dir)
      cfg = (epath.Path(teacher_dir) / workdir_lib.CONFIG_FILE)
      if summary is None or not cfg.exists() or summary.get("epochs_done") != json.loads(
          cfg.read_text()).get("num_epochs"):
        raise UserError(f"teacher_checkpoint {teacher_dir} holds no finished ResNet run "
                        "(no summary.json with all epochs done); train one with "
                        "configs/resnet.py or leave --config.teacher_checkpoint empty.")
      note = (f"Teacher: the given ResNet run {teacher_dir}, frozen, the same for every "
              "distillation run and seed.")
    else:
      t_cfg = train.teacher_config(base)
      t_cfg.seed = sc.teacher_seed
      own = run_config(base, "resnet", sc.teacher_seed, "")
      if ("resnet" in ms and sc.teacher_seed in seeds
          and identity(workdir_lib.config_to_dict(own)) == identity(
              workdir_lib.config_to_dict(t_cfg))):
        teacher_dir = run_dir("resnet", sc.teacher_seed)
        teacher_name = f"resnet/seed{sc.teacher_seed}"
        note = (f"Teacher: one ResNet for every distillation run and seed (as the paper), the "
                f"sweep's own resnet run of seed {sc.teacher_seed} ({teacher_dir}).")
      else:
        teacher_dir = os.path.join(wd, TEACHER)
        teacher_run = Run(TEACHER, "resnet", sc.teacher_seed, teacher_dir, t_cfg,
                          in_table=False, is_teacher=True)
        teacher_name = TEACHER
        note = (f"Teacher: one ResNet for every distillation run and seed (as the paper), "
                f"trained with seed {sc.teacher_seed} into {teacher_dir}.")

  runs = [teacher_run] if teacher_run else []
  for seed in seeds:
    for m in ms:
      c = run_config(base, m, seed, teacher_dir)
      r = Run(f"{m}/seed{seed}", m, seed, run_dir(m, seed), c)
      if r.name == teacher_name:
        r.is_teacher = True
        runs.insert(0, r)  # everything that needs it waits for it: start it first
        continue
      if needs_frozen_teacher(c) and teacher_name:
        r.needs = teacher_name
      runs.append(r)
  for r in runs:
    train.validate(r.config)
  return Plan(wd, runs, ms, seeds, teacher_dir, note, int(base.holdout))


# ------------------------------------------------------------------ devices


def detect_accelerators(platform: str = "auto", devices: int = 0):
  """(platform, device ids visible to this process) without initialising JAX."""
  platform = platform.lower()
  if platform not in ("auto", "gpu", "tpu", "cpu"):
    raise UserError(f"config.platform={platform!r}; choose auto, gpu, tpu or cpu.")
  gpu_ids, tpu_ids = _gpu_ids(), _tpu_ids()
  if platform == "auto":
    wanted = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
    if wanted in ("cuda", "gpu", "rocm"):
      platform = "gpu"
    elif wanted in ("tpu", "cpu"):
      platform = wanted
    else:
      platform = "gpu" if gpu_ids else "tpu" if tpu_ids else "cpu"
  ids = {"gpu": gpu_ids, "tpu": tpu_ids, "cpu": []}[platform]
  if devices:
    ids = ids[:devices] if len(ids) >= devices else [str(i) for i in range(devices)]
  if platform != "cpu" and not ids:
    raise UserError(f"found no {platform.upper()}s to pin runs to; give their number with "
                    "--config.devices=N (or --config.platform=cpu).")
  return platform, ids


def _gpu_ids() -> List[str]:
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    ids = [x.strip() for x in visible.split(",") if x.strip()]
    return [] if ids[:1] == ["-1"] else ids
  n = len(glob.glob("/proc/driver/nvidia/gpus/*"))
  return [str(i) for i in range(n)]


def _tpu_ids() -> List[str]:
  n = len(glob.glob("/dev/accel[0-9]*")) or len(glob.glob("/dev/vfio/[0-9]*"))
  return [str(i) for i in range(n)]


def slot_envs(platform: str, ids: List[str], parallel: int) -> List[Dict[str, str]]:
  """The environment of each of `parallel` slots: which devices a run there sees.

  One slot: no change, the run uses every device the sweep sees (data parallel). Several:
  GPUs are split into equal groups (one GPU each when `parallel` == their number); TPU
  runs get one chip each (libtpu's per-process chip bounds); CPU runs share the host.
  """
  if parallel <= 0:
    parallel = max(1, len(ids)) if platform != "cpu" else 1
  if parallel == 1:
    return [{}]
  if platform == "cpu":
    return [{} for _ in range(parallel)]
  if parallel > len(ids):
    raise UserError(f"--parallel {parallel} but this host has {len(ids)} {platform.upper()}(s); "
                    f"use at most {len(ids)} (one run per device).")
  if platform == "gpu":
    per = len(ids) // parallel
    return [{"CUDA_VISIBLE_DEVICES": ",".join(ids[i * per:(i + 1) * per])}
            for i in range(parallel)]
  envs = []
  for i in range(parallel):
    port = str(TPU_BASE_PORT + i)
    envs.append({"TPU_VISIBLE_CHIPS": ids[i], "TPU_VISIBLE_DEVICES": ids[i],
                 "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1",
                 "TPU_PROCESS_PORT": port, "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
                 "TPU_MESH_CONTROLLER_PORT": port})
  return envs


# ------------------------------------------------------------------ progress


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
    found = _ETA.findall(_tail(plan.path(LOGS_SUBDIR, r.key + ".out"), r.log_offsets[0]))
    eta = found[-1] if found else "?"
  return {"epochs_done": done, "num_epochs": int(r.config.num_epochs), "eta": eta}


def _clock(seconds: Optional[float]) -> str:
  return reporting.format_eta(seconds) if seconds is not None else "?"


def status(plan: Plan, slots: List[Dict[str, str]], started: float) -> dict:
  runs = []
  for r in plan.runs:
    p = progress(plan, r)
    runs.append(dict(name=r.name, method=r.method, seed=r.seed, state=r.state,
                     workdir=r.workdir, teacher=r.is_teacher, needs=r.needs,
                     started=r.started, ended=r.ended, rc=r.rc, error=r.error,
                     devices=slots[r.slot] if r.slot is not None else None, **p))
  counts = {s: sum(1 for r in plan.runs if r.state == s)
            for s in (WAITING, RUNNING, DONE, FINISHED, FAILED, BLOCKED, STOPPED)}
  # A rough sweep ETA: what the running runs say, plus the waiting ones at the mean
  # duration of the runs this sweep finished, over the slots.
  took = [r.ended - r.started for r in plan.runs if r.state == DONE]
  etas = [eta_seconds(x["eta"]) for x in runs if x["state"] == RUNNING]
  eta = None
  if took and all(e is not None for e in etas):
    eta = (sum(etas) + counts[WAITING] * sum(took) / len(took)) / max(1, len(slots))
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
          + f" | elapsed {_clock(st['elapsed_s'])}"
          + (f" | ETA ~{_clock(st['eta_s'])}" if st["eta_s"] is not None else ""))
  lines = [head]
  for x in st["runs"]:
    name = x["name"] + (" (teacher)" if x["teacher"] and x["name"] != TEACHER else "")
    ep = f"epoch {x['epochs_done']}/{x['num_epochs']}"
    if x["state"] == RUNNING:
      detail = f"{ep}  ETA {x['eta']}" + _where(x["devices"] or {})
    elif x["state"] == WAITING:
      detail = ep + (f"  (after {x['needs']})" if x["needs"] else "")
    elif x["state"] in COMPLETE:
      detail = ep + ("  (finished before)" if x["state"] == FINISHED else
                     f"  took {_clock(x['ended'] - x['started'])}")
    else:
      detail = f"{ep}  {x['error']}"
    lines.append(f"  {x['state']:<8} {name:<28} {detail}")
  return "\n".join(lines)


def _write(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


# ------------------------------------------------------------------ execution


def _say(text: str) -> None:
  print(text, flush=True)


class _Terminated(Exception):
  """SIGTERM to the sweep: stop the runs (they checkpoint), then stop."""


def command(cfg_path: str, workdir: str) -> List[str]:
  """The command line of one run (`experiments.main` with its config from JSON)."""
  return [sys.executable, "-m", "experiments.main", f"--config={FROM_JSON}:{cfg_path}",
          f"--workdir={workdir}"]


def _launch(plan: Plan, r: Run, slot: int, env_extra: Dict[str, str]) -> None:
  cfg_path = plan.path(CONFIGS_SUBDIR, r.key + ".json")
  _write(cfg_path, json.dumps(workdir_lib.config_to_dict(r.config), indent=2, sort_keys=True))
  env = dict(os.environ)
  env.update(env_extra)
  env["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), env.get("PYTHONPATH")) if x)
  cmd = command(cfg_path, r.workdir)
  # Appended to: a relaunch (resume) keeps the earlier attempts' logs above its own.
  with open(plan.path(LOGS_SUBDIR, r.key + ".out"), "a") as out, \
       open(plan.path(LOGS_SUBDIR, r.key + ".err"), "a") as err:
    for f in (out, err):
      f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} launched by the sweep"
              f"{_where(env_extra)}: {' '.join(cmd)}\n")
      f.flush()
    r.log_offsets = (out.tell(), err.tell())
    # Own session: a Ctrl-C in the terminal reaches the sweep only, which then stops each
    # run with SIGTERM (the trainer's preemption signal: it checkpoints first).
    r.proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                              start_new_session=True)
  r.state, r.slot, r.started, r.ended, r.rc, r.error = RUNNING, slot, time.time(), None, None, ""


def _reap(plan: Plan, r: Run) -> None:
  r.rc, r.ended = r.proc.returncode, time.time()
  r.proc = None
  if is_finished(r.workdir, r.config):
    r.state = DONE
    return
  r.state = FAILED
  err = last_line(plan.path(LOGS_SUBDIR, r.key + ".err"), r.log_offsets[1])
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


def _where(env: Dict[str, str]) -> str:
  shown = [f"{k}={env[k]}" for k in ("CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS") if k in env]
  return f" [{' '.join(shown)}]" if shown else ""


def execute(plan: Plan, slots: List[Dict[str, str]], *, say: Callable[[str], None] = _say,
            poll_s: float = 0.2, status_every_s: float = 60.0) -> bool:
  """Runs every waiting run of `plan`; returns False when interrupted (runs stopped).

  Prints one line per start / end / failure, and the whole status table at the start,
  every `status_every_s` and at the end; DIR/status.{txt,json} follow every change.
  """
  free = list(range(len(slots)))
  started = time.time()
  last_table = time.time()

  def now():
    return time.strftime("%H:%M:%S")

  def update(table: bool):
    st = status(plan, slots, started)
    text = render_status(st)
    _write(plan.path(STATUS_TXT), text + "\n")
    _write(plan.path(STATUS_JSON), json.dumps(st, indent=2))
    if table:
      say(text)

  try:
    first = True
    while True:
      changed = False
      for r in plan.runs:
        if r.state == RUNNING and r.proc.poll() is not None:
          _reap(plan, r)
          free.append(r.slot)
          changed = True
          if r.state == DONE:
            s = workdir_lib.read_summary(r.workdir)
            say(f"[{now()}] done {r.name}: final {s.get('eval_split')} top-1 "
                f"{s['final'].get('student_top1', float('nan')):.2f} "
                f"(took {_clock(r.ended - r.started)})")
          else:
            say(f"[{now()}] FAILED {r.name} ({r.error}); its log: "
                f"{plan.path(LOGS_SUBDIR, r.key + '.err')}")
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
          say(f"[{now()}] started {r.name}{_where(slots[slot])}; log "
              f"{plan.path(LOGS_SUBDIR, r.key + '.out')}")
      active = any(r.state in (RUNNING, WAITING) for r in plan.runs)
      table = first or not active or time.time() - last_table >= status_every_s
      if changed or table:
        update(table)
        if table:
          last_table = time.time()
      first = False
      if not active:
        break
      time.sleep(poll_s)
  except (KeyboardInterrupt, _Terminated):
    running = [r for r in plan.runs if r.state == RUNNING]
    say(f"[{now()}] interrupted: stopping {len(running)} run(s) "
        "(each saves a checkpoint first)...")
    _stop(running)
    update(True)
    return False
  return True


# ------------------------------------------------------------------ results


def aggregate(plan: Plan) -> tuple:
  """(rows, curves, notes) from the plan's finished runs."""
  summaries = {m: [] for m in plan.methods}
  curves = {m: [] for m in plan.methods}
  for r in plan.runs:
    if r.in_table and r.state in COMPLETE:
      summaries[r.method].append(workdir_lib.read_summary(r.workdir))
      curves[r.method].append([x for x in reporting.read_metrics(r.workdir)
                               if x.get("split") == "eval"])
  rows = results.aggregate(summaries, plan.methods)
  notes = [plan.teacher_note] if plan.teacher_note else []
  if plan.holdout and not any(row["n_seeds"] for row in rows):
    notes.append(f"Held-out validation: the runs evaluate on {plan.holdout} held-out training "
                 "images, not on the test set.")
  for row in rows:
    if row["n_seeds"] < len(plan.seeds):
      missing = [f"seed {r.seed} {r.state}" for r in plan.runs
                 if r.in_table and r.method == row["method"] and r.state not in COMPLETE]
      notes.append(f"{row['label']}: {row['n_seeds']} of {len(plan.seeds)} seeds finished "
                   f"({', '.join(missing)}).")
  return rows, curves, notes


def run(sc, workdir: str, *, say: Callable[[str], None] = _say, poll_s: float = 0.2,
        only_report: bool = False) -> SweepResult:
  """The whole sweep: plan, skip finished runs, run the rest, write the results."""
  p = plan(sc, workdir)
  platform, ids = detect_accelerators(sc.platform, sc.devices)
  slots = slot_envs(platform, ids, sc.parallel)
  for sub in (RUNS_SUBDIR, CONFIGS_SUBDIR, LOGS_SUBDIR):
    try:
      os.makedirs(p.path(sub), exist_ok=True)
    except OSError as e:
      raise UserError(f"cannot write to the sweep's workdir {p.workdir} ({e.strerror or e}); "
                      "choose a writable --workdir.") from None
  for r in p.runs:
    if is_finished(r.workdir, r.config):
      r.state = FINISHED
  _write(p.path(SWEEP_CONFIG), sc.to_json_best_effort(indent=2, sort_keys=True))
  todo = sum(1 for r in p.runs if r.state == WAITING)
  if len(slots) == 1:
    pin = f"on all the {platform.upper()} devices it sees"
  elif platform == "cpu":
    pin = "separate processes sharing the CPU"
  else:
    pin = "pinned to " + ", ".join(_where(e).strip(" []") for e in slots)
  say(f"[{time.strftime('%H:%M:%S')}] Table 12 sweep: {len(p.methods)} method(s) x "
      f"{len(p.seeds)} seed(s) in {p.workdir}: {len(p.runs) - todo} run(s) finished before, "
      f"{todo} to run, {len(slots)} at a time ({pin}).")
  if p.teacher_note:
    say(p.teacher_note)

  completed = True
  if only_report or not todo:
    say(render_status(status(p, slots, time.time())))
  else:
    handler_set = False
    try:
      old = signal.signal(signal.SIGTERM, _raise_terminated)
      handler_set = True
    except ValueError:  # not the main thread: no handler
      pass
    try:
      completed = execute(p, slots, say=say, poll_s=poll_s, status_every_s=sc.status_every_s)
    finally:
      if handler_set:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)

  rows, curves, notes = aggregate(p)
  paths = results.write(p.workdir, rows, curves, notes)
  say(results.render_markdown(rows, notes))
  say(f"results: {paths['md']}, {paths['csv']}"
      + (f", {paths['png']}" if "png" in paths else f" ({paths.get('png_error')})"))
  return SweepResult(p, rows, paths, interrupted=not completed)


def _raise_terminated(signum, frame):
  del signum, frame
  raise _Terminated()
