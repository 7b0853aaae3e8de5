"""ImageNet end to end in the trainer (configs/imagenet/, datasets/streamed.py, feeds.py):
every method's ImageNet config builds, and every kind of step trains on a generated folder
of JPEGs streamed through the real pipeline; `imagefolder:PATH` and TFDS `imagenet2012` (mock) work alike; a run
stopped mid-epoch resumes to the uninterrupted result bitwise; the recipe is the paper's.

Runs are the smallest that exercise everything: imagenet_resnet10 width 4 at 32x32, one
epoch of 3 steps of 16, 16 validation images.
"""
import importlib
import os

import jax
import numpy as np
import pytest

from jointrd_jax import errors, methods
from jointrd_jax.training import checkpoints, feeds, optim, reporting, run_setup, train
import run_helpers
import smoke_fixture
import tfds_helpers

METHODS = list(methods.METHODS)
TINY = {"model.width": 4, "streamed.image_size": 32, "streamed.eval_resize": 37,
        "synthetic.train_size": 48, "synthetic.test_size": 16, "synthetic.num_classes": 4,
        "num_epochs": 1, "batch_size": 16, "eval_batch_size": 16, "log_every_steps": 1}


def config(method, **overrides):
  c = importlib.import_module(f"configs.imagenet.{method}").get_config("smoke")
  c.update_from_flattened_dict({**TINY, **overrides})
  return c


@pytest.fixture(scope="module", autouse=True)
def _on_one_device(one_device):  # the module's runs on one device (conftest.py)
  del one_device


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """Where the generated image folder goes (its data_dir), shared by the module."""
  return str(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def teacher(folder, tmp_path_factory):
  d = str(tmp_path_factory.mktemp("teacher"))
  train.train_and_evaluate(config("resnet", data_dir=folder), d)
  return d


def test_teacher_run_is_bitwise_as_recorded(teacher):
  smoke_fixture.check("imagenet/resnet", teacher)


def _final(workdir):
  state, meta = checkpoints.Checkpoints(workdir, create=False).restore()
  return state, meta


def test_recipe_is_the_papers_imagenet_recipe():
  c = importlib.import_module("configs.imagenet.jointrd").get_config()
  cifar = importlib.import_module("configs.jointrd").get_config()
  # The same keys as the CIFAR configs, so every override works alike.
  assert set(c.to_dict()) == set(cifar.to_dict())
  assert (c.model.arch, c.num_epochs, c.batch_size, c.dataset) == (
      "imagenet_resnet50", 120, 512, "imagenet2012")
  o = c.optimizer
  assert (o.learning_rate, o.weight_decay, o.momentum, o.nesterov) == (0.2, 1e-4, 0.9, True)
  tx, schedule = optim.create_optimizer(c, steps_per_epoch=10)
  # lr 0.2, x0.1 at epochs 30, 60 and 90.
  for epoch, lr in ((0, 0.2), (29, 0.2), (30, 0.02), (59, 0.02), (60, 0.002), (90, 0.0002)):
    assert float(schedule(epoch * 10)) == pytest.approx(lr, rel=1e-6), epoch
  jointrd = run_setup.build_method(c, 1000).terms[0]
  assert (jointrd.name, jointrd.params["dc"], jointrd.params["decay_epochs"]) == (
      "jointrd", 5e-3, 60)
  assert (c.streamed.image_size, c.streamed.eval_resize, c.streamed.resize) == (
      224, 256, "antialias")  # torchvision's pixels by default
  del tx


def test_every_imagenet_config_builds_its_method():
  for method in METHODS:
    c = importlib.import_module(f"configs.imagenet.{method}").get_config()
    run_setup.validate(c)
    m = run_setup.build_method(c, 1000)
    assert m.name == method and m.student.variant == "imagenet"
    assert m.student.shortcuts == methods.METHODS[method].student_shortcuts
    assert (m.teacher is not None) == methods.METHODS[method].needs_teacher


# The three kinds of step: CE alone (resnet; also the teacher fixture), a frozen teacher's
# features (kd_mse_all_dirac: its full forward too, as KD(logits)), the hybrid paths.
@pytest.mark.parametrize("method", smoke_fixture.IMAGENET_METHODS)
def test_imagenet_configs_train_on_generated_jpegs(method, folder, teacher, tmp_path):
  c = config(method, data_dir=folder)
  if methods.METHODS[method].needs_teacher:
    c.teacher.checkpoint = teacher
  summary = train.train_and_evaluate(c, str(tmp_path))
  assert summary["epochs_done"] == 1 and summary["num_eval"] == 16
  assert summary["eval_split"] == "val" and summary["dataset"] == "synthetic"
  assert summary["student"]["variant"] == "imagenet"
  trains = [r for r in reporting.read_metrics(tmp_path) if r["split"] == "train"]
  assert [r["step"] for r in trains] == [1, 2, 3]
  assert all(np.isfinite(r["loss"]) for r in trains)
  _, meta = _final(tmp_path)
  assert meta["image_shape"] == [32, 32, 3] and meta["step"] == 3
  smoke_fixture.check(f"imagenet/{method}", tmp_path)  # bitwise as recorded


def test_imagefolder_path_and_resume_mid_epoch_bitwise(folder, teacher, tmp_path, monkeypatch):
  """`--config.dataset=imagefolder:PATH` (the generated folder itself), JointRD over two
  epochs; stopped by SIGTERM at step 2 of epoch 2 and resumed: the same parameters and
  metric records, bitwise, as without the stop (the loader restarts the epoch at step 2
  without reading the files of steps 0-1)."""
  path = next(os.path.join(folder, d) for d in os.listdir(folder) if "imagefolder" in d)
  c = config("jointrd", dataset=f"imagefolder:{path}", num_epochs=2)
  c.teacher.checkpoint = teacher
  straight = train.train_and_evaluate(c, str(tmp_path / "straight"))
  assert straight["dataset"] == f"imagefolder:{path}"

  with monkeypatch.context() as m:
    run_helpers.sigterm_at(m, feeds.StreamFeed, epoch_to_stop=1, step_in_epoch=1)
    with pytest.raises(errors.Preempted):
      train.train_and_evaluate(c, str(tmp_path / "resumed"))
  _, meta = _final(tmp_path / "resumed")
  assert meta["step"] == 3 + 2
  train.train_and_evaluate(c, str(tmp_path / "resumed"))
  (a, _), (b, _) = _final(tmp_path / "straight"), _final(tmp_path / "resumed")
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)

  def records(d):
    return [{k: v for k, v in r.items() if k != "images_per_s"}
            for r in reporting.read_metrics(d)]

  assert records(tmp_path / "straight") == records(tmp_path / "resumed")


def test_tfds_imagenet2012(tmp_path_factory, tmp_path):
  """TFDS imagenet2012 through the trainer: a tiny one prepared with TFDS's own builder
  from fake manual-download tars (tests/tfds_helpers.py), the real TFRecords."""
  prepared = tfds_helpers.prepare(tmp_path_factory.mktemp("imagenet"))
  c = config("resnet", dataset="imagenet2012", data_dir=prepared)
  summary = train.train_and_evaluate(c, str(tmp_path / "run"))
  assert summary["dataset"] == "imagenet2012" and summary["eval_split"] == "validation"
  assert summary["epochs_done"] == 1 and summary["student"]["num_classes"] == 1000
  assert summary["num_eval"] == tfds_helpers.N_VAL
