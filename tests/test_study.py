"""The study (configs/study_digits.py, jointrd_jax/sweep/study.py): its cells, their order
and teachers, the variants' settings, the report across cells, and its refusals. Runs are
the sweep tests' stand-in (`sweep_helpers.FAKE_RUN`: top-1 = 10 * seed + len(method))."""
import csv
import os
import statistics

import numpy as np
import pytest

from configs import study_digits
from experiments import make_digits
from jointrd_jax.datasets import digits
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import study
from tests import sweep_helpers


def _config(**overrides):
  c = study_digits.get_config("smoke")
  c.base.num_epochs = 1
  c.base.synthetic.update(dict(train_size=64, test_size=32))
  c.base.model.width = 8
  for key, value in overrides.items():
    c[key] = value
  return c


def test_full_config_cells_run_every_teacher_first_then_longest_budgets():
  c = study_digits.get_config()
  names = [x.name for x in study.cells(c)]
  assert names == ["resnet10_w16_e60", "resnet50_w8_e60", "resnet10_w16_e30",
                   "resnet10_w16_e15", "resnet10_w16_e60_dist_group16",
                   "resnet10_w16_e60_skip_zero_sum", "resnet10_w16_e60_ce_full",
                   "resnet10_w16_e15_ce_full"]
  by_name = {x.name: x for x in study.cells(c)}
  assert by_name["resnet10_w16_e15"].teacher_cell == "resnet10_w16_e60"
  assert by_name["resnet50_w8_e60"].teacher_cell == ""
  assert by_name["resnet10_w16_e60_skip_zero_sum"].overrides == (
      ("optimizer.skip_zero_sum_grads", True),)
  assert by_name["resnet10_w16_e60_ce_full"].overrides == (("terms", "+ce:0.75"),)
  assert by_name["resnet10_w16_e15_ce_full"].teacher_cell == "resnet10_w16_e60"
  assert set(study_digits.DEEP_METHODS) <= set(study_digits.SHALLOW_METHODS)


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
  return sweep_helpers.study_with_fake_runs(tmp_path_factory.mktemp("study"), _config(),
                                            "study")


def test_every_cell_ran_with_its_depth_budget_and_teacher(studied):
  wd, by_cell, _, failed = studied
  assert not failed
  assert list(by_cell) == ["resnet10_w8_e2", "resnet14_w8_e2", "resnet10_w8_e1",
                           "resnet10_w8_e2_dist16"]
  cfg = sweep_helpers.run_config(wd, "resnet10_w8_e1", "kd_logits_dirac")
  assert (cfg["model"]["arch"], cfg["model"]["width"], cfg["num_epochs"]) == ("resnet10", 8, 1)
  # Every budget distils the teacher-budget cell's resnet run of seed 0.
  assert cfg["teacher"]["checkpoint"] == os.path.join(wd, "resnet10_w8_e2", "runs", "resnet",
                                                      "seed0")
  deep = sweep_helpers.run_config(wd, "resnet14_w8_e2", "jointrd")
  assert deep["model"]["arch"] == "resnet14" and deep["num_epochs"] == 2
  variant = sweep_helpers.run_config(wd, "resnet10_w8_e2_dist16", "dist_dirac")
  assert variant["loss"]["dist"]["intra_group"] == 16
  assert variant["teacher"]["checkpoint"] == cfg["teacher"]["checkpoint"]


def test_report_holds_every_cell_and_method_with_the_runs_numbers(studied):
  wd, _, paths, _ = studied
  with open(paths["csv"]) as f:
    rows = list(csv.DictReader(f))
  got = {(r["cell"], r["method"]): float(r["final_top1_mean"]) for r in rows}
  c = _config()
  expected = {}
  for x in study.cells(c):
    for m in x.methods:
      expected[(x.name, m)] = statistics.fmean(sweep_helpers.fake_top1(m, s) for s in x.seeds)
  assert got == pytest.approx(expected, abs=1e-4)  # results.csv keeps 4 decimals
  md = open(paths["md"]).read()
  assert "## resnet10, width 8" in md and "## resnet14, width 8" in md
  assert "| 1 epochs | 2 epochs |" in md and "## Depth, at 2 epochs" in md
  assert "loss.dist.intra_group=16" in md
  assert os.path.getsize(paths["png"]) > 0
  # The report rerun from the files gives the same table, and so does its published copy
  # (tables and metrics only, no checkpoints).
  again = study.run(_config(), wd, say=lambda s: None, only_report=True)[1]
  assert open(again["md"]).read() == md
  dest = os.path.join(os.path.dirname(wd), "published")
  assert study.publish(_config(), wd, dest) == 2 + 2 + 2 + 1  # runs of the four cells
  copy = study.run(_config(), dest, say=lambda s: None, only_report=True)[1]
  assert open(copy["md"]).read() == md
  files = {os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs}
  assert "resnet10_w8_e1/metrics/kd_logits_dirac/seed0/metrics.jsonl" in files
  assert not any("checkpoint" in f for f in files)
  # The copy names no folder of this machine: the teacher's path (the 2-epoch cell's ResNet,
  # the teacher budget) is in the study's workdir.
  texts = {f: open(os.path.join(dest, f)).read() for f in files if not f.endswith(".png")}
  teacher = os.path.join(study.STUDY_WORKDIR, "resnet10_w8_e2", "runs", "resnet", "seed0")
  assert teacher in texts["resnet10_w8_e1/metrics/kd_logits_dirac/seed0/config.json"]
  assert not [f for f, text in texts.items() if os.path.abspath(wd) in text]


