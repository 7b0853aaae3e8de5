"""The Table 12 sweep end to end (`experiments.table12`, `jointrd_jax.sweep`), on real runs
and on a real single-node SLURM.

The smallest smoke runs (1 epoch of 2 steps; each run a subprocess of `experiments.main`):
one sweep of 2 methods x 2 seeds, one run at a time (the KD runs after their teacher, the
sweep's own resnet seed-0 run). Then one run is lost and one left unfinished, and the same
sweep is rerun with 2 runs per device (2 at once on the CPU): it redoes exactly those two,
at the same time, with the same numbers, and leaves the finished runs untouched. The sweep
evaluates on a held-out split, so the same runs show that the table says so.

SLURM (skipped, saying why, without sbatch / sinfo or with a busy cluster; `.ci/run`
starts one): the seed-0 runs submitted with `--launcher=slurm` give the local numbers, the
student after its teacher; stand-in runs (`sweep_helpers.FAKE_RUN`) show the job array's
dependency, site options, task -> run mapping, skipping finished runs and a failed teacher.
The parts without training are test_sweep.py.
"""
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import pytest

from jointrd_jax import methods as methods_lib, sweep
from jointrd_jax.training import reporting, results, workdir as workdir_lib
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import planning, slurm
from tests.sweep_helpers import (HOLDOUT, METHODS, OVERRIDES, SEEDS, fake_runs, fake_top1,
                                 run_dir as _run_dir, sweep_config)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _summary(workdir, method, seed):
  return workdir_lib.read_summary(_run_dir(workdir, method, seed))


def _evals(run_dir):
  return [r for r in reporting.read_metrics(run_dir) if r["split"] == "eval"]


def _span(run_dir):
  """When the run trained, from its own files: config.json is written after start-up
  (data loaded), summary.json at the very end."""
  return (os.stat(os.path.join(run_dir, "config.json")).st_mtime,
          os.stat(os.path.join(run_dir, "summary.json")).st_mtime)


def _mtimes(directory):
  return {os.path.relpath(os.path.join(d, f), directory): os.stat(os.path.join(d, f)).st_mtime_ns
          for d, _, files in os.walk(directory) for f in files}


def _status(workdir):
  with open(os.path.join(workdir, "status.json")) as f:
    return {r["name"]: r for r in json.load(f)["runs"]}


def _one_device_flags():
  """The runs of these sweeps see one CPU device (as a run pinned to one accelerator
  would): a third less CPU time than conftest's 8 fake devices."""
  return os.environ.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "--xla_force_host_platform_device_count=1")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """The 2 x 2 sweep, one run at a time, and what it left before anything else touches it."""
  workdir = str(tmp_path_factory.mktemp("table12"))
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("XLA_FLAGS", _one_device_flags())
    result = sweep.run(sweep_config(parallel=1), workdir, say=lines.append)
  assert not result.failed and not result.interrupted, "\n".join(lines)
  keys = [(m, s) for m in METHODS for s in SEEDS]
  return dict(
      workdir=workdir, result=result, lines=lines, status=_status(workdir),
      summaries={k: _summary(workdir, *k) for k in keys},
      curves={k: _evals(_run_dir(workdir, *k)) for k in keys},
      csv=open(os.path.join(workdir, "results.csv")).read())


@pytest.fixture(scope="module")
def rerun(swept):
  """resnet/seed1 is lost; kd_logits/seed1 stopped before its first checkpoint (its workdir
  holds config.json only). The same sweep, rerun with 2 runs per device (on the CPU: 2 at
  once), must redo just these two."""
  workdir = swept["workdir"]
  shutil.rmtree(_run_dir(workdir, "resnet", 1))
  unfinished = _run_dir(workdir, "kd_logits", 1)
  for name in os.listdir(unfinished):
    if name != "config.json":
      p = os.path.join(unfinished, name)
      shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
  untouched = {m: _mtimes(_run_dir(workdir, m, 0)) for m in METHODS}
  logs = {m: os.stat(os.path.join(workdir, "logs", f"{m}-seed0.out")).st_mtime_ns
          for m in METHODS}
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("XLA_FLAGS", _one_device_flags())
    result = sweep.run(sweep_config(parallel=0, runs_per_device=2), workdir, say=lines.append)
  assert not result.failed and not result.interrupted, "\n".join(lines)
  return dict(untouched=untouched, logs=logs, result=result, lines=lines,
              status=_status(workdir),
              spans={m: _span(_run_dir(workdir, m, 1)) for m in METHODS})


