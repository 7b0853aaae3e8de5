"""The sweep's parts without training: results (Markdown, CSV, PNG), planning, device
placement (several runs per accelerator), progress and the status table's cadence, failures,
SIGTERM, and the SLURM launcher's refusals. Runs are a stand-in subprocess
(`sweep_helpers.FAKE_RUN`); the sweep on real runs and on a real SLURM is test_table12.py.
"""
import json
import os
import re
import signal
import statistics
import sys
import threading
import time
import types

import pytest

from jointrd_jax import methods as methods_lib, sweep
from jointrd_jax.training import reporting, results, workdir as workdir_lib
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import devices, slurm
from tests.sweep_helpers import SEEDS, fake_runs, fake_top1, run_dir, sweep_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ results


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
  # The paper's rows are marked (†, and a note), the others are not.
  assert "| 78.17 ± 0.31 |" in lines["| JointRD (ours) †"]  # mean 78.1667, stdev 0.3055
  assert "| 78.16 ± 0.20 |" in lines["| JointRD (ours) †"]
  assert "60.25 (1 seed)" in lines["| KD(MSE_ALL) + Dirac †"]
  assert "| 63.82 ± 9.97 |" in lines["| KD(MSE_ALL) + Dirac †"]
  assert lines["| ResNet (with shortcuts) †"].startswith("| ResNet (with shortcuts) † | 0 | - |")
  assert "| 78.39 ± 0.40 |" in lines["| ResNet (with shortcuts) †"]
  assert "- † a row of the paper's Table 12" in md
  assert lines["| Plain CNN, from scratch"].endswith("| - |")  # no paper number
  assert "**test** split" in md and "held-out" not in md and "- a note" in md
  assert "not comparable" not in md  # the paper's setting
  table = results.read_csv(paths["csv"])
  assert table["jointrd"]["final_top1_std"] == "0.3055"  # stdev 0.305505...
  assert table["jointrd"]["final_top1_mean"] == "78.1667"
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


def test_csv_numbers_carry_no_float_noise(tmp_path):
  # 7.000000000000001 is what 0.07 * 100 gives; 0.1 + 0.2 = 0.30000000000000004.
  finals = [0.07 * 100, (0.1 + 0.2) * 10, 9.125]
  assert repr(finals[0]) == "7.000000000000001" and repr(finals[1]) == "3.0000000000000004"
  rows = results.aggregate({"plain": [_fake("plain", s, v, v + 0.1) for s, v in enumerate(finals)]})
  text = results.render_csv(rows)
  for field in re.findall(r"-?\d+\.\d+", text):
    assert len(field.split(".")[1]) <= results.CSV_DECIMALS, field
  row = results.read_csv(_write(tmp_path / "r.csv", text))["plain"]
  assert row["final_top1_per_seed"] == "7.0 3.0 9.125"
  mean, std = statistics.fmean(finals), statistics.stdev(finals)  # 6.375, 3.10998...
  assert row["final_top1_mean"] == "6.375" and float(row["final_top1_std"]) == round(std, 4)
  assert float(row["best_top1_mean"]) == round(mean + 0.1, 4)
  assert "7.000000000000001" not in text and "0000000" not in text


def _write(path, text):
  path.write_text(text)
  return path


