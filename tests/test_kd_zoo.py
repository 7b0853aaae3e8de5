"""The distillation zoo (configs/kd_zoo.py, jointrd_jax/sweep/zoo.py, zoo_report.py): its
cells (pairs x methods, the teachers and students from scratch), the student each method
trains, the lr rule, JointRD where it fits, imported teachers, the table with the published
numbers, its refusals, and one real tiny run of a zoo run's config. The end-to-end smoke
uses the sweep tests' stand-in runs (`sweep_helpers.FAKE_RUN`: top-1 = 10 * seed +
len(preset))."""
import csv
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys

import jax
import pytest

from configs import kd_zoo
from jointrd_jax import models
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import planning, study, zoo, zoo_report
from jointrd_jax.training import checkpoints, run_setup, teachers, train
from jointrd_jax.training import workdir as workdir_lib
from tests import sweep_helpers

REPO = pathlib.Path(__file__).resolve().parents[1]
# The pairs where JointRD makes sense (residual teacher, residual student's plain twin,
# equal stage channels: 16/32/64, 16/32/64, 64/128/256, 32/64/128).
JOINTRD_PAIRS = ("resnet56:resnet20", "resnet110:resnet32", "resnet32x4:resnet8x4",
                 "wrn_40_2:wrn_16_2")
SMALL = ("mobilenetv2", "shufflenetv1", "shufflenetv2")


def _smoke(**overrides):
  c = kd_zoo.get_config("smoke")
  for key, value in overrides.items():
    c[key] = value
  return c


def test_full_zoo_trains_each_network_once_and_every_pair_from_its_teacher():
  c = kd_zoo.get_config()
  cells = study.cells(c)
  by = {x.name: x for x in cells}
  teachers = ["resnet56", "resnet110", "resnet32x4", "wrn_40_2", "vgg13", "resnet50"]
  students = ["resnet20", "resnet32", "resnet8x4", "wrn_16_2", "wrn_40_1", "vgg8",
              "mobilenetv2", "shufflenetv1", "shufflenetv2"]
  # The archs' cells first (every teacher before any pair), once each.
  assert [x.name for x in cells[:15]] == teachers + students
  assert all(by[t].seeds == (0,) and by[t].methods == ("resnet",) for t in teachers)
  assert all(by[s].seeds == (0, 1, 2) for s in students)
  for pair in kd_zoo.zoo.STANDARD_PAIRS:
    t, s = pair.split(":")
    logit = by[pair.replace(":", "-")]
    assert logit.methods == ("kd_logits", "dkd_dirac", "dist_dirac", "kd_ls_dirac")
    assert logit.teacher_cell == t and logit.arch == s
    got = dict(logit.overrides)
    assert (got["model.shortcuts"], got["model.conv"], got["teacher.arch"]) == ("all", "none", t)
    assert got["loss.dkd.warmup_epochs"] == 20
    assert got.get("optimizer.learning_rate") == (0.01 if s in SMALL else None)
    assert (f"{pair.replace(':', '-')}-plain" in by) == (pair in JOINTRD_PAIRS)
  # mdistiller's DKD beta per pair (configs/cifar100/dkd/*.yaml; 8 where unset).
  beta = {p: dict(by[p.replace(":", "-")].overrides)["loss.dkd.beta"]
          for p in kd_zoo.zoo.STANDARD_PAIRS}
  assert beta["resnet56:resnet20"] == 2.0 and beta["vgg13:vgg8"] == 6.0
  assert beta["resnet32x4:resnet8x4"] == 8.0 and beta["resnet50:vgg8"] == 8.0
  assert all(dict(by[a].overrides).get("optimizer.learning_rate") == (
      0.01 if a in SMALL else None) for a in teachers + students)
  runs = sum(len(x.methods) * len(x.seeds) for x in cells)
  assert runs == 6 + 9 * 3 + 12 * 4 * 3 + 4 * 3  # the DOC TEXT's estimate