# ------------------------------------------------------------------ local, end to end


@pytest.mark.slow
def test_sweep_writes_the_table_from_the_runs_summaries(swept):
  workdir = swept["workdir"]
  assert {r.name: r.state for r in swept["result"].plan.runs} == {
      "resnet/seed0": "done", "resnet/seed1": "done",
      "kd_logits/seed0": "done", "kd_logits/seed1": "done"}
  table = results.read_csv(os.path.join(workdir, "results.csv"))
  md = open(os.path.join(workdir, "results.md")).read()
  assert list(table) == list(METHODS)
  for m in METHODS:
    final = [swept["summaries"][(m, s)]["final"]["student_top1"] for s in SEEDS]
    best = [swept["summaries"][(m, s)]["best"]["student_top1"] for s in SEEDS]
    row = table[m]
    assert row["n_seeds"] == "2" and row["seeds"] == "0 1"
    # results.csv: 4 decimals (no float noise).
    assert float(row["final_top1_mean"]) == pytest.approx(sum(final) / 2, abs=5e-5)
    assert float(row["final_top1_std"]) == pytest.approx(abs(final[0] - final[1]) / 2 ** 0.5,
                                                         abs=5e-5)
    assert float(row["best_top1_mean"]) == pytest.approx(sum(best) / 2, abs=5e-5)
    assert [float(x) for x in row["final_top1_per_seed"].split()] == pytest.approx(final,
                                                                                   abs=5e-5)
    md_row = next(line for line in md.splitlines()
                  if re.match(rf"\| {re.escape(results.LABELS[m])}( {results.PAPER_MARK})? \|",
                              line))
    assert f"| {sum(final) / 2:.2f} ± {statistics.stdev(final):.2f} |" in md_row
  assert table["resnet"]["paper_top1_mean"] == "78.39" and table["kd_logits"]["paper_top1_mean"] == ""
  assert "| 78.39 ± 0.40 |" in md and "resnet run of seed 0" in md
  marked = {m for m in METHODS for line in md.splitlines()
            if line.startswith(f"| {results.LABELS[m]} {results.PAPER_MARK} |")}
  assert marked == {"resnet"}  # the paper's rows only (kd_logits is not in Table 12)
  png = os.path.join(workdir, "results.png")
  with open(png, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  assert plt.imread(png).shape[2] in (3, 4)  # decodes
  # One teacher: the sweep's own resnet seed-0 run; the KD runs started once it had finished.
  for s in SEEDS:
    with open(os.path.join(_run_dir(workdir, "kd_logits", s), "config.json")) as f:
      assert json.load(f)["teacher"]["checkpoint"] == _run_dir(workdir, "resnet", 0)
    assert swept["status"][f"kd_logits/seed{s}"]["started"] >= swept["status"]["resnet/seed0"]["ended"]
  assert not os.path.exists(os.path.join(workdir, "teacher"))
  # Progress: running runs with their epoch, ETA and device, and the waiting ones.
  assert any("running  resnet/seed0" in line and "ETA" in line and "[CPU]" in line
             for line in swept["lines"])
  assert any("waiting  kd_logits/seed0" in line and "after resnet/seed0" in line
             for line in swept["lines"])


@pytest.mark.slow
def test_holdout_sweep_evaluates_on_it_and_the_table_says_so(swept):
  for summary in swept["summaries"].values():
    assert summary["eval_split"] == "holdout" and summary["num_eval"] == HOLDOUT
  md = open(os.path.join(swept["workdir"], "results.md")).read()
  assert "**held-out validation** split" in md and "**Held-out validation:**" in md
  assert "test set was not used" in md
  assert "holdout" in results.read_csv(os.path.join(swept["workdir"], "results.csv"))["resnet"]["eval_split"]


@pytest.mark.slow
def test_two_runs_per_device_overlap_and_match_one_at_a_time(swept, rerun):
  # parallel=1: each run started once the one before had ended.
  spans = sorted((r["started"], r["ended"]) for r in swept["status"].values())
  assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
  # runs_per_device=2: the two redone runs trained at the same time (by their own files).
  assert "2 at a time (separate processes sharing the CPU)" in rerun["lines"][0]
  (a0, a1), (b0, b1) = rerun["spans"]["resnet"], rerun["spans"]["kd_logits"]
  assert max(a0, b0) < min(a1, b1), rerun["spans"]
  # ... and gave the numbers of the one-at-a-time sweep exactly.
  workdir = swept["workdir"]
  for m in METHODS:
    redone = _summary(workdir, m, 1)
    assert redone["final"] == swept["summaries"][(m, 1)]["final"]
    assert redone["best"] == swept["summaries"][(m, 1)]["best"]
    assert _evals(_run_dir(workdir, m, 1)) == swept["curves"][(m, 1)]
  assert open(os.path.join(workdir, "results.csv")).read() == swept["csv"]


@pytest.mark.slow
def test_rerun_skips_finished_runs_and_redoes_the_rest(swept, rerun):
  workdir = swept["workdir"]
  assert {r.name: r.state for r in rerun["result"].plan.runs} == {
      "resnet/seed0": "finished", "kd_logits/seed0": "finished",
      "resnet/seed1": "done", "kd_logits/seed1": "done"}
  assert "2 run(s) finished before, 2 to run" in rerun["lines"][0]
  for m in METHODS:  # not relaunched, not a file touched
    assert _mtimes(_run_dir(workdir, m, 0)) == rerun["untouched"][m]
    assert os.stat(os.path.join(workdir, "logs", f"{m}-seed0.out")).st_mtime_ns == rerun["logs"][m]
    assert _summary(workdir, m, 1)["epochs_done"] == 1


def _cli(workdir, *args, env=None, timeout=120):
  overrides = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  return subprocess.run(
      [sys.executable, "-m", "experiments.table12", "--config=configs/table12.py:smoke",
       f"--workdir={workdir}", *overrides, *args],
      cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_cli_report_only_counts_the_seeds_that_finished(swept, rerun):
  del rerun  # after it: this rewrites the results
  workdir = swept["workdir"]
  p = _cli(workdir, "--methods=resnet,kd_logits", "--seeds=0,1,2", "--report_only")
  assert p.returncode == 0, p.stderr[-2000:]
  table = results.read_csv(os.path.join(workdir, "results.csv"))
  assert table["kd_logits"]["n_seeds"] == "2"
  md = open(os.path.join(workdir, "results.md")).read()
  assert "KD(logits): 2 of 3 seeds finished (seed 2 waiting)" in md
  assert not os.path.exists(_run_dir(workdir, "resnet", 2))  # nothing launched


def test_extended_sweep_config_holds_every_method_and_the_papers_recipe():
  from configs import table12, table12_extended  # pylint: disable=g-import-not-at-top
  c, base = table12_extended.get_config(), table12.get_config()
  # The paper's Table 12 rows with a number, derived from the presets' `paper_top1`.
  assert table12.TABLE12_METHODS == ("jointrd", "kd_logits_dirac", "kd_mse_all_dirac", "resnet")
  assert list(c.methods) == list(table12.TABLE12_METHODS + table12.OTHER_METHODS
                                 + table12_extended.EXTENDED_METHODS)
  assert (c.seeds, c.teacher_checkpoint, c.teacher_seed, c.base.to_dict()) == (
      base.seeds, base.teacher_checkpoint, base.teacher_seed, base.base.to_dict())
  smoke = table12_extended.get_config("smoke")
  assert list(smoke.methods) == list(table12.TABLE12_METHODS
                                     + table12_extended.EXTENDED_METHODS)
  assert sorted(c.methods) == sorted(methods_lib.METHODS)  # every preset, once


@pytest.mark.slow
def test_extended_sweep_smoke_runs_and_marks_only_the_papers_rows(tmp_path):
  # configs/table12_extended.py:smoke through the sweep, on one of the paper's rows and
  # two added methods (each added preset's own smoke run, learning included, is in
  # tests/test_train_presets.py): the results mark the paper's rows, and only those.
  methods = ("kd_logits_dirac", "jointrd_dkd", "jointrd_repvgg")
  p = subprocess.run(
      [sys.executable, "-m", "experiments.table12", "--config=configs/table12_extended.py:smoke",
       f"--config.methods={methods!r}", f"--workdir={tmp_path}", "--parallel=2"],
      cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-2000:])
  table = results.read_csv(os.path.join(tmp_path, "results.csv"))
  assert list(table) == list(methods)
  assert all(table[m]["n_seeds"] == "1" for m in methods), table
  md = open(os.path.join(tmp_path, "results.md")).read()
  marked = [line for line in md.splitlines() if line.startswith("| ") and " † |" in line]
  assert len(marked) == 1 and "KD(logits) + Dirac" in marked[0], marked
  assert "JointRD + DKD |" in md and "JointRD + RepVGG |" in md
  # One epoch of 4 steps cannot rank the methods: its results.md and output say so.
  banner = results.smoke_banner("synthetic")
  assert md.splitlines()[2] == banner and p.stdout.count(banner) == 1, p.stdout[-2000:]
  assert banner.replace("**", "") in p.stdout.splitlines()[:3]


# ------------------------------------------------------------------ a real SLURM


def _queue_ids():
  out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True,
                       timeout=60).stdout
  return out.split()