@pytest.mark.parametrize("overrides, words", [
    (dict(variants=("x:shallow:2:dist_dirac",)), "is not a variant"),
    (dict(variants=("x:nowhere:2:dist_dirac:loss.dist.intra_group=16",)), "names group"),
    (dict(variants=("x:shallow:two:dist_dirac:loss.dist.intra_group=16",)), "EPOCHS must"),
    (dict(variants=("x:shallow:2:dist_dirac:loss.dist.intra_group",)), "is not KEY=VALUE"),
    (dict(order=("shallow",)), "must name every group"),
    (dict(teacher_budget=5), "must train its teacher"),
    (dict(teacher_seed=3), "is not among"),
    (dict(cells=("resnet10_w8_e9",)), "names no cell"),
])
def test_a_malformed_study_is_one_line_naming_the_fix(overrides, words):
  with pytest.raises(UserError, match=words) as e:
    study.cells(_config(**overrides))
  assert "\n" not in str(e.value)


def test_a_variant_key_that_does_not_exist_is_refused(tmp_path):
  c = _config(variants=("x:shallow:2:dist_dirac:loss.dist.no_such_key=1",))
  cell = study.cells(c)[-1]
  with pytest.raises(UserError, match="loss.dist.no_such_key is no key") as e:
    study.sweep_config(c, cell, str(tmp_path))
  assert "\n" not in str(e.value)
  c = _config(variants=("x:shallow:2:dist_dirac:loss.dist.intra_group='a'",))
  with pytest.raises(UserError, match="intra_group='a'"):
    study.sweep_config(c, study.cells(c)[-1], str(tmp_path))
  assert not os.listdir(tmp_path)


def test_a_variant_value_may_hold_a_colon(tmp_path):
  # JointRD with its student's cross-entropy at full weight: 1/4 from JointRD + 3/4 more.
  c = _config(variants=("ce_full:shallow:2:jointrd:terms=+ce:0.75",))
  cell = study.cells(c)[-1]
  assert (cell.name, cell.methods) == ("resnet10_w8_e2_ce_full", ("jointrd",))
  assert cell.overrides == (("terms", "+ce:0.75"),)
  assert study.sweep_config(c, cell, str(tmp_path)).base.terms == "+ce:0.75"


def test_a_mistake_in_the_last_cell_stops_the_study_before_any_run(tmp_path):
  c = _config(variants=("x:shallow:2:no_such_method:loss.dist.intra_group=16",))
  wd = tmp_path / "study"
  with pytest.raises(UserError, match="unknown method 'no_such_method'"):
    study.run(c, str(wd), say=lambda s: None)
  assert not wd.exists()


def test_absent_data_stops_the_study_before_any_run(tmp_path):
  c = study_digits.get_config()
  c.base.dataset = f"npz:{tmp_path / 'digits32.npz'}"
  wd = tmp_path / "study"
  with pytest.raises(UserError, match="experiments.make_digits") as e:
    study.run(c, str(wd), say=lambda s: None)
  assert "\n" not in str(e.value)
  assert not wd.exists()


def test_make_digits_writes_the_fixed_split(tmp_path):
  out = tmp_path / "d.npz"
  assert make_digits.main([f"--out={out}"]) == 0
  d = np.load(out)
  assert d["x_train"].shape == (1437, 32, 32, 3) and d["x_test"].shape == (360, 32, 32, 3)
  assert d["x_train"].dtype == np.uint8
  # Stratified: every class has 35-37 of the 360 test images (sklearn's digits: 174-183 a class).
  counts = np.bincount(d["y_test"], minlength=10)
  assert counts.min() >= 35 and counts.max() <= 37
  # Pixels: 4x4 blocks of one value, equal over the 3 channels, v * 255 / 16 rounded.
  x = d["x_train"].astype(int)
  assert (x == x[:, ::4, ::4].repeat(4, 1).repeat(4, 2)).all()
  assert (x[..., 0] == x[..., 2]).all()
  assert set(np.unique(x)) <= {round(v * 255 / 16) for v in range(17)}
  again = digits.arrays()
  for k in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(d[k], again[k])
  with pytest.raises(SystemExit) as e:
    make_digits.main([f"--out={out}"])  # exists: refused, not replaced
  assert e.value.code == 2