@pytest.mark.parametrize("arg", ["", "smoke"])
def test_every_zoo_run_builds_the_network_its_method_needs(arg):
  """The fixed students train as they are (shortcuts all), JointRD's student is plain."""
  c = kd_zoo.get_config(arg)
  for cell in study.cells(c):
    s = study.sweep_config(c, cell, "/w")
    for m in s.methods:
      config = planning.run_config(s.base, m, 0, "/teacher")
      run_setup.validate(config)
      method = run_setup.build_method(config, 100)
      # (a VGG is plain whatever the policy: it records shortcuts 'none')
      want = ("projection" if m == "jointrd" else
              "none" if zoo.family(cell.arch) == "vgg" else "all")
      assert method.student.shortcuts == want, (cell.name, m)
      assert config.model.arch == cell.arch
      assert (method.teacher is None) == (m == "resnet")


def test_published_numbers_are_the_docs_table():
  """zoo_report.PUBLISHED equals docs/zoo.md's table of the published numbers."""
  text = (REPO / "docs" / "zoo.md").read_text()
  rows = re.findall(r"^\| (\w+) -> (\w+) \| ([\d.–| ]+) \|$", text, re.M)
  assert len(rows) == 12
  for t, s, cells in rows:
    values = [c.strip() for c in cells.split("|")][:5]  # teacher, student, KD, DKD, KD + LS
    want = [None if v == "–" else float(v) for v in values]
    got = [zoo_report.PUBLISHED[f"{t}:{s}"][k] for k in zoo_report.COLUMNS]
    assert got == want, (t, s)
  assert set(zoo_report.PUBLISHED) == set(zoo.STANDARD_PAIRS)


@pytest.fixture(scope="module")
def zoo_smoke(tmp_path_factory):
  return sweep_helpers.study_with_fake_runs(tmp_path_factory.mktemp("zoo"), _smoke(),
                                            "zoo")


def test_smoke_runs_every_cell_with_its_student_teacher_and_lr(zoo_smoke):
  wd, by_cell, _, failed = zoo_smoke
  assert not failed
  assert list(by_cell) == ["resnet56", "vgg13", "resnet20", "mobilenetv2",
                           "resnet56-resnet20", "resnet56-resnet20-plain", "vgg13-mobilenetv2"]
  kd = sweep_helpers.run_config(wd, "vgg13-mobilenetv2", "kd_logits")
  assert (kd["model"]["arch"], kd["model"]["shortcuts"], kd["model"]["conv"]) == (
      "mobilenetv2", "all", "none")
  assert kd["optimizer"]["learning_rate"] == 0.01 and kd["teacher"]["arch"] == "vgg13"
  assert kd["teacher"]["checkpoint"] == os.path.join(wd, "vgg13", "runs", "resnet", "seed0")
  assert sweep_helpers.run_config(wd, "mobilenetv2", "resnet")["optimizer"]["learning_rate"] == 0.01
  base_lr = kd_zoo.get_config("smoke").base.optimizer.learning_rate
  jointrd = sweep_helpers.run_config(wd, "resnet56-resnet20-plain", "jointrd")
  assert jointrd["model"]["shortcuts"] == "" and jointrd["teacher"]["arch"] == "resnet56"
  assert jointrd["optimizer"]["learning_rate"] == base_lr
  dkd = sweep_helpers.run_config(wd, "resnet56-resnet20", "dkd_dirac")
  assert (dkd["loss"]["dkd"]["beta"], dkd["loss"]["dkd"]["warmup_epochs"]) == (2.0, 20)
  kd = sweep_helpers.run_config(wd, "resnet56-resnet20", "kd_logits")
  assert kd["loss"]["dkd"]["beta"] is None


