"""Many runs in one command (the paper's Table 12): plan, launch, track, aggregate.

`run(sweep_config, workdir)` takes a `configs/table12.py` config and

1. **plans** one run per method x seed, each in `DIR/runs/<method>/seed<k>/` with its full
   config (`base` with `method`, `seed` and the teacher set), and the teacher
   (`planning`);
2. **skips** runs that finished before (`summary.json` has `epochs_done == num_epochs` and
   `config.json` is this very config); an interrupted run is relaunched and resumes from
   its last checkpoint (that is `experiments.main`'s own resume);
3. **launches** each run as `python -m experiments.main
   --config=configs/from_json.py:DIR/configs/<run>.json --workdir=...`, either
   - `launcher='local'` (`local`): subprocesses of this machine, at most `parallel` at a
     time, `runs_per_device` per accelerator, each pinned by environment variables
     (`devices`); a distillation run starts once its teacher has finished; or
   - `launcher='slurm'` (`slurm`): the teacher as one SLURM job, the other runs as one job
     array that depends on it; with `slurm.wait` the sweep follows them until they end;
4. **tracks** them (`tracking`): a status table (done / running / waiting / failed, epoch,
   ETA, where each run is) on stdout on every change and every `status_every_s`, also in
   `DIR/status.txt` and `status.json`;
5. **aggregates** the finished runs into `DIR/results.{md,csv,png}`
   (`jointrd_jax.training.results`), also when some runs failed or the sweep was interrupted.

The teacher: one ResNet for the whole sweep, as the paper (one pretrained teacher; the seeds
measure the spread of the student given it). It is `teacher_checkpoint` when given, else it
is trained with `teacher_seed`: by the sweep's own `resnet` run of that seed when that run
has exactly the teacher's config (the default), else into `DIR/teacher`.

The sweep process itself never initialises a JAX backend (on a GPU host that would claim
every GPU's memory before the runs start): it only reads and writes files.
"""
import dataclasses
import os
import signal
import time
from typing import Callable, Dict, List, Optional

from jointrd_jax.training import reporting, results
from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import devices, local, planning, slurm
from jointrd_jax.sweep.devices import detect_accelerators, slot_envs, slots
from jointrd_jax.sweep.planning import (BLOCKED, COMPLETE, DONE, FAILED, FINISHED, RUNNING,
                                        STOPPED, WAITING, Plan, Run, is_finished, plan,
                                        run_config)
from jointrd_jax.sweep.tracking import eta_seconds, progress, render_status, status


def _has_checkpoint(run_dir: str) -> bool:
  """Whether a run's workdir holds a saved checkpoint (orbax names a step's folder by the
  step number); read from the file system only, like the rest of the sweep."""
  d = os.path.join(run_dir, "checkpoints")
  return os.path.isdir(d) and any(n.isdigit() for n in os.listdir(d))


def stopped_hint(p: Plan) -> str:
  """What an interrupted local sweep tells the user: which stopped runs resume from a
  checkpoint and which start afresh."""
  stopped = [r for r in p.runs if r.state == STOPPED]
  afresh = [r.name for r in stopped if not _has_checkpoint(r.workdir)]
  if not stopped:
    return "rerun the same command to continue the sweep."
  if not afresh:
    return (f"the {len(stopped)} stopped run(s) saved checkpoints; rerun the same command "
            "to resume them.")
  if len(afresh) == len(stopped):
    return (f"the {len(stopped)} stopped run(s) had not saved a checkpoint yet and start "
            "afresh; rerun the same command to continue the sweep.")
  return (f"{len(stopped) - len(afresh)} of the {len(stopped)} stopped runs saved checkpoints "
          f"and resume from them; {', '.join(afresh)} had not and start afresh; rerun the "
          "same command to continue the sweep.")


def _say(text: str) -> None:
  print(text, flush=True)


@dataclasses.dataclass
class SweepResult:
  plan: Plan
  rows: list
  paths: dict
  interrupted: bool = False
  jobs: Dict[str, str] = dataclasses.field(default_factory=dict)  # SLURM job ids
  hint: str = ""             # what to do next, when interrupted or submitted

  @property
  def failed(self) -> List[Run]:
    return [r for r in self.plan.runs if r.state in (FAILED, BLOCKED)]


def aggregate(p: Plan) -> tuple:
  """(rows, curves, notes) from the plan's finished runs."""
  summaries = {m: [] for m in p.methods}
  curves = {m: [] for m in p.methods}
  for r in p.runs:
    if r.in_table and r.state in COMPLETE:
      summaries[r.method].append(workdir_lib.read_summary(r.workdir))
      curves[r.method].append([x for x in reporting.read_metrics(r.workdir)
                               if x.get("split") == "eval"])
  rows = results.aggregate(summaries, p.methods)
  notes = [p.teacher_note] if p.teacher_note else []
  if p.holdout and not any(row["n_seeds"] for row in rows):
    notes.append(f"Held-out validation: the runs evaluate on {p.holdout} held-out training "
                 "images, not on the test set.")
  for row in rows:
    if row["n_seeds"] < len(p.seeds):
      missing = [f"seed {r.seed} {r.state}" for r in p.runs
                 if r.in_table and r.method == row["method"] and r.state not in COMPLETE]
      notes.append(f"{row['label']}: {row['n_seeds']} of {len(p.seeds)} seeds finished "
                   f"({', '.join(missing)}).")
  return rows, curves, notes