def test_png_has_integer_epochs_the_setting_in_its_title_and_the_legend_off_the_data():
  pytest.importorskip("matplotlib")
  rows = results.aggregate({"jointrd": [_fake("jointrd", 0, 70.0, 71.0, dataset="cifar10",
                                              arch="resnet18")]})
  curves = {m: [[{"epoch": e, "student_top1": 10.0 * e + i} for e in range(1, 6)]
                for i in range(2)] for m in ("jointrd", "kd_logits_dirac", "resnet",
                                             "plain", "kd_mse_all_dirac")}
  two = {"resnet": [[{"epoch": e, "student_top1": 5.0 * e} for e in (1, 2)]]}
  for curve, epochs in ((curves, (1, 5)), ({"resnet": [[{"epoch": 1, "student_top1": 5.0}]]},
                                           (1, 1)), (two, (1, 2))):
    fig = results.figure(curve, "test", "Table 12", results.setting_of(rows))
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    # Exactly the epochs run, each a tick; the axis goes no further than the next epoch.
    assert ticks == list(range(epochs[0], epochs[1] + 1)), ticks
    assert epochs[0] - 1 < lo < epochs[0] and epochs[1] < hi < epochs[1] + 1, (lo, hi)
    assert fig._suptitle.get_text() == "Table 12: cifar10, resnet18, 200 epochs, jointrd recipe"
    legend = fig.legends[0]
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert not box.overlaps(axes_box), (box, axes_box)  # below the axes, not on the curves
    fig_box = fig.bbox
    assert fig_box.x0 <= box.x0 and box.x1 <= fig_box.x1 and fig_box.y0 <= box.y0
    assert len(legend.get_texts()) == len(curve)


def test_png_gives_every_method_its_own_colour_line_style_and_marker():
  matplotlib = pytest.importorskip("matplotlib")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  from configs import table12_extended  # pylint: disable=g-import-not-at-top
  extended = list(table12_extended.get_config().methods)
  assert sorted(extended) == sorted(methods_lib.METHODS) and len(extended) == len(set(extended))
  for ms in (extended, extended + [f"method{i}" for i in range(30)]):  # and 44 series
    curves = {m: [[{"epoch": e, "student_top1": 5.0 * e + i} for e in range(1, 4)]]
              for i, m in enumerate(ms)}
    fig = results.figure(curves)
    lines = [l for l in fig.axes[0].get_lines() if not l.get_label().startswith("_")]
    assert [l.get_label() for l in lines] == [f"{results.LABELS.get(m, m)} (n=1)" for m in ms]
    styles = [(matplotlib.colors.to_hex(l.get_color()), l.get_linestyle(), l.get_marker())
              for l in lines]
    assert len(set(styles)) == len(ms), styles
    by = dict(zip(ms, styles))  # the case: same colour, told apart by the rest
    assert by["jointrd"] != by["jointrd_repvgg"]
    # The legend shows each series' own line style and marker.
    handles = fig.legends[0].legend_handles
    assert [(h.get_linestyle(), h.get_marker()) for h in handles] == [s[1:] for s in styles]
    plt.close(fig)
  # Unique (colour, line style, marker) for the first 10 x 4 x 7 series; then a repeat.
  tuples = [tuple(str(v) for v in d.values()) for d in reporting.series_styles(281)]
  assert len(set(tuples[:280])) == 280 and tuples[280] == tuples[0]


def test_a_sweep_on_synthetic_data_says_it_checks_the_plumbing():
  def md(dataset):
    return results.render_markdown(results.aggregate(
        {"plain": [_fake("plain", 0, 26.56, 26.56, dataset=dataset, arch="resnet10")]}))
  synthetic = md("synthetic").splitlines()
  assert synthetic[0].startswith("# Table 12: synthetic") and synthetic[1] == ""
  assert synthetic[2].startswith("**Smoke variant: this checks the plumbing, not accuracy.**")
  assert "plumbing" not in md("cifar10") and "plumbing" not in md("npz:digits32.npz")
  assert results.smoke_banner("synthetic") and not results.smoke_banner(None)
  # Every smoke sweep config trains on synthetic data, so each one's output has the banner.
  from configs import table12, table12_extended  # pylint: disable=g-import-not-at-top
  for module in (table12, table12_extended):
    assert module.get_config("smoke").base.dataset == results.SMOKE_DATASET
    assert module.get_config().base.dataset != results.SMOKE_DATASET


# ------------------------------------------------------------------ planning