@pytest.fixture(scope="module")
def slurm_reachable():
  """Skips (once per module: a dead controller takes sinfo ~20 s to report) unless SLURM is
  installed and its controller answers."""
  missing = [t for t in ("sbatch", "sinfo", "squeue", "scontrol") if not shutil.which(t)]
  if missing:
    pytest.skip(f"SLURM is not installed here ({', '.join(missing)} not on PATH); .ci/run "
                "starts a single-node SLURM")
  p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
  if p.returncode != 0:
    pytest.skip(f"SLURM is installed but its controller does not answer ({p.stderr.strip()}); "
                ".ci/run starts a single-node SLURM")


@pytest.fixture
def cluster(slurm_reachable):  # pylint: disable=unused-argument,redefined-outer-name
  """A real SLURM that nothing else uses right now, or a skip saying what is missing."""
  deadline = time.time() + 20
  while True:
    p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=60)
    states, queued = set(p.stdout.split()), _queue_ids()
    if p.returncode == 0 and states == {"idle"} and not queued:
      return
    if time.time() > deadline:
      pytest.skip(f"the SLURM cluster is not idle (sinfo: {p.stdout.split() or p.stderr.strip()}, "
                  f"{len(queued)} job(s) queued); these tests need it to themselves")
    time.sleep(0.5)


