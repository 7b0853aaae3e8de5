"""The Table 12 sweep (`experiments.table12`, `jointrd_jax.sweep`, `jointrd_jax.results`).

End to end on the smallest smoke runs (1 epoch of 2 steps; each run a subprocess of
`experiments.main`): one sweep of 2 methods x 2 seeds, one run at a time (the KD runs after
their teacher, the sweep's own resnet seed-0 run). Then one run is lost and one left
unfinished, and the same sweep is rerun with `parallel=2`: it redoes exactly those two, at
the same time, with the same numbers, and leaves the finished runs untouched. The sweep
evaluates on a held-out split, so the same runs show that the table says so. Rows,
Markdown, CSV, PNG, planning, device pinning, failures and SIGTERM are tested without
training (a stand-in subprocess).
"""
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest

from jointrd_jax import reporting, results, sweep, workdir as workdir_lib
from jointrd_jax.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("resnet", "kd_logits")
SEEDS = (0, 1)
HOLDOUT = 32
# The smallest run: 128 training images (2 steps of 64) after the held-out 32.
OVERRIDES = {"base.num_epochs": 1, "base.synthetic.train_size": 128 + HOLDOUT,
             "base.synthetic.test_size": 64, "base.holdout": HOLDOUT}


def sweep_config(**overrides):
  c = importlib.import_module("configs.table12").get_config("smoke")
  c.methods, c.seeds = METHODS, SEEDS
  for key, value in {**OVERRIDES, **overrides}.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def _run_dir(workdir, method, seed):
  return os.path.join(workdir, "runs", method, f"seed{seed}")


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


