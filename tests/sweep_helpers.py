"""Shared by the sweep tests (test_table12.py, test_sweep.py, test_study.py,
test_kd_zoo.py): the smallest sweep config, a stand-in for `experiments.main` that takes
milliseconds instead of seconds, and a study run with it."""
import importlib
import json
import os
import sys

import pytest

from jointrd_jax.sweep import planning, study

METHODS = ("resnet", "kd_logits")
SEEDS = (0, 1)
HOLDOUT = 32
# The smallest run, whatever the smoke config's size: a width-8 resnet10, 128 training
# images (2 steps of 64) after the held-out 32.
OVERRIDES = {"base.num_epochs": 1, "base.synthetic.train_size": 128 + HOLDOUT,
             "base.synthetic.test_size": 64, "base.holdout": HOLDOUT, "base.batch_size": 64,
             "base.model.width": 8}


def sweep_config(**overrides):
  """configs/table12.py:smoke with METHODS x SEEDS, OVERRIDES and `overrides`
  (dotted keys: `sweep_config(**{"slurm.time": "5:00"})`)."""
  c = importlib.import_module("configs.table12").get_config("smoke")
  c.methods, c.seeds = METHODS, SEEDS
  for key, value in {**OVERRIDES, **overrides}.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


def run_dir(workdir, method, seed):
  return os.path.join(workdir, "runs", method, f"seed{seed}")


# The stand-in: writes what a finished run writes (top-1 = 10 * seed + len(method)); modes:
# `fail_teacher` fails resnet seed 0; `wait` waits for SIGTERM; `env` records its
# environment and waits until `barrier` runs have started; `gate` makes resnet seed 0 wait
# until the file `<its workdir>.go` exists.
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
if mode.startswith("env:"):
  json.dump(dict(os.environ), open(os.path.join(workdir, "env.json"), "w"))
  barrier = int(mode.split(":")[1])
  root = os.path.dirname(os.path.dirname(os.path.dirname(workdir)))
  deadline = time.time() + 30
  while time.time() < deadline and sum(
      os.path.exists(os.path.join(d, "env.json"))
      for d, _, _ in os.walk(os.path.join(root, "runs"))) < barrier:
    time.sleep(0.02)
  time.sleep(0.3)
if mode == "gate" and cfg["method"] == "resnet" and cfg["seed"] == 0:
  deadline = time.time() + 60
  while not os.path.exists(workdir + ".go") and time.time() < deadline:
    time.sleep(0.05)
if mode == "slow":
  time.sleep(0.5)
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


def fake_top1(method, seed):
  return 10.0 * seed + len(method)


def fake_runs(monkeypatch, tmp_path, mode):
  """Every launcher runs the stand-in (a file: SLURM lists one command per line)."""
  script = os.path.join(str(tmp_path), "fake_run.py")
  with open(script, "w") as f:
    f.write(FAKE_RUN)
  monkeypatch.setattr(planning, "command", lambda cfg_path, workdir: [
      sys.executable, script, cfg_path, workdir, mode])


def study_with_fake_runs(tmp, config, name="study"):
  """`study.run(config)` in `tmp/name` with the stand-in runs: (workdir, by_cell, paths,
  failed)."""
  mp = pytest.MonkeyPatch()
  fake_runs(mp, tmp, "ok")
  try:
    wd = str(tmp / name)
    by_cell, paths, failed = study.run(config, wd, say=lambda s: None, poll_s=0.01)
  finally:
    mp.undo()
  return wd, by_cell, paths, failed


def run_config(wd, cell, method, seed=0):
  """The config.json of a study run: cell `cell`, `method`, `seed`."""
  with open(os.path.join(wd, cell, planning.RUNS_SUBDIR, method, f"seed{seed}",
                         "config.json")) as f:
    return json.load(f)