def _wait_for_queue(ids, timeout):
  deadline = time.time() + timeout
  while set(_queue_ids()) & set(ids) or any(x.startswith(tuple(i + "_" for i in ids))
                                            for x in _queue_ids()):
    if time.time() > deadline:
      subprocess.run(["scancel", *ids], check=False)
      pytest.fail(f"SLURM jobs {ids} still queued after {timeout} s: {_queue_ids()}")
    time.sleep(0.5)


def _job(job_id):
  """`scontrol show job` of one job (the first task of an array) as {field: value}."""
  out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                       text=True, timeout=60, check=True).stdout.splitlines()[0]
  return dict(x.split("=", 1) for x in out.split() if "=" in x)


@pytest.mark.slow
def test_slurm_sweep_gives_the_local_numbers_with_the_student_after_its_teacher(
    swept, cluster, tmp_path):
  """resnet + kd_logits, seed 0, by `--launcher=slurm`: the teacher job, then a one-task
  array after it; the test follows squeue, then `--report_only` writes the table."""
  del cluster
  workdir = str(tmp_path / "slurm")
  env = {**os.environ, "XLA_FLAGS": _one_device_flags()}  # sbatch exports it to the jobs
  p = _cli(workdir, "--methods=resnet,kd_logits", "--seeds=0", "--launcher=slurm", env=env)
  assert p.returncode == 0, p.stderr[-2000:]
  with open(os.path.join(workdir, "slurm", "jobs.json")) as f:
    jobs = json.load(f)
  teacher, array = jobs["teacher"], jobs["array"]
  assert f"as SLURM job {teacher}" in p.stdout and f"squeue -j {teacher},{array}" in p.stdout
  assert "--report_only" in p.stdout
  # The array task runs the local launcher's very command (its output to the run's logs).
  run = _run_dir(workdir, "kd_logits", 0)
  local_cmd = planning.command(os.path.join(workdir, "configs", "kd_logits-seed0.json"), run)
  with open(os.path.join(workdir, "slurm", "array.txt")) as f:
    assert f.read().splitlines() == [
        f"{shlex.join(local_cmd)} >>{workdir}/logs/kd_logits-seed0.out "
        f"2>>{workdir}/logs/kd_logits-seed0.err"]
  _wait_for_queue([teacher, array], timeout=300)

  p = _cli(workdir, "--methods=resnet,kd_logits", "--seeds=0", "--report_only", env=env)
  assert p.returncode == 0, p.stderr[-2000:]
  # The dependency held: the student started (wrote config.json) after the teacher ended.
  teacher_end = os.stat(os.path.join(_run_dir(workdir, "resnet", 0), "summary.json")).st_mtime
  assert teacher_end <= os.stat(os.path.join(run, "config.json")).st_mtime
  # The local launcher's numbers, exactly.
  table = results.read_csv(os.path.join(workdir, "results.csv"))
  for m in METHODS:
    local = swept["summaries"][(m, 0)]
    assert _summary(workdir, m, 0)["final"] == local["final"]
    assert _evals(_run_dir(workdir, m, 0)) == swept["curves"][(m, 0)]
    assert table[m]["n_seeds"] == "1"
    assert float(table[m]["final_top1_mean"]) == round(local["final"]["student_top1"], 4)
  assert _job(teacher)["JobState"] == "COMPLETED" and _job(array)["JobState"] == "COMPLETED"