def _one_device_runs(mp):
  """The runs of these sweeps see one CPU device (as a run pinned to one accelerator
  would): a third less CPU time than conftest's 8 fake devices."""
  flags = os.environ.get("XLA_FLAGS", "").replace(
      "--xla_force_host_platform_device_count=8", "--xla_force_host_platform_device_count=1")
  mp.setenv("XLA_FLAGS", flags)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
  """The 2 x 2 sweep, one run at a time, and what it left before anything else touches it."""
  workdir = str(tmp_path_factory.mktemp("table12"))
  lines = []
  with pytest.MonkeyPatch.context() as mp:
    _one_device_runs(mp)
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
  holds config.json only). The same sweep, rerun two at a time, must redo just these two."""
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
    _one_device_runs(mp)
    result = sweep.run(sweep_config(parallel=2), workdir, say=lines.append)
  assert not result.failed and not result.interrupted, "\n".join(lines)
  return dict(untouched=untouched, logs=logs, result=result, lines=lines,
              status=_status(workdir),
              spans={m: _span(_run_dir(workdir, m, 1)) for m in METHODS})


# ------------------------------------------------------------------ end to end


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
    assert float(row["final_top1_mean"]) == pytest.approx(sum(final) / 2, rel=1e-12)
    assert float(row["final_top1_std"]) == pytest.approx(abs(final[0] - final[1]) / 2 ** 0.5,
                                                         rel=1e-12, abs=1e-12)
    assert float(row["best_top1_mean"]) == pytest.approx(sum(best) / 2, rel=1e-12)
    assert [float(x) for x in row["final_top1_per_seed"].split()] == final
    md_row = next(line for line in md.splitlines()
                  if line.startswith(f"| {results.LABELS[m]} |"))
    assert f"| {sum(final) / 2:.2f} ± {statistics.stdev(final):.2f} |" in md_row
  assert table["resnet"]["paper_top1_mean"] == "78.39" and table["kd_logits"]["paper_top1_mean"] == ""
  assert "| 78.39 ± 0.40 |" in md and "resnet run of seed 0" in md
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
  # Progress: running runs with their epoch and ETA, and the waiting ones.
  assert any("running  resnet/seed0" in line and "ETA" in line for line in swept["lines"])
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
def test_parallel_runs_overlap_and_match_one_at_a_time(swept, rerun):
  # parallel=1: each run started once the one before had ended.
  spans = sorted((r["started"], r["ended"]) for r in swept["status"].values())
  assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:])), spans
  # parallel=2: the two redone runs trained at the same time (by their own files).
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


@pytest.mark.slow
def test_cli_report_only_counts_the_seeds_that_finished(swept, rerun):
  del rerun  # after it: this rewrites the results
  workdir = swept["workdir"]
  overrides = [f"--config.{k}={v}" for k, v in OVERRIDES.items()]
  p = subprocess.run(
      [sys.executable, "-m", "experiments.table12", "--config=configs/table12.py:smoke",
       f"--workdir={workdir}", "--methods=resnet,kd_logits", "--seeds=0,1,2", "--report_only",
       *overrides], cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  table = results.read_csv(os.path.join(workdir, "results.csv"))
  assert table["kd_logits"]["n_seeds"] == "2"
  md = open(os.path.join(workdir, "results.md")).read()
  assert "KD(logits): 2 of 3 seeds finished (seed 2 waiting)" in md
  assert not os.path.exists(_run_dir(workdir, "resnet", 2))  # nothing launched


# ------------------------------------------------------------------ without training


def _fake(method, seed, final, best, split="test", dataset="cifar100", arch="resnet50"):
  return {"method": method, "dataset": dataset, "eval_split": split, "num_eval": 10000,
          "epochs_done": 200, "final": {"epoch": 200, "student_top1": final},
          "best": {"epoch": 150, "student_top1": best},
          "config": {"seed": seed, "num_epochs": 200, "holdout": 0, "model": {"arch": arch}}}


def test_results_from_fake_summaries(tmp_path):
  finals = {"jointrd": [78.1, 77.9, 78.5], "kd_mse_all_dirac": [60.25], "plain": [70.0, 71.0]}
  summaries = {m: [_fake(m, s, v, v + 0.5) for s, v in enumerate(vals)][::-1]
               for m, vals in finals.items()}
  summaries["resnet"] = []
  order = ("jointrd", "kd_mse_all_dirac", "resnet", "plain")
  rows = results.aggregate(summaries, order)
  assert [r["method"] for r in rows] == list(order)
  by = {r["method"]: r for r in rows}
  assert by["jointrd"]["seeds"] == [0, 1, 2] and by["jointrd"]["final_top1"] == finals["jointrd"]
  assert by["jointrd"]["final_top1_mean"] == pytest.approx(statistics.mean(finals["jointrd"]))
  assert by["jointrd"]["final_top1_std"] == pytest.approx(statistics.stdev(finals["jointrd"]))
  assert by["jointrd"]["best_top1_mean"] == pytest.approx(statistics.mean(finals["jointrd"]) + 0.5)
  assert by["kd_mse_all_dirac"]["final_top1_std"] is None  # one seed: no std
  assert by["resnet"]["n_seeds"] == 0 and by["resnet"]["final_top1_mean"] is None

  paths = results.write(tmp_path, rows, {"jointrd": [[{"epoch": 1, "student_top1": 10.0},
                                                       {"epoch": 2, "student_top1": 20.0}]]},
                        notes=["a note"])
  md = open(paths["md"]).read()
  lines = {line.split(" | ")[0]: line for line in md.splitlines() if line.startswith("| ")}
  assert "| 78.17 ± 0.31 |" in lines["| JointRD (ours)"]  # mean 78.1667, stdev 0.3055
  assert "| 78.16 ± 0.20 |" in lines["| JointRD (ours)"]
  assert "60.25 (1 seed)" in lines["| KD(MSE_ALL) + Dirac"]
  assert "| 63.82 ± 9.97 |" in lines["| KD(MSE_ALL) + Dirac"]
  assert lines["| ResNet (with shortcuts)"].startswith("| ResNet (with shortcuts) | 0 | - |")
  assert "| 78.39 ± 0.40 |" in lines["| ResNet (with shortcuts)"]
  assert lines["| Plain CNN, from scratch"].endswith("| - |")  # no paper number
  assert "**test** split" in md and "held-out" not in md and "- a note" in md
  assert "not comparable" not in md  # the paper's setting
  table = results.read_csv(paths["csv"])
  assert float(table["jointrd"]["final_top1_std"]) == statistics.stdev(finals["jointrd"])
  assert table["kd_mse_all_dirac"]["final_top1_std"] == ""
  assert table["plain"]["paper_top1_mean"] == ""
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert results.curve_bands([[{"epoch": 1, "student_top1": 1.0}],
                              [{"epoch": 1, "student_top1": 3.0}, {"epoch": 2, "student_top1": 5.0}]]
                             ) == ([1, 2], [2.0, 5.0], [1.0, 5.0], [3.0, 5.0])

  held = results.aggregate({"plain": [_fake("plain", 0, 50.0, 51.0, split="holdout",
                                            dataset="synthetic", arch="resnet10")]})
  held_md = results.render_markdown(held)
  assert "**held-out validation** split" in held_md and "not comparable" in held_md


def test_plan_picks_one_teacher_and_orders_runs(tmp_path):
  c = sweep_config(methods=("jointrd", "resnet", "plain"), seeds=(1, 0))
  p = sweep.plan(c, str(tmp_path))
  names = [r.name for r in p.runs]
  assert names[0] == "resnet/seed0" and p.runs[0].is_teacher  # the teacher first
  assert names[1:] == ["jointrd/seed1", "resnet/seed1", "plain/seed1", "jointrd/seed0",
                       "plain/seed0"]
  assert p.teacher_dir == _run_dir(str(tmp_path), "resnet", 0)
  for r in p.runs:
    assert r.needs == ("resnet/seed0" if r.method == "jointrd" else None)
    assert r.config.seed == r.seed and r.config.method == r.method
    assert r.config.teacher.checkpoint == (p.teacher_dir if r.method == "jointrd" else "")

  # No resnet run of the teacher's seed (or another teacher arch): DIR/teacher, not in the table.
  for over in ({"methods": ("kd_logits",)}, {"teacher_seed": 5},
               {"base.teacher.arch": "resnet14"}):
    p = sweep.plan(sweep_config(**over), str(tmp_path))
    assert p.runs[0].name == "teacher" and not p.runs[0].in_table
    assert p.teacher_dir == os.path.join(str(tmp_path), "teacher")
    assert p.runs[0].config.method == "resnet"
    assert all(r.needs == "teacher" for r in p.runs if r.method == "kd_logits")
  # No method needs a teacher: none.
  p = sweep.plan(sweep_config(methods=("plain", "resnet")), str(tmp_path))
  assert p.teacher_dir == "" and all(r.needs is None for r in p.runs)

  with pytest.raises(UserError, match="no finished ResNet run"):
    sweep.plan(sweep_config(teacher_checkpoint=str(tmp_path / "nothing")), str(tmp_path))
  with pytest.raises(UserError, match="unknown method 'nope'"):
    sweep.plan(sweep_config(methods=("resnet", "nope")), str(tmp_path))
  with pytest.raises(UserError, match="twice"):
    sweep.plan(sweep_config(seeds=(0, 0)), str(tmp_path))


def test_runs_are_pinned_one_per_device(monkeypatch):
  assert sweep.slot_envs("gpu", ["0", "1", "2", "3"], 1) == [{}]
  assert sweep.slot_envs("gpu", ["0", "1", "2", "3"], 4) == [
      {"CUDA_VISIBLE_DEVICES": str(i)} for i in range(4)]
  assert sweep.slot_envs("gpu", ["4", "5", "6", "7"], 2) == [
      {"CUDA_VISIBLE_DEVICES": "4,5"}, {"CUDA_VISIBLE_DEVICES": "6,7"}]
  assert len(sweep.slot_envs("gpu", ["0", "1", "2"], 0)) == 3  # 0: one per device
  with pytest.raises(UserError, match="at most 2"):
    sweep.slot_envs("gpu", ["0", "1"], 3)
  tpu = sweep.slot_envs("tpu", ["0", "1", "2", "3"], 4)
  assert [e["TPU_VISIBLE_CHIPS"] for e in tpu] == ["0", "1", "2", "3"]
  assert len({e["TPU_MESH_CONTROLLER_PORT"] for e in tpu}) == 4
  assert all(e["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,1,1" for e in tpu)
  assert sweep.slot_envs("cpu", [], 3) == [{}, {}, {}]
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
  assert sweep.detect_accelerators() == ("gpu", ["2", "3"])
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert sweep.detect_accelerators() == ("cpu", [])
  with pytest.raises(UserError, match="--config.devices"):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    sweep.detect_accelerators("gpu")


def test_from_json_config_round_trips_with_types(tmp_path):
  from configs import from_json  # pylint: disable=g-import-not-at-top
  c = sweep.run_config(sweep_config().base, "jointrd", 3, "/teacher")
  c.half_precision = True
  path = tmp_path / "c.json"
  path.write_text(json.dumps(workdir_lib.config_to_dict(c)))
  loaded = from_json.get_config(str(path))
  assert workdir_lib.config_to_dict(loaded) == workdir_lib.config_to_dict(c)
  assert isinstance(loaded.optimizer.lr_drop_at, tuple) and loaded.half_precision is True
  assert loaded.seed == 3 and loaded.teacher.checkpoint == "/teacher"
  path.write_text(json.dumps({"no_such_key": 1}))
  with pytest.raises(ValueError, match="no_such_key"):
    from_json.get_config(str(path))


def test_progress_reads_epoch_and_eta(tmp_path):
  p = sweep.plan(sweep_config(methods=("plain",), seeds=(0,)), str(tmp_path))
  r = p.runs[0]
  os.makedirs(os.path.join(str(tmp_path), "logs"))
  with open(os.path.join(str(tmp_path), "logs", "plain-seed0.out"), "w") as f:
    f.write("[10:00:00] epoch 1/3 step 4/24 loss 2.3 | 900 img/s | ETA 0:01:05\n"
            "[10:00:09] epoch 1/3 done: train loss 2.2 | ... | ETA 1 day, 0:00:30\n")
  os.makedirs(r.workdir)
  w = reporting.Writer(r.workdir, tensorboard=False)
  w.write("train", 1, 8, {"loss": 2.2})
  w.write("eval", 1, 8, {"student_top1": 10.0})
  r.state = sweep.RUNNING
  assert sweep.progress(p, r) == {"epochs_done": 1, "num_epochs": 1, "eta": "1 day, 0:00:30"}
  assert sweep.eta_seconds("1 day, 0:00:30") == 86430.0
  text = sweep.render_status(sweep.status(p, [{}], 0.0))
  assert "running  plain/seed0" in text and "ETA 1 day, 0:00:30" in text


# A stand-in for experiments.main (milliseconds instead of seconds): it writes what a
# finished run writes, fails for the teacher when asked, and can wait for SIGTERM.
FAKE_RUN = r"""
import json, os, signal, sys, time
cfg_path, workdir, mode = sys.argv[1:4]
cfg = json.load(open(cfg_path))
os.makedirs(workdir, exist_ok=True)
if mode == "fail_teacher" and cfg["method"] == "resnet" and cfg["seed"] == 0:
  print("some warning", file=sys.stderr)
  print("error: boom", file=sys.stderr)
  sys.exit(2)