def _prepare_dirs(p: Plan) -> None:
  for sub in (planning.RUNS_SUBDIR, planning.CONFIGS_SUBDIR, planning.LOGS_SUBDIR):
    try:
      os.makedirs(p.path(sub), exist_ok=True)
    except OSError as e:
      raise UserError(f"cannot write to the sweep's workdir {p.workdir} ({e.strerror or e}); "
                      "choose a writable --workdir.") from None


class _SigtermAsException:
  """SIGTERM raises `local.Terminated` inside the block (main thread only)."""

  def __enter__(self):
    self.old, self.set = None, False
    try:
      self.old = signal.signal(signal.SIGTERM, _raise_terminated)
      self.set = True
    except ValueError:  # not the main thread: no handler
      pass

  def __exit__(self, *exc):
    if self.set:
      signal.signal(signal.SIGTERM, self.old if self.old is not None else signal.SIG_DFL)


def _raise_terminated(signum, frame):
  del signum, frame
  raise local.Terminated()


def run(sc, workdir: str, *, say: Callable[[str], None] = _say,
        poll_s: Optional[float] = None, only_report: bool = False) -> SweepResult:
  """The whole sweep: plan, skip finished runs, run (or submit) the rest, write the results.

  `poll_s`: how often runs are checked (default 0.2 s locally, 5 s with SLURM's squeue).
  With `launcher='slurm'` and no `slurm.wait` it returns once the jobs are submitted,
  without results (`SweepResult.jobs` has their ids).
  """
  p = plan(sc, workdir)
  if only_report and not (os.path.isdir(p.path(planning.RUNS_SUBDIR))
                          or os.path.isfile(p.path(planning.SWEEP_CONFIG))):
    raise UserError(f"--report_only: {p.workdir} holds no sweep (no runs/ or "
                    f"{planning.SWEEP_CONFIG}), so there is nothing to report; pass the "
                    "--workdir of a sweep, or drop --report_only to run one.")
  use_slurm = sc.launcher == "slurm"
  if not use_slurm:
    platform, ids = detect_accelerators(sc.platform, sc.devices)
    slot_list = slots(platform, ids, sc.parallel, sc.runs_per_device)
  _prepare_dirs(p)
  for r in p.runs:
    if is_finished(r.workdir, r.config):
      r.state = FINISHED
  planning.write_text(p.path(planning.SWEEP_CONFIG),
                      sc.to_json_best_effort(indent=2, sort_keys=True))
  todo = sum(1 for r in p.runs if r.state == WAITING)
  how = ("submitted to SLURM" if use_slurm and not only_report else
         devices.describe(slot_list, platform) if not use_slurm else "report only")
  say(f"[{time.strftime('%H:%M:%S')}] Table 12 sweep: {len(p.methods)} method(s) x "
      f"{len(p.seeds)} seed(s) in {p.workdir}: {len(p.runs) - todo} run(s) finished before, "
      f"{todo} to run, {how}.")
  if p.teacher_note:
    say(p.teacher_note)
  banner = results.smoke_banner(sc.base.dataset)
  if banner:
    say(banner.replace("**", ""))

  completed, jobs, hint = True, {}, ""
  queued = slurm.previous_jobs(p)
  if only_report or not todo:
    if queued:
      say(f"note: SLURM jobs {','.join(queued)} of this sweep are still queued or running; "
          "the table counts the runs finished so far.")
    say(render_status(status(p, 1, time.time())))
  elif queued and not use_slurm:
    raise UserError(f"SLURM jobs {','.join(queued)} of this sweep are still queued or running "
                    f"(squeue -j {','.join(queued)}); wait for them or cancel them "
                    f"(scancel {' '.join(queued)}) before running the sweep locally.")
  elif use_slurm:
    jobs = slurm.submit(p, sc, say)
    if not sc.slurm.wait:
      say(render_status(status(p, 1, time.time())))
      hint = ("when they have ended, the same command with --report_only writes the table "
              f"({p.path(results.RESULTS_MD)}); or add --wait to follow them")
      say(hint)
      return SweepResult(p, [], {}, jobs=jobs, hint=hint)
    try:
      with _SigtermAsException():
        slurm.wait(p, sc, say=say, poll_s=5.0 if poll_s is None else poll_s)
    except (KeyboardInterrupt, local.Terminated):
      completed = False
      hint = (f"stopped waiting; the SLURM jobs keep running (squeue -j {slurm.id_list(jobs)}); "
              "when they have ended, the same command with --report_only writes the table.")
  else:
    with _SigtermAsException():
      completed = local.execute(p, slot_list, say=say,
                                poll_s=0.2 if poll_s is None else poll_s,
                                status_every_s=sc.status_every_s)
    if not completed:
      hint = stopped_hint(p)

  rows, curves, notes = aggregate(p)
  paths = results.write(p.workdir, rows, curves, notes)
  say(results.render_markdown(rows, notes))
  say(f"results: {paths['md']}, {paths['csv']}"
      + (f", {paths['png']}" if "png" in paths else f" ({paths.get('png_error')})"))
  return SweepResult(p, rows, paths, interrupted=not completed, jobs=jobs, hint=hint)