def _slurm_config(**overrides):
  return sweep_config(launcher="slurm", **{"slurm.partition": "debug", "slurm.time": "10:00",
                                           "slurm.extra": ("--comment=t12-test",),
                                           **overrides})


def test_slurm_array_waits_for_the_teacher_job_and_skips_finished_runs(
    cluster, tmp_path, monkeypatch):
  del cluster
  fake_runs(monkeypatch, tmp_path, "gate")  # resnet/seed0 waits for its gate file
  workdir = str(tmp_path / "w")
  lines = []
  sc = _slurm_config(**{"slurm.max_parallel": 2})
  result = sweep.run(sc, workdir, say=lines.append)
  jobs = result.jobs
  try:
    teacher, array = _job(jobs["teacher"]), _job(jobs["array"])
    assert f"afterok:{jobs['teacher']}" in array["Dependency"]
    deadline = time.time() + 30  # SLURM's scheduler sets the reason on its next pass
    while array["Reason"] == "None" and time.time() < deadline:
      time.sleep(0.2)
      array = _job(jobs["array"])
    assert array["JobState"] == "PENDING" and array["Reason"] == "Dependency", array
    assert array["ArrayTaskThrottle"] == "2" and array["ArrayTaskId"] == "0-2%2"
    for job in (teacher, array):  # the site options
      assert job["Partition"] == "debug" and job["TimeLimit"] == "00:10:00"
      assert job["Comment"] == "t12-test" and job["WorkDir"] == ROOT
    assert teacher["Dependency"] == "(null)"
    assert not result.rows and "--report_only" in result.hint
    with pytest.raises(UserError, match=f"SLURM jobs {jobs['teacher']},{jobs['array']} of an "
                                        "earlier submission .* still queued"):
      sweep.run(sc, workdir, say=lambda _: None)
    with pytest.raises(UserError, match="still queued or running.*before running the sweep "
                                        "locally"):
      sweep.run(sweep_config(), workdir, say=lambda _: None)
  finally:
    os.makedirs(os.path.join(workdir, "runs", "resnet"), exist_ok=True)
    open(_run_dir(workdir, "resnet", 0) + ".go", "w").close()
  slurm.wait(result.plan, sc, say=lines.append, poll_s=0.2)
  _wait_for_queue([jobs["teacher"], jobs["array"]], timeout=60)
  assert {r.name: r.state for r in result.plan.runs} == {
      "resnet/seed0": "done", "resnet/seed1": "done", "kd_logits/seed0": "done",
      "kd_logits/seed1": "done"}
  teacher_end = os.stat(os.path.join(_run_dir(workdir, "resnet", 0), "summary.json")).st_mtime
  for m in METHODS:
    for s in SEEDS:  # each task ran its own line: the run of its config
      assert _summary(workdir, m, s)["final"]["student_top1"] == fake_top1(m, s)
      if (m, s) != ("resnet", 0):
        assert os.stat(os.path.join(_run_dir(workdir, m, s), "config.json")).st_mtime >= teacher_end
  assert any(f"SLURM job {jobs['array']}_" in line and "done     kd_logits/seed1" in line
             for line in lines)

  # Seed 2 added: the teacher finished, so no teacher job, no dependency, 2 tasks only.
  lines = []
  result = sweep.run(_slurm_config(seeds=(0, 1, 2), **{"slurm.wait": True}), workdir,
                     say=lines.append, poll_s=0.2)
  assert set(result.jobs) == {"array"} and not result.failed
  assert _job(result.jobs["array"])["Dependency"] == "(null)"
  assert len(open(os.path.join(workdir, "slurm", "array.txt")).read().splitlines()) == 2
  assert "4 run(s) finished before, 2 to run" in lines[0]
  table = results.read_csv(os.path.join(workdir, "results.csv"))
  assert table["kd_logits"]["n_seeds"] == "3"
  assert float(table["kd_logits"]["final_top1_mean"]) == statistics.fmean(
      fake_top1("kd_logits", s) for s in (0, 1, 2))