def test_smoke_table_has_our_numbers_beside_the_published_ones(zoo_smoke):
  wd, _, paths, _ = zoo_smoke
  with open(paths["csv"]) as f:
    rows = {(r["pair"], r["row"]): r for r in csv.DictReader(f)}
  rows_of = ("teacher", "student", "kd", "dkd", "dist", "kd_ls")
  assert set(rows) == ({("resnet56:resnet20", r) for r in rows_of + ("jointrd",)}
                       | {("vgg13:mobilenetv2", r) for r in rows_of})
  presets = {"teacher": "resnet", "student": "resnet", "kd": "kd_logits", "dkd": "dkd_dirac",
             "dist": "dist_dirac", "kd_ls": "kd_ls_dirac", "jointrd": "jointrd"}
  for (pair, row), r in rows.items():
    want = statistics.fmean(sweep_helpers.fake_top1(presets[row], s) for s in (0,))
    assert float(r["final_top1_mean"]) == pytest.approx(want, abs=1e-4)  # 4 decimals kept
  # The published numbers (docs/zoo.md) and their sources; none for DIST and JointRD.
  published = {("resnet56:resnet20", "teacher"): 72.34, ("resnet56:resnet20", "kd"): 70.66,
               ("resnet56:resnet20", "dkd"): 71.97, ("vgg13:mobilenetv2", "student"): 64.60,
               ("vgg13:mobilenetv2", "kd_ls"): 68.61}
  for key, value in published.items():
    assert float(rows[key]["published_top1"]) == value
  assert rows[("resnet56:resnet20", "dkd")]["published_source"].startswith("mdistiller README")
  assert rows[("vgg13:mobilenetv2", "kd_ls")]["published_source"].startswith(
      "logit-standardization-KD")
  for key in (("resnet56:resnet20", "dist"), ("resnet56:resnet20", "jointrd")):
    assert rows[key]["published_top1"] == rows[key]["published_source"] == ""
  md = open(paths["md"]).read()
  assert "| resnet56 -> resnet20 | KD | 9.00 (1 seed) | 70.66 | RepDistiller README" in md
  assert "JointRD is not run for vgg13:mobilenetv2: " in md and "is a fixed network" in md
  assert "not comparable" in md  # synthetic data, 2 epochs: not the published setting
  assert os.path.getsize(paths["png"]) > 0
  again = study.run(_smoke(), wd, say=lambda s: None, only_report=True)[1]
  assert open(again["md"]).read() == md


def _imported(root, arch, finished=True):
  """What experiments.convert_torch writes (config.json, the checkpoint of step 0)."""
  d = root / arch
  (d / checkpoints.CHECKPOINT_DIR / ("0" if finished else "tmp")).mkdir(parents=True)
  (d / "config.json").write_text(json.dumps({"model": {"arch": arch}, "num_epochs": 240}))
  return d


def test_teachers_dir_replaces_the_teachers_cells(tmp_path):
  for arch in ("resnet56", "vgg13"):
    _imported(tmp_path, arch)
  c = _smoke(teachers_dir=str(tmp_path))
  cells = study.cells(c)
  assert [x.name for x in cells][:2] == ["resnet20", "mobilenetv2"]  # no teacher is trained
  pair = next(x for x in cells if x.name == "vgg13-mobilenetv2")
  s = study.sweep_config(c, pair, str(tmp_path / "wd"))
  assert s.teacher_checkpoint == str(tmp_path / "vgg13")
  planning.check_base_settings(s)
  plan = planning.plan(s, str(tmp_path / "wd"))  # the sweep takes the imported network
  assert plan.teacher_dir == str(tmp_path / "vgg13") and not any(r.is_teacher for r in plan.runs)


