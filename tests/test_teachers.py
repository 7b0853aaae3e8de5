"""Teachers in the trainer: trained on the fly into WORKDIR/teacher and then reused, and
trained jointly with the student (JointRD's `teacher.train=joint`). Tiny smoke runs of one
epoch (the frozen teacher's folding and its one evaluation per run are in test_steps.py)."""
import importlib
import json

import pytest

from jointrd_jax.training import checkpoints, reporting, run_setup, teachers, train
from jointrd_jax.training import workdir as workdir_lib


@pytest.fixture(scope="module", autouse=True)
def _on_one_device(one_device):  # the module's runs on one device (conftest.py)
  del one_device


def smoke(method, **overrides):
  config = importlib.import_module(f"configs.{method}").get_config("smoke")
  config.update_from_flattened_dict(overrides)
  return config


def _final_params(workdir):
  state, meta = checkpoints.Checkpoints(workdir, create=False).restore()
  return state["params"], meta


def test_teacher_is_trained_on_the_fly_then_reused(tmp_path, capsys):
  config = smoke("jointrd", num_epochs=1)
  train.train_and_evaluate(config, str(tmp_path))
  t_summary = tmp_path / "teacher" / "summary.json"
  assert json.loads(t_summary.read_text())["method"] == "resnet"
  stamp = t_summary.stat().st_mtime_ns
  capsys.readouterr()
  summary = train.train_and_evaluate(config, str(tmp_path))  # finished: nothing retrains
  out = capsys.readouterr().out
  assert "training the ResNet teacher" not in out and "compiled the train step" not in out
  assert t_summary.stat().st_mtime_ns == stamp
  assert summary["epochs_done"] == 1


def test_joint_teacher_mode_trains_both_networks(tmp_path):
  config = smoke("jointrd", num_epochs=1)
  config.teacher.train = "joint"
  summary = train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / "teacher").exists()
  params, meta = _final_params(tmp_path)
  assert set(params) == {"student", "teacher"} and set(meta["networks"]) == {"student", "teacher"}
  assert "teacher_ce" in [r for r in reporting.read_metrics(tmp_path) if r["split"] == "train"][0]
  assert summary["epochs_done"] == 1




@pytest.mark.parametrize("recipe", ["configs", "configs.imagenet"])
def test_the_teacher_trains_with_the_resnet_presets_own_settings(recipe):
  # The student's loss settings (its CE weight included) are the student's: the teacher
  # trained on the fly is the resnet preset's run of the same recipe, as if trained alone.
  student = importlib.import_module(f"{recipe}.kd_ls_dirac").get_config("smoke")
  student.update_from_flattened_dict({"loss.ce.weight": 0.5, "loss.kd.temperature": 3.0})
  t = teachers.teacher_config(student)
  own = importlib.import_module(f"{recipe}.resnet").get_config("smoke")
  assert workdir_lib.differences(workdir_lib.config_to_dict(own), t) == []
  terms = run_setup.build_method(t, 10).terms
  assert [(w.name, w.weight) for w in terms] == [("ce", 1.0)]
  assert run_setup.build_method(student, 10).terms[0].weight == 0.5  # the student's CE