if mode == "wait":
  signal.signal(signal.SIGTERM, lambda *a: (open(os.path.join(workdir, "sigterm"), "w").close(),
                                            sys.exit(0)))
  open(os.path.join(workdir, "started"), "w").close()
  time.sleep(60)
  sys.exit(1)
top1 = 10.0 * cfg["seed"] + len(cfg["method"])
json.dump(cfg, open(os.path.join(workdir, "config.json"), "w"))
with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
  f.write(json.dumps({"split": "eval", "epoch": 1, "step": 2, "student_top1": top1}) + "\n")
json.dump({"method": cfg["method"], "dataset": "synthetic", "eval_split": "test", "num_eval": 64,
           "epochs_done": cfg["num_epochs"], "final": {"epoch": 1, "student_top1": top1},
           "best": {"epoch": 1, "student_top1": top1}, "config": cfg},
          open(os.path.join(workdir, "summary.json"), "w"))
print("[00:00:00] epoch 1/1 done: | ETA 0:00:00")
"""


def _fake_runs(monkeypatch, mode):
  monkeypatch.setattr(sweep, "command", lambda cfg_path, workdir: [
      sys.executable, "-c", FAKE_RUN, cfg_path, workdir, mode])


def test_a_failed_teacher_blocks_its_students_and_the_rest_go_on(tmp_path, monkeypatch):
  _fake_runs(monkeypatch, "fail_teacher")
  lines = []
  result = sweep.run(sweep_config(methods=("resnet", "kd_logits", "plain"), parallel=2),
                     str(tmp_path), say=lines.append, poll_s=0.02)
  states = {r.name: (r.state, r.error) for r in result.plan.runs}
  assert states["resnet/seed0"] == ("failed", "exit 2: error: boom")  # stderr's last line
  for s in SEEDS:
    assert states[f"kd_logits/seed{s}"][0] == "blocked"
    assert states[f"plain/seed{s}"][0] == "done"
  assert states["resnet/seed1"][0] == "done"
  assert sorted(r.name for r in result.failed) == ["kd_logits/seed0", "kd_logits/seed1",
                                                   "resnet/seed0"]
  assert any(line.startswith("[") and "FAILED resnet/seed0 (exit 2: error: boom)" in line
             for line in lines)
  table = results.read_csv(tmp_path / "results.csv")
  assert table["plain"]["n_seeds"] == "2" and table["kd_logits"]["n_seeds"] == "0"
  assert float(table["plain"]["final_top1_mean"]) == 10.0 / 2 + 5
  md = (tmp_path / "results.md").read_text()
  assert "ResNet (with shortcuts): 1 of 2 seeds finished (seed 0 failed)" in md
  assert "KD(logits): 0 of 2 seeds finished (seed 0 blocked, seed 1 blocked)" in md


def test_sigterm_stops_the_runs_with_sigterm(tmp_path, monkeypatch):
  import signal  # pylint: disable=g-import-not-at-top
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  _fake_runs(monkeypatch, "wait")
  started = [tmp_path / "runs" / "plain" / f"seed{s}" / "started" for s in SEEDS]

  def preempt():
    deadline = time.time() + 30
    while not all(p.exists() for p in started) and time.time() < deadline:
      time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=preempt, daemon=True).start()
  result = sweep.run(sweep_config(methods=("plain",), parallel=2), str(tmp_path),
                     say=lambda _: None, poll_s=0.02)
  assert result.interrupted
  assert [r.state for r in result.plan.runs] == ["stopped", "stopped"]
  for p in started:  # each run got SIGTERM (the trainer checkpoints on it) and exited
    assert (p.parent / "sigterm").exists()
  assert signal.getsignal(signal.SIGTERM) is not sweep._raise_terminated  # restored