def test_plan_picks_one_teacher_and_orders_runs(tmp_path):
  c = sweep_config(methods=("jointrd", "resnet", "plain"), seeds=(1, 0))
  p = sweep.plan(c, str(tmp_path))
  names = [r.name for r in p.runs]
  assert names[0] == "resnet/seed0" and p.runs[0].is_teacher  # the teacher first
  assert names[1:] == ["jointrd/seed1", "resnet/seed1", "plain/seed1", "jointrd/seed0",
                       "plain/seed0"]
  assert p.teacher_dir == run_dir(str(tmp_path), "resnet", 0)
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
  for over, fix in (({"launcher": "pbs"}, "choose local"), ({"runs_per_device": 0}, ">= 1"),
                    ({"launcher": "slurm", "runs_per_device": 2}, "slurm.gpus_per_task"),
                    ({"launcher": "slurm", "slurm.extra": ("qos=high",)}, "sbatch options"),
                    ({"launcher": "slurm", "slurm.max_parallel": -1}, ">= 0"),
                    # Keys that would change nothing: the other launcher's, a teacher's seed
                    # where the sweep trains no teacher.
                    ({"slurm.time": "1:00:00"}, "--config.slurm.time=1:00:00 applies to "
                                                "--launcher=slurm only"),
                    ({"slurm.wait": True}, "--config.slurm.wait=True applies to --launcher="),
                    ({"launcher": "slurm", "parallel": 2}, "--config.parallel=2 applies to the "
                                                           "local launcher only"),
                    ({"launcher": "slurm", "platform": "gpu"}, "--config.platform=gpu applies"),
                    ({"methods": ("plain", "resnet"), "teacher_seed": 1},
                     "--config.teacher_seed=1: the sweep trains no teacher"),
                    ({"teacher_seed": 1, "base.teacher.checkpoint": str(tmp_path)},
                     "--config.teacher_seed=1: the sweep trains no teacher")):
    with pytest.raises(UserError, match=re.escape(fix)):
      sweep.plan(sweep_config(**over), str(tmp_path))


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


# ------------------------------------------------------------------ devices


def test_report_only_on_a_workdir_without_a_sweep_is_refused_and_creates_nothing(tmp_path):
  (tmp_path / "empty").mkdir()
  for wd in (tmp_path / "new", tmp_path / "empty"):
    with pytest.raises(UserError, match=r"^--report_only: .* holds no sweep \(no runs/ or "
                                        r"sweep_config.json\), so there is nothing to report"):
      sweep.run(sweep_config(), str(wd), say=lambda _: None, only_report=True)
  assert sorted(os.listdir(tmp_path)) == ["empty"] and not os.listdir(tmp_path / "empty")


