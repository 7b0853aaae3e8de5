"""Shared by the trainer's end-to-end tests (test_train, test_train_presets): every preset's
smoke run on synthetic data, trained once per module when first asked (`smoke_runs`), with
one smoke ResNet teacher per module (`teacher_dir`), and the checks every smoke run passes
(`check_smoke_run`). The fixtures are imported by name into each test module."""
import hashlib
import json
import pathlib

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from configs import table12_extended
from jointrd_jax import methods
from jointrd_jax.training import checkpoints, reporting, train
import run_helpers
import smoke_fixture

# The presets, from the registry, in two halves that pytest-xdist trains on two workers:
# the paper's seven (configs/table12.py) in tests/test_train.py, every other one (the extended
# sweep's, configs/table12_extended.py) in tests/test_train_presets.py.
NEW_METHODS = table12_extended.EXTENDED_METHODS
PAPER_METHODS = tuple(m for m in methods.METHODS if m not in NEW_METHODS)


def smoke(method, **overrides):
  """`configs/<method>.py:smoke` with the flattened `overrides`."""
  return run_helpers.preset_config(method, arg="smoke", **overrides)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """One smoke ResNet teacher, shared by the distillation runs of this module."""
  d = str(tmp_path_factory.mktemp("teacher"))
  train.train_and_evaluate(smoke("resnet"), d)
  return d


@pytest.fixture(scope="module")
def teacher_digest(teacher_dir):
  return digest(teacher_dir)


@pytest.fixture(scope="module")
def smoke_runs(teacher_dir, teacher_digest, tmp_path_factory):
  """Each method's smoke run on synthetic data, run once when first asked."""
  del teacher_digest  # taken before any distillation run reads the teacher
  runs = {}

  def get(method):
    if method not in runs:
      config = smoke(method)
      if methods.METHODS[method].needs_teacher:
        config.teacher.checkpoint = teacher_dir
      d = tmp_path_factory.mktemp(method)
      runs[method] = (d, train.train_and_evaluate(config, str(d)))
    return runs[method]

  return get


def records(workdir, split):
  return [r for r in reporting.read_metrics(workdir) if r["split"] == split]


def final_params(workdir):
  state, meta = checkpoints.Checkpoints(workdir, create=False).restore()
  return state["params"], meta


def digest(directory):
  h = hashlib.sha256()
  for p in sorted(pathlib.Path(directory).rglob("*")):
    if p.is_file():
      h.update(str(p.relative_to(directory)).encode())
      h.update(p.read_bytes())
  return h.hexdigest()


def check_smoke_run(method, smoke_runs):
  """The preset's smoke run (the `smoke_runs` fixture): it learns, logs, checkpoints and
  gives bitwise the recorded numbers (tests/smoke_fixture.py)."""
  tmp_path, summary = smoke_runs(method)
  assert summary["epochs_done"] == 2 and summary["method"] == method
  # A preset run, unchanged: the preset's own name, label and description (methods.identity).
  preset = methods.METHODS[method]
  assert (summary["name"], summary["label"], summary["changes"]) == (
      method, preset.label or method, [])
  assert summary["description"].startswith(preset.description + "; loss ")
  assert summary["num_eval"] == 200 and summary["eval_split"] == "test"
  evals = records(tmp_path, "eval")
  assert [r["epoch"] for r in evals] == [1, 2]
  heads = {"student"}
  if methods.METHODS[method].needs_teacher:
    heads.add("teacher")
  if "jointrd" in dict(methods.METHODS[method].term_entries()):  # jointrd, jointrd_repvgg
    heads |= {"hybrid1", "hybrid2", "hybrid3"}
  assert {k[:-5] for k in evals[-1] if k.endswith("_top1")} == heads
  for r in evals:
    for h in heads:
      assert 0 <= r[f"{h}_top1"] <= r[f"{h}_top5"] <= 100
  assert summary["final"]["student_top1"] == evals[-1]["student_top1"]
  # The smoke task is learnable within the smoke budget, so a working pipeline shows: the
  # ResNet above 90 % (measured 95.5), every student far above the 10 % of chance
  # (measured 75-100 %; DIST, whose loss matches the teacher's relations rather than its
  # labels, 49 % after these 2 epochs); a broken one stays near 10 %.
  floor = {"resnet": 90, "dist_dirac": 40}.get(method, 50)
  assert summary["final"]["student_top1"] >= floor
  # A train record every log_every_steps (4) steps: 16 steps per epoch, 4 records each.
  trains = records(tmp_path, "train")
  assert [r["step"] for r in trains] == list(range(4, 33, 4))
  assert [r["epoch"] for r in trains] == [1] * 4 + [2] * 4
  assert all(r["steps"] == 4 and np.isfinite(r["loss"]) and r["images_per_s"] > 0
             for r in trains)
  # The eval record's train_loss is the epoch's mean: the mean of its 4 equal intervals.
  for e in (1, 2):
    mean = np.mean([r["loss"] for r in trains if r["epoch"] == e])
    assert evals[e - 1]["train_loss"] == pytest.approx(mean, rel=1e-12)
  if "hybrid1" in heads:
    assert {"ce_student", "ce_hybrid1", "ce_hybrid2", "ce_hybrid3", "m"} <= set(trains[0])
  # TensorBoard: the same curves, one point per train record (per log step, not per epoch).
  events = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
  events.Reload()
  loss = events.Tensors("train/loss")
  assert [e.step for e in loss] == [r["step"] for r in trains]
  # float32 in the event file: relative rounding 2^-24.
  np.testing.assert_allclose([e.tensor_proto.float_val[0] for e in loss],
                             [r["loss"] for r in trains], rtol=2**-23)
  assert [e.step for e in events.Tensors("eval/student_top1")] == [r["step"] for r in evals]
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["method"] == method
  _, meta = final_params(tmp_path)
  assert meta["epoch"] == 2 and meta["step"] == 32
  assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  # The same numbers, bitwise, as the recorded runs (tests/smoke_fixture.py).
  smoke_fixture.check(f"cifar/{method}", tmp_path)
