"""What a sweep runs: one `Run` per method x seed (and the teacher), each with its full
config, its workdir and the one command line that every launcher runs for it."""
import copy
import dataclasses
import json
import os
import pathlib
import sys
from typing import Any, List, Optional

from etils import epath

from jointrd_jax import methods as methods_lib
from jointrd_jax.errors import UserError
from jointrd_jax.training import checkpoints, reporting, run_setup, teachers
from jointrd_jax.training import workdir as workdir_lib

ROOT = pathlib.Path(__file__).resolve().parents[2]  # holds experiments/ and configs/
FROM_JSON = ROOT / "configs" / "from_json.py"
TEACHER = "teacher"
RUNS_SUBDIR, CONFIGS_SUBDIR, LOGS_SUBDIR, SLURM_SUBDIR = "runs", "configs", "logs", "slurm"
STATUS_TXT, STATUS_JSON, SWEEP_CONFIG = "status.txt", "status.json", "sweep_config.json"
LAUNCHERS = ("local", "slurm")

# Run states. `finished`: found finished, not rerun; `done`: finished by this sweep;
# `blocked`: not started because its teacher failed; `stopped`: interrupted (resumable).
WAITING, RUNNING, DONE, FINISHED = "waiting", "running", "done", "finished"
FAILED, BLOCKED, STOPPED = "failed", "blocked", "stopped"
COMPLETE = (DONE, FINISHED)
STATES = (WAITING, RUNNING, DONE, FINISHED, FAILED, BLOCKED, STOPPED)


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
  proc: Any = None          # local launcher: its subprocess
  slot: Optional[int] = None
  where: str = ""           # where it runs: 'GPU 0', 'CPU', 'SLURM job 12_3', ...
  job: str = ""             # SLURM launcher: '12' or '13_2'
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

  def log(self, r: Run, ext: str) -> str:
    return self.path(LOGS_SUBDIR, f"{r.key}.{ext}")


def identity(config_dict: dict) -> dict:
  """What makes two runs the same run (keys that do not change the result removed)."""
  return {k: v for k, v in config_dict.items() if k not in workdir_lib.RESUME_SAFE_KEYS}


def needs_frozen_teacher(config) -> bool:
  return (methods_lib.needs_teacher(config.method, config.get("terms", ""))
          and config.teacher.train != "joint")


def _check_int(name: str, value, low: int, hint: str) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < low:
    raise UserError(f"config.{name}={value!r} must be an integer >= {low} ({hint}).")


def check_sweep_config(sc) -> None:
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
  _check_int("parallel", sc.parallel, 0, "runs at once; 0 = accelerators x runs_per_device")
  _check_int("runs_per_device", sc.runs_per_device, 1, "runs sharing one accelerator")
  if sc.launcher not in LAUNCHERS:
    raise UserError(f"config.launcher={sc.launcher!r}; choose local (this machine) or slurm "
                    "(--launcher=slurm submits the runs with sbatch).")
  if sc.launcher == "slurm":
    s = sc.slurm
    for key in ("gpus_per_task", "cpus_per_task", "max_parallel"):
      _check_int(f"slurm.{key}", s[key], 0, "0 = not passed to sbatch")
    if sc.runs_per_device != 1:
      raise UserError(f"runs_per_device={sc.runs_per_device} applies to the local launcher only; "
                      "with --launcher=slurm SLURM places each run (set slurm.gpus_per_task).")
    if not all(isinstance(x, str) and x.startswith("-") for x in s.extra):
      raise UserError(f"config.slurm.extra={tuple(s.extra)!r} must be sbatch options, e.g. "
                      "--config.slurm.extra=\"('--qos=high', '--account=me')\".")
  _refuse_other_launchers_keys(sc)


def _refuse_other_launchers_keys(sc) -> None:
  """The keys of the launcher not chosen would change nothing: refused."""
  if sc.launcher == "slurm":
    unused = [(k, sc[k]) for k in ("parallel", "devices") if sc[k]]
    unused += [("platform", sc.platform)] if sc.platform != "auto" else []
    where = "the local launcher only; with --launcher=slurm SLURM places each run"
  else:
    unused = [(f"slurm.{k}", v) for k, v in sc.slurm.items() if v]
    where = "--launcher=slurm only"
  for key, value in unused:
    raise UserError(f"--config.{key}={value} applies to {where}, so it would change nothing; "
                    "drop it.")


def _set_loss_settings(base):
  """`[(term, key)]` of the base config's loss settings that are set (not None)."""
  return [(term, key) for term, settings in base.loss.to_dict().items()
          for key, value in settings.items() if value is not None]


def check_data_present(base) -> None:
  """A dataset given by a path (`npz:`, `imagefolder:`, `cifar*_python:`) must exist before
  any run starts: the runs run in the repository root, so a relative path is read there."""
  kind, sep, path = str(base.dataset).partition(":")
  if not sep or not path:
    return
  where = path if os.path.isabs(path) else os.path.join(str(ROOT), path)
  if not os.path.exists(where):
    how = (f"write it with `python -m experiments.make_digits --out={path}` (scikit-learn's "
           "digits), or" if kind == "npz" and "digits" in path else "")
    raise UserError(f"--config.base.dataset={base.dataset}: {where} does not exist (the runs "
                    f"read relative paths from {ROOT}); {how} give the path of your data.")