def test_slurm_teacher_failure_cancels_the_array(cluster, tmp_path, monkeypatch):
  del cluster
  fake_runs(monkeypatch, tmp_path, "fail_teacher")
  lines = []
  result = sweep.run(_slurm_config(**{"slurm.wait": True}), str(tmp_path / "w"),
                     say=lines.append, poll_s=0.2)
  states = {r.name: (r.state, r.error) for r in result.plan.runs}
  assert states["resnet/seed0"][0] == "failed" and "error: boom" in states["resnet/seed0"][1]
  for name in ("resnet/seed1", "kd_logits/seed0", "kd_logits/seed1"):
    assert states[name][0] == "blocked" and "teacher job" in states[name][1], states
  assert not set(_queue_ids()) & set(result.jobs.values())
  md = open(os.path.join(str(tmp_path / "w"), "results.md")).read()
  assert "KD(logits): 0 of 2 seeds finished (seed 0 blocked, seed 1 blocked)" in md


def test_slurm_an_option_sbatch_refuses_is_one_clear_error(cluster, tmp_path, monkeypatch):
  del cluster
  fake_runs(monkeypatch, tmp_path, "ok")
  with pytest.raises(UserError, match=r"sbatch refused the teacher job \(.*Invalid partition.*\); "
                                      r"check the site options --config\.slurm\.\*"):
    sweep.run(_slurm_config(**{"slurm.partition": "no_such_partition"}), str(tmp_path / "w"),
              say=lambda _: None)
  assert not os.path.exists(os.path.join(str(tmp_path / "w"), "slurm", "jobs.json"))
  assert not _queue_ids()