def test_runs_are_pinned_one_per_device(monkeypatch):
  assert sweep.slot_envs("gpu", ["0", "1", "2", "3"], 1) == [{}]
  assert sweep.slot_envs("gpu", ["0", "1", "2", "3"], 4) == [
      {"CUDA_VISIBLE_DEVICES": str(i)} for i in range(4)]
  assert sweep.slot_envs("gpu", ["4", "5", "6", "7"], 2) == [
      {"CUDA_VISIBLE_DEVICES": "4,5"}, {"CUDA_VISIBLE_DEVICES": "6,7"}]
  assert sweep.slot_envs("gpu", ["0", "1", "2"], 0) == [
      {"CUDA_VISIBLE_DEVICES": str(i)} for i in range(3)]  # 0: one per device
  with pytest.raises(UserError, match="at most 2"):
    sweep.slot_envs("gpu", ["0", "1"], 3)
  tpu = sweep.slot_envs("tpu", ["0", "1", "2", "3"], 4)
  assert [e["TPU_VISIBLE_CHIPS"] for e in tpu] == ["0", "1", "2", "3"]
  assert len({e["TPU_MESH_CONTROLLER_PORT"] for e in tpu}) == 4
  assert all(e["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,1,1" for e in tpu)
  assert sweep.slot_envs("cpu", [], 3) == [{}, {}, {}]
  assert [s.device for s in sweep.slots("gpu", ["0", "1"], 2)] == ["GPU 0", "GPU 1"]
  monkeypatch.setenv("JAX_PLATFORMS", "cuda")
  monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
  assert sweep.detect_accelerators() == ("gpu", ["2", "3"])
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert sweep.detect_accelerators() == ("cpu", [])
  with pytest.raises(UserError, match="--config.devices"):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    sweep.detect_accelerators("gpu")


def test_several_runs_per_device_each_with_a_share_of_its_memory():
  frac = devices.MEM_FRACTION
  # 2 GPUs x 2: round-robin over the GPUs, 0.9 / 2 of the memory each, one GPU per run.
  assert sweep.slot_envs("gpu", ["0", "1"], 0, 2) == [
      {"CUDA_VISIBLE_DEVICES": g, frac: "0.45"} for g in ("0", "1", "0", "1")]
  assert sweep.slot_envs("gpu", ["6", "7"], 3, 2) == [
      {"CUDA_VISIBLE_DEVICES": g, frac: "0.45"} for g in ("6", "7", "6")]
  for k, share in ((3, "0.3"), (4, "0.225"), (7, "0.128")):  # rounded down, no float noise
    envs = sweep.slot_envs("gpu", ["0"], 0, k)
    assert [e[frac] for e in envs] == [share] * k and float(share) * k <= 0.9
  assert all("XLA_PYTHON_CLIENT_PREALLOCATE" not in e
             for e in sweep.slot_envs("gpu", ["0", "1"], 0, 2))
  with pytest.raises(UserError, match=r"at most 4 \(2 run\(s\) per device\)"):
    sweep.slot_envs("gpu", ["0", "1"], 5, 2)
  with pytest.raises(UserError, match="TPU chip belongs to one process"):
    sweep.slot_envs("tpu", ["0", "1"], 0, 2)
  assert sweep.slot_envs("tpu", ["0", "1"], 0, 1)[1]["TPU_VISIBLE_CHIPS"] == "1"
  assert sweep.slot_envs("cpu", [], 0, 3) == [{}, {}, {}]  # K processes on the host
  assert sweep.slot_envs("cpu", [], 0, 1) == [{}]


def test_each_run_gets_its_slots_gpu_and_memory_share(tmp_path, monkeypatch):
  """4 stand-in runs at once on 2 'GPUs' x 2 (the sweep never touches a GPU itself): each
  run's own environment, recorded by the run, has the slot's GPU and memory share."""
  fake_runs(monkeypatch, tmp_path, "env:4")
  monkeypatch.setenv("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the caller's, kept
  monkeypatch.setenv("PYTHONPATH", "/elsewhere")
  lines = []
  result = sweep.run(sweep_config(methods=("plain",), seeds=(0, 1, 2, 3), platform="gpu",
                                  devices=2, runs_per_device=2, status_every_s=60.0),
                     str(tmp_path), say=lines.append, poll_s=0.02)
  assert not result.failed
  envs = {s: json.load(open(os.path.join(run_dir(str(tmp_path), "plain", s), "env.json")))
          for s in range(4)}
  assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in envs.values()) == ["0", "0", "1", "1"]
  for e in envs.values():
    assert e[devices.MEM_FRACTION] == "0.45" and e["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert e["PYTHONPATH"] == f"{ROOT}{os.pathsep}/elsewhere"
  assert "4 at a time (on GPU 0, GPU 1, GPU 0, GPU 1, 0.45 of a GPU's memory each)" in lines[0]
  # The status table says where each run is (all 4 running at once: the stand-ins wait).
  tables = [t for t in lines if " sweep " in t.split("\n")[0]]
  busy = next(t for t in tables if t.count("running  plain/") == 4)
  for s in range(4):
    gpu = envs[s]["CUDA_VISIBLE_DEVICES"]
    assert re.search(rf"running  plain/seed{s} .*\[GPU {gpu}\]", busy), busy


# ------------------------------------------------------------------ progress


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
  r.state, r.where = sweep.RUNNING, "GPU 3"
  assert sweep.progress(p, r) == {"epochs_done": 1, "num_epochs": 1, "eta": "1 day, 0:00:30"}
  assert sweep.eta_seconds("1 day, 0:00:30") == 86430.0
  text = sweep.render_status(sweep.status(p, 1, 0.0))
  assert "running  plain/seed0" in text and "ETA 1 day, 0:00:30  [GPU 3]" in text


def _kinds(lines):
  """'table' for a status table, 'event' for a started / done / failed line."""
  kinds = []
  for x in lines:
    m = re.match(r"\[\d\d:\d\d:\d\d\] (started|done|FAILED|sweep )", x)
    if m:
      kinds.append("table" if m.group(1) == "sweep " else "event")
  return kinds


def test_status_table_follows_changes_not_the_clock(tmp_path, monkeypatch):
  fake_runs(monkeypatch, tmp_path, "slow")  # each stand-in takes 0.5 s
  c = sweep_config(methods=("plain",), parallel=1)
  assert c.status_every_s == 60.0  # the smoke config too: no 10 s chatter
  lines = []
  sweep.run(c, str(tmp_path / "quiet"), say=lines.append, poll_s=0.02)
  # start 0 | end 0 + start 1 (one poll) | end 1: three tables, each right after its events.
  assert _kinds(lines) == ["event", "table", "event", "event", "table", "event", "table"]
  lines = []
  sweep.run(sweep_config(methods=("plain",), parallel=1, status_every_s=0.1),
            str(tmp_path / "chatty"), say=lines.append, poll_s=0.02)
  kinds = _kinds(lines)  # also every 0.1 s while nothing changes: tables in a row
  assert kinds.count("table") >= 6 and ["table", "table"] == kinds[2:4], kinds


# ------------------------------------------------------------------ failures


def test_a_failed_teacher_blocks_its_students_and_the_rest_go_on(tmp_path, monkeypatch):
  fake_runs(monkeypatch, tmp_path, "fail_teacher")
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
  assert float(table["plain"]["final_top1_mean"]) == statistics.fmean(
      fake_top1("plain", s) for s in SEEDS)
  md = (tmp_path / "results.md").read_text()
  assert "ResNet (with shortcuts): 1 of 2 seeds finished (seed 0 failed)" in md
  assert "KD(logits): 0 of 2 seeds finished (seed 0 blocked, seed 1 blocked)" in md
  # A smoke sweep (synthetic data) says at its start, in results.md and in the table it
  # prints that it checks the plumbing, not accuracy.
  banner = results.smoke_banner("synthetic")
  assert banner in md.splitlines()[:3]
  assert banner.replace("**", "") in lines[:3]  # after the start line and the teacher's
  assert any(banner in line for line in lines if line.startswith("# Table 12"))


def test_sigterm_stops_the_runs_with_sigterm(tmp_path, monkeypatch):
  fake_runs(monkeypatch, tmp_path, "wait")
  started = [tmp_path / "runs" / "plain" / f"seed{s}" / "started" for s in SEEDS]

  def preempt():
    deadline = time.time() + 30
    while not all(p.exists() for p in started) and time.time() < deadline:
      time.sleep(0.02)
    os.kill(os.getpid(), signal.SIGTERM)

  threading.Thread(target=preempt, daemon=True).start()
  result = sweep.run(sweep_config(methods=("plain",), parallel=2), str(tmp_path),
                     say=lambda _: None, poll_s=0.02)
  assert result.interrupted and "rerun the same command" in result.hint
  assert [r.state for r in result.plan.runs] == ["stopped", "stopped"]
  for p in started:  # each run got SIGTERM (the trainer checkpoints on it) and exited
    assert (p.parent / "sigterm").exists()
  assert signal.getsignal(signal.SIGTERM) is not sweep._raise_terminated  # restored


def test_an_interrupted_sweep_says_which_runs_resume_and_which_start_afresh(tmp_path):
  def run(name, saved):
    d = tmp_path / name
    (d / "checkpoints" / ("16" if saved else ".tmp")).mkdir(parents=True)
    return types.SimpleNamespace(name=name, workdir=str(d), state="stopped")

  plan = types.SimpleNamespace
  both = plan(runs=[run("a", True), run("b", True)])
  assert sweep.stopped_hint(both).startswith("the 2 stopped run(s) saved checkpoints")
  none = plan(runs=[run("c", False), types.SimpleNamespace(name="d", state="waiting",
                                                           workdir=str(tmp_path / "d"))])
  assert sweep.stopped_hint(none).startswith("the 1 stopped run(s) had not saved a "
                                             "checkpoint yet and start afresh")
  mixed = plan(runs=[run("e", True), run("f", False)])
  assert "1 of the 2 stopped runs saved checkpoints and resume from them; f had not" in (
      sweep.stopped_hint(mixed))
  for p in (both, none, mixed):
    assert "rerun the same command" in sweep.stopped_hint(p)


# ------------------------------------------------------------------ SLURM, no cluster


def test_slurm_site_options_become_sbatch_flags():
  s = sweep_config(**{"slurm.partition": "gpu", "slurm.gpus_per_task": 1,
                      "slurm.cpus_per_task": 8, "slurm.time": "1-00:00:00",
                      "slurm.mem": "32G", "slurm.extra": ("--qos=high", "--account=me")}).slurm
  assert slurm.site_options(s) == ["--partition=gpu", "--gpus-per-task=1", "--cpus-per-task=8",
                                   "--time=1-00:00:00", "--mem=32G", "--qos=high",
                                   "--account=me"]
  assert slurm.site_options(sweep_config().slurm) == []  # empty: nothing passed


def test_slurm_without_sbatch_is_one_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  with pytest.raises(UserError, match="needs SLURM's sbatch, which is not on PATH.*"
                                      "--launcher=local"):
    sweep.run(sweep_config(launcher="slurm"), str(tmp_path), say=lambda _: None)
  assert not (tmp_path / "slurm" / "jobs.json").exists()
  p = __import__("subprocess").run(
      [sys.executable, "-m", "experiments.table12", "--config=configs/table12.py:smoke",
       f"--workdir={tmp_path / 'cli'}", "--launcher=slurm"],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env={**os.environ, "PATH": str(tmp_path / "empty")})
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith(
      "error: --launcher=slurm needs SLURM's sbatch"), p.stderr[-2000:]
  assert len(p.stderr.strip().splitlines()) == 1


def test_a_sweep_under_another_recipe_says_so_and_an_unknown_one_writes_nothing(
    tmp_path, monkeypatch):
  fake_runs(monkeypatch, tmp_path, "slow")
  bad = tmp_path / "bad"
  with pytest.raises(UserError, match=r"unknown recipe 'mdistillr'; choose jointrd or "):
    sweep.run(sweep_config(**{"base.recipe": "mdistillr"}), str(bad), say=lambda _: None)
  assert not bad.exists()
  c = sweep_config(methods=("plain",), seeds=(0,), parallel=1, **{"base.recipe": "mdistiller"})
  sweep.run(c, str(tmp_path / "md"), say=lambda _: None, poll_s=0.02)
  cfg = json.load(open(os.path.join(run_dir(str(tmp_path / "md"), "plain", 0), "config.json")))
  # mdistiller's optimizer; the keys the sweep set itself (epochs, batch, the smoke lr) win.
  assert (cfg["recipe"], cfg["num_epochs"], cfg["batch_size"]) == ("mdistiller", 1, 64)
  assert cfg["optimizer"]["nesterov"] is False
  assert cfg["optimizer"]["lr_drop_at"] == [150 / 240, 180 / 240, 210 / 240]
  md = (tmp_path / "md" / results.RESULTS_MD).read_text().splitlines()
  assert md[0] == "# Table 12: synthetic, resnet10, 1 epoch, mdistiller recipe"
  assert ("Training recipe mdistiller: SGD lr 0.03 momentum 0.9, x0.1 at epochs 1, 1, 1, "
          "weight decay 0.0005 (`--config.base.recipe`).") in md
  assert results.read_csv(tmp_path / "md" / results.RESULTS_CSV)["plain"]["recipe"] == "mdistiller"