@pytest.mark.parametrize("setup, overrides, words", [
    (None, dict(pairs=("resnet56:resnet2",)), "unknown arch 'resnet2'"),
    (None, dict(pairs=("resnet56-resnet20",)), "is not a pair; write TEACHER:STUDENT"),
    (None, dict(pairs=("vgg13:vgg8", "vgg13:vgg8")), "names a pair twice"),
    (None, dict(methods=("kd", "crd")), "unknown zoo method 'crd'"),
    (None, dict(pairs=("wrn_40_2:wrn_40_1",), methods=("jointrd",)),
     "same shapes; student wrn_40_1"),
    (None, dict(pairs=("vgg13:vgg8",), methods=("jointrd", "kd")), "vgg8 is plain already"),
    (None, dict(pairs=("resnet56:resnet20",), small_student_lr=0.02), "would change nothing"),
    (None, dict(pairs=("resnet32x4:shufflenetv1",)), "shufflenetv1 takes"),  # width 16
    (None, dict(cells=("resnet56-resnet8",)), "names no cell"),
    ("vgg13", {}, "has no teacher resnet56"),
    ("resnet56:vgg13", {}, "holds a vgg13 run, not resnet56"),
    ("unfinished", {}, "holds no finished run"),
    ("resnet56,vgg13", dict(teacher_seed=1), "teacher_seed=1: every teacher comes from"),
])
def test_a_bad_zoo_is_one_line_and_writes_nothing(tmp_path, setup, overrides, words):
  if setup:
    teachers = tmp_path / "teachers"
    if setup == "unfinished":
      _imported(teachers, "resnet56", finished=False)
      _imported(teachers, "vgg13")
    for spec in setup.split(",") if setup != "unfinished" else ():
      name, _, arch = spec.partition(":")
      d = _imported(teachers, arch or name)
      if arch:
        d.rename(teachers / name)
    overrides = dict(overrides, teachers_dir=str(teachers))
  wd = tmp_path / "zoo"
  with pytest.raises(UserError, match=re.escape(words)) as e:
    study.run(_smoke(**overrides), str(wd), say=lambda s: None)
  assert "\n" not in str(e.value)
  assert not wd.exists()


def test_the_command_refuses_a_bad_zoo_in_one_line(tmp_path):
  wd = tmp_path / "zoo"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.study", "--config=configs/kd_zoo.py:smoke",
       "--config.pairs=resnet56:resnet2", f"--workdir={wd}"],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[-1].startswith("error: config.pairs: 'resnet56:resnet2': unknown arch")
  assert "Traceback" not in proc.stderr and not wd.exists()


@pytest.mark.slow
def test_a_zoo_run_config_trains_a_fixed_student_at_its_lr(tmp_path):
  """One real run: the smoke's KD run of vgg13 -> mobilenetv2 (shortcuts all, lr 0.01) for
  one epoch of 64 images (width 16), from a vgg13 teacher of random weights saved as a run."""
  c = _smoke()
  cell = next(x for x in study.cells(c) if x.name == "vgg13-mobilenetv2")
  s = study.sweep_config(c, cell, str(tmp_path))
  teacher_dir = str(tmp_path / "teacher")
  t_config = teachers.teacher_config(s.base)
  net = run_setup.build_method(t_config, 10).student
  checkpoints.save_network(teacher_dir, net, models.init(net, jax.random.key(0)),
                           image_shape=(32, 32, 3),
                           config_dict=workdir_lib.config_to_dict(t_config))
  config = planning.run_config(s.base, "kd_logits", 0, teacher_dir)
  config.update_from_flattened_dict({"num_epochs": 1, "synthetic.train_size": 64,
                                     "synthetic.test_size": 32, "eval_batch_size": 32,
                                     "batch_size": 32})
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["epochs_done"] == 1
  student, _, _ = checkpoints.load_network(str(tmp_path / "run"))
  assert (student.zoo_arch, student.shortcuts) == ("mobilenetv2", "all")
  saved = json.loads((tmp_path / "run" / "config.json").read_text())
  assert saved["optimizer"]["learning_rate"] == 0.01
  assert saved["teacher"] == dict(saved["teacher"], arch="vgg13", checkpoint=teacher_dir)