def check_base_settings(sc) -> None:
  """The base config is shared by every run, so a loss or teacher setting need only apply
  to some of the sweep's methods (`run_config` leaves it out of the others); one that
  applies to none of them would change nothing and is refused."""
  base, ms = sc.base, tuple(sc.methods)
  check_data_present(base)
  uses = {m: {w.name for w in methods_lib.resolve_terms(m, base.terms)} for m in ms}
  for term, key in _set_loss_settings(base):
    if not any(term in used for used in uses.values()):
      raise UserError(f"--config.base.loss.{term}.{key}={base.loss[term][key]}: no method of "
                      f"the sweep ({', '.join(ms)}) has a {term} term, so the setting would "
                      "change nothing; drop it or add a method with that term (--methods).")
  if not any(methods_lib.needs_teacher(m, base.terms) for m in ms):
    given = [(f"base.teacher.{k}", base.teacher[k])
             for k, unset in methods_lib.TEACHER_UNSET.items() if base.teacher[k] != unset]
    given += [("teacher_checkpoint", sc.teacher_checkpoint)] if sc.teacher_checkpoint else []
    for key, value in given:
      raise UserError(f"--config.{key}={value}: no method of the sweep ({', '.join(ms)}) has "
                      "a teacher, so the setting would change nothing; drop it.")
  trains_teacher = (any(needs_frozen_teacher(run_config(base, m, 0, "")) for m in ms)
                    and not (sc.teacher_checkpoint or base.teacher.checkpoint))
  if sc.teacher_seed and not trains_teacher:
    raise UserError(f"--config.teacher_seed={sc.teacher_seed}: the sweep trains no teacher (a "
                    "teacher checkpoint is given, or no method has a frozen teacher), so the "
                    "setting would change nothing; drop it.")


def run_config(base, method: str, seed: int, teacher_dir: str):
  """The config of one run: `base` with its method, seed and teacher, without the loss and
  teacher settings that apply to other methods of the sweep only."""
  c = copy.deepcopy(base)
  c.method = method
  c.seed = seed
  used = {w.name for w in methods_lib.resolve_terms(method, c.terms)}
  for term, key in _set_loss_settings(c):
    if term not in used:
      c.loss[term][key] = None
  if not methods_lib.needs_teacher(method, c.terms):
    c.teacher.update(methods_lib.TEACHER_UNSET)
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
  return not workdir_lib.differences(json.loads(saved.read_text()), config)


def imported(run_dir: str) -> bool:
  """A network written by `experiments.convert_torch` (config.json and the one checkpoint
  of step 0), never trained here: no summary.json, no metrics."""
  return (not os.path.exists(os.path.join(run_dir, workdir_lib.SUMMARY_FILE))
          and not os.path.exists(os.path.join(run_dir, reporting.METRICS_FILE))
          and os.path.isdir(os.path.join(run_dir, checkpoints.CHECKPOINT_DIR, "0")))


def check_teacher_run(teacher_dir: str) -> dict:
  """A given teacher must be a finished run (summary.json with all epochs of its
  config.json done) or an imported network (`imported`); returns its config as a dict."""
  summary = workdir_lib.read_summary(teacher_dir)
  cfg = epath.Path(teacher_dir) / workdir_lib.CONFIG_FILE
  config = json.loads(cfg.read_text()) if cfg.exists() else {}
  finished = summary is not None and summary.get("epochs_done") == config.get("num_epochs")
  if not config or not (finished or imported(teacher_dir)):
    raise UserError(f"teacher_checkpoint {teacher_dir} holds no finished ResNet run "
                    "(no summary.json with all epochs done) and no imported network "
                    "(experiments.convert_torch); train one with configs/resnet.py or leave "
                    "--config.teacher_checkpoint empty.")
  return config


def plan(sc, workdir: str) -> Plan:
  """The runs of the sweep config `sc` under `workdir`, teacher first, then seed by seed."""

  check_sweep_config(sc)
  wd = os.path.abspath(workdir)
  base, ms, seeds = sc.base, tuple(sc.methods), tuple(sc.seeds)
  check_base_settings(sc)

  def run_dir(method, seed):
    return os.path.join(wd, RUNS_SUBDIR, method, f"seed{seed}")

  teacher_dir, note, teacher_run = "", "", None
  teacher_name = None  # the run of this sweep that trains the teacher, if one does
  if any(needs_frozen_teacher(run_config(base, m, 0, "")) for m in ms):
    given = sc.teacher_checkpoint or base.teacher.checkpoint
    if given:
      teacher_dir = os.path.abspath(given)
      check_teacher_run(teacher_dir)
      note = (f"Teacher: the given ResNet run {teacher_dir}, frozen, the same for every "
              "distillation run and seed.")
    else:
      t_cfg = teachers.teacher_config(base)
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
    run_setup.validate(r.config)
  return Plan(wd, runs, ms, seeds, teacher_dir, note, int(base.holdout))


def command(cfg_path: str, workdir: str) -> List[str]:
  """The command line of one run (`experiments.main` with its config from JSON), the same
  for every launcher."""
  return [sys.executable, "-m", "experiments.main", f"--config={FROM_JSON}:{cfg_path}",
          f"--workdir={workdir}"]


def write_text(path: str, text: str) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def prepare(p: Plan, r: Run) -> List[str]:
  """Writes the run's config as DIR/configs/<run>.json; returns its command line."""
  cfg_path = p.path(CONFIGS_SUBDIR, r.key + ".json")
  write_text(cfg_path, json.dumps(workdir_lib.config_to_dict(r.config), indent=2,
                                  sort_keys=True))
  return command(cfg_path, r.workdir)


def python_path() -> str:
  """PYTHONPATH for a run: the repository first (experiments/, configs/), then the caller's."""
  return os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH")) if x)


def open_logs(p: Plan, r: Run, header: str):
  """Opens the run's logs for appending (a relaunch keeps the earlier attempts' logs above
  its own), writes `header` to both and records where this launch's part begins."""
  out, err = open(p.log(r, "out"), "a"), open(p.log(r, "err"), "a")
  for f in (out, err):
    f.write(header + "\n")
    f.flush()
  r.log_offsets = (out.tell(), err.tell())
  return out, err
