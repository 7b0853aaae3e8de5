"""The main job end to end on tiny networks: every method, resume, devices, teachers.

The module's runs use one device (`one_device`), but the 8-device comparison."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath

from jointrd_jax import errors, methods, sharding
from jointrd_jax.training import checkpoints, feeds, optim, reporting, train
from jointrd_jax.errors import UserError
import run_helpers
from smoke_runs import (PAPER_METHODS, check_smoke_run, digest, final_params, records, smoke,
                        smoke_runs, teacher_digest, teacher_dir)  # noqa: F401 (fixtures)


@pytest.fixture(scope="module", autouse=True)
def _on_one_device(one_device):
  del one_device


@pytest.mark.parametrize("method", PAPER_METHODS)
def test_smoke_config_trains_every_method_on_synthetic_data(method, smoke_runs):
  check_smoke_run(method, smoke_runs)


@pytest.mark.parametrize("method", ["resnet", "jointrd"])  # the data path is the same for all
def test_smoke_config_trains_on_mock_tfds(method, teacher_dir, tmp_path, mock_tfds):
  config = smoke(method, dataset="cifar10", data_dir=str(tmp_path / "tfds"))
  if methods.METHODS[method].needs_teacher:
    config.teacher.checkpoint = teacher_dir
  with mock_tfds(num_examples=128):
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["dataset"] == "cifar10" and summary["num_eval"] == 128
  assert summary["epochs_done"] == 2
  assert 0 <= summary["final"]["student_top1"] <= 100


def test_resume_mid_epoch_gives_the_uninterrupted_result(smoke_runs, teacher_dir, tmp_path,
                                                        monkeypatch):
  """SIGTERM at step 3 of epoch 2 (on CPU one step per dispatch: the run stops right after
  it), then resume: bitwise the uninterrupted run. (Stops at epoch boundaries and SIGKILLs
  are in test_reliability.py.)"""
  stop_step = 3
  straight, _ = smoke_runs("jointrd")
  config = smoke("jointrd")
  config.teacher.checkpoint = teacher_dir
  epoch = 1
  with monkeypatch.context() as m:
    run_helpers.sigterm_at(m, feeds.MemoryFeed, epoch, stop_step)
    with pytest.raises(errors.Preempted):
      train.train_and_evaluate(config, str(tmp_path / "resumed"))
  _, meta = final_params(tmp_path / "resumed")
  assert meta["step"] == epoch * 16 + stop_step + 1
  assert not (tmp_path / "resumed" / "summary.json").exists()
  train.train_and_evaluate(config, str(tmp_path / "resumed"))
  a, _ = final_params(straight)
  b, _ = final_params(tmp_path / "resumed")
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
  assert records(straight, "eval") == records(tmp_path / "resumed", "eval")
  timing = ("images_per_s",)
  assert ([{k: v for k, v in r.items() if k not in timing} for r in records(straight, "train")]
          == [{k: v for k, v in r.items() if k not in timing}
              for r in records(tmp_path / "resumed", "train")])


def test_eight_devices_give_the_one_device_loss_curve(smoke_runs, tmp_path, monkeypatch):
  """The same batches and the same math on 8 devices as on 1; only the order of float
  reductions differs (BN statistics and gradients summed over 8 shards). That difference
  starts at rounding (measured: 3e-7 relative over the first 4 steps) and then grows as
  SGD amplifies it (measured: 1e-3 after 8 steps, 2.5e-3 after 12 at the smoke learning
  rate), so the curves agree tightly at the start and the run's accuracy stays close."""
  assert jax.device_count() == 8
  one, _ = smoke_runs("plain_dirac")
  monkeypatch.setattr(sharding, "make_mesh", lambda devices=None: sharding.Mesh(
      np.asarray(jax.devices()), (sharding.DATA_AXIS,)))
  eight = tmp_path / "eight"
  train.train_and_evaluate(smoke("plain_dirac"), str(eight))
  t8, t1 = records(eight, "train"), records(one, "train")
  assert [r["step"] for r in t8] == [r["step"] for r in t1]
  # The first record: 4 steps, each from (nearly) the same state: float32 rounding of a
  # few thousand-term sums, relative ~1e-6 at most.
  for k in ("loss", "ce", "accuracy"):
    np.testing.assert_allclose(t8[0][k], t1[0][k], rtol=1e-5, err_msg=k)
  # Every record: the same batches (loss within a percent, far below the change of the
  # loss from one record to the next); accuracies as counts, a few flipped argmaxes.
  for r8, r1 in zip(t8, t1):
    np.testing.assert_allclose(r8["loss"], r1["loss"], rtol=1e-2)
    assert abs(r8["accuracy"] - r1["accuracy"]) <= 4 / (4 * 32) + 1e-9
  e8, e1 = records(eight, "eval"), records(one, "eval")
  for r8, r1 in zip(e8, e1, strict=True):
    assert abs(r8["student_top1"] - r1["student_top1"]) <= 4 * 100 / 200 + 1e-9


def test_frozen_teacher_is_bitwise_unchanged_by_distillation(smoke_runs, teacher_dir,
                                                            teacher_digest):
  run, _ = smoke_runs("kd_logits_dirac")
  assert digest(teacher_dir) == teacher_digest
  # The teacher the run evaluated is the one on disk: the accuracy of its own run (its BN
  # folded into its convs: the same logits to float rounding, which could flip the
  # prediction of a near-tie, one image of 200 at most).
  teacher_final = json.loads((epath.Path(teacher_dir) / "summary.json").read_text())["final"]
  for r in records(run, "eval"):
    assert abs(r["teacher_top1"] - teacher_final["student_top1"]) <= 100 / 200
  student_params, _ = final_params(run)
  assert set(student_params) == {"student"}


def test_teacher_of_another_arch_is_refused(teacher_dir, tmp_path):
  config = smoke("jointrd")
  config.teacher.checkpoint = teacher_dir
  config.model.arch = "resnet14"
  with pytest.raises(UserError, match="does not fit"):
    train.train_and_evaluate(config, str(tmp_path))
  assert not list(tmp_path.iterdir())  # nothing written


def test_optimizer_schedule_and_decay_mask():
  config = smoke("plain_dirac")
  config.num_epochs = 200
  config.optimizer.learning_rate = 0.1
  tx, schedule = optim.create_optimizer(config, steps_per_epoch=10)
  assert float(schedule(999)) == pytest.approx(0.1)
  assert float(schedule(1000)) == pytest.approx(0.01)
  assert float(schedule(1499)) == pytest.approx(0.01)
  assert float(schedule(1500)) == pytest.approx(0.001)
  params = {"conv": {"kernel": jnp.ones(3), "dirac_a": jnp.ones(3), "dirac_b": jnp.ones(3)},
            "bn": {"scale": jnp.ones(3)}}
  mask = optim.weight_decay_mask(params)
  assert mask == {"conv": {"kernel": True, "dirac_a": False, "dirac_b": False},
                  "bn": {"scale": True}}
  # One step from zero momentum with zero gradient: only weight decay moves parameters.
  updates, _ = tx.update(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
  assert float(updates["conv"]["dirac_a"][0]) == 0.0
  # Nesterov: the first step is lr * (1 + momentum) * wd * p.
  assert float(updates["conv"]["kernel"][0]) == pytest.approx(-0.1 * 1.9 * 5e-4)
  assert float(updates["bn"]["scale"][0]) == pytest.approx(-0.1 * 1.9 * 5e-4)
