"""`python -m experiments.evaluate` (jointrd_jax/scoring.py): a run's checkpoint scored on a
split equals the trainer's own evaluation; per-class numbers and the confusion matrix agree
with the labels; bad input is one line.

One smoke ResNet run (one device, `one_device`) on a small cifar10_python archive
(tests/cifar_archives.py): also the end-to-end test of training on that source.
"""
import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import resnet
from experiments import evaluate as evaluate_cli
from jointrd_jax import datasets, sharding
from jointrd_jax.training import reporting, scoring, steps, train, workdir
import cifar_archives

NAMES = tuple(f"kind{i}" for i in range(10))


@pytest.fixture(scope="module")
def run(tmp_path_factory, one_device):
  """A finished 2-epoch smoke run (a checkpoint per epoch) on a cifar10_python archive."""
  del one_device
  base = tmp_path_factory.mktemp("evaluate")
  rng = np.random.default_rng(11)
  train_xy, test_xy = cifar_archives.images(rng, 256, 10), cifar_archives.images(rng, 90, 10)
  cifar_archives.write_python(str(base), "cifar10", train_xy, test_xy, NAMES)
  config = resnet.get_config("smoke")
  config.dataset = f"cifar10_python:{base}"
  config.eval_hybrids_every_epochs = 0
  summary = train.train_and_evaluate(config, str(base / "run"))
  return base / "run", summary, train_xy[1], test_xy[1]


def test_test_split_equals_the_runs_final_evaluation(run, capsys):
  path, summary, _, y_test = run
  assert summary["dataset"].startswith("cifar10_python:") and summary["num_eval"] == 90
  assert evaluate_cli.main([f"--workdir={path}"]) == 0
  printed = capsys.readouterr().out
  m = json.loads((path / "eval" / "test" / "metrics.json").read_text())
  final = summary["final"]
  assert m["top1"] == final["student_top1"] and m["top5"] == final["student_top5"]
  assert m["loss"] == pytest.approx(final["student_loss"], rel=1e-6)
  assert f"top-1 {final['student_top1']:.2f} %" in printed
  assert m["checkpoint"] == {"step": 16, "epoch": 2, "num_epochs": 2, "finished": True}
  # The confusion counts and per-class numbers against the archive's labels.
  confusion = np.load(path / "eval" / "test" / "confusion.npy")
  np.testing.assert_array_equal(confusion.sum(1), np.bincount(y_test, minlength=10))
  with open(path / "eval" / "test" / "confusion.csv") as f:
    rows = list(csv.reader(f))
  assert rows[0][1:] == list(NAMES) and [r[0] for r in rows[1:]] == list(NAMES)
  np.testing.assert_array_equal(np.asarray([r[1:] for r in rows[1:]], int), confusion)
  per = m["per_class"]
  assert [c["name"] for c in per] == list(NAMES)
  assert [c["correct"] for c in per] == np.diag(confusion).tolist()
  weighted = sum(c["accuracy"] * c["count"] for c in per if c["count"]) / m["num_images"]
  assert weighted == pytest.approx(m["top1"], abs=1e-9)  # ~10 float64 roundings of ~100
  assert (path / "eval" / "test" / "confusion.png").stat().st_size > 1000


def test_train_split_and_an_earlier_checkpoint(run):
  path, _, y_train, _ = run
  m = scoring.evaluate_run(str(path), "train")
  assert m["num_images"] == 256
  assert [c["count"] for c in m["per_class"]] == np.bincount(y_train, minlength=10).tolist()
  first = scoring.evaluate_run(str(path), "test", checkpoint_step=8, overwrite=True)
  epoch1 = [r for r in reporting.read_metrics(path) if r["split"] == "eval"][0]
  assert first["checkpoint"]["epoch"] == 1 and not first["checkpoint"]["finished"]
  assert first["top1"] == epoch1["student_top1"]


def test_holdout_and_test_splits_of_a_holdout_run(run):
  path = run[0]
  config = scoring.load_config(str(path))
  config.holdout = 40
  mesh = sharding.make_mesh()
  want = datasets.load(config.dataset, mesh=mesh, holdout=40, holdout_seed=config.seed)
  held = scoring.split_data(config, "holdout", mesh)
  np.testing.assert_array_equal(held.eval_labels, want.eval_labels)
  test = scoring.split_data(config, "test", mesh)
  full = datasets.load(config.dataset, mesh=mesh)
  np.testing.assert_array_equal(test.eval_images, full.eval_images)


def test_bad_input_is_one_line_before_any_work(run, tmp_path, capsys):
  path = run[0]
  empty = tmp_path / "empty"
  empty.mkdir()
  fresh = tmp_path / "fresh"
  fresh.mkdir()
  (fresh / workdir.CONFIG_FILE).write_text((path / workdir.CONFIG_FILE).read_text())
  cases = [
      ([f"--workdir={tmp_path / 'nope'}"], "no such directory"),
      ([f"--workdir={empty}"], "holds no config.json"),
      ([f"--workdir={fresh}"], "holds no checkpoint under checkpoints/"),
      ([f"--workdir={path}", "--split=validation"], "--split=validation: unknown split"),
      ([f"--workdir={path}", "--split=holdout"], "held out no training images"),
      ([f"--workdir={path}", "--checkpoint_step=3"], "steps 8, 16; pass one of them"),
      ([f"--workdir={path}", "--split=train"], "pass --overwrite to replace it"),
      ([f"--workdir={path}", "--overwrite=maybe"], "not a boolean"),
  ]
  (path / "eval" / "train").mkdir(parents=True, exist_ok=True)
  (path / "eval" / "train" / "metrics.json").write_text("{}")  # an earlier evaluation
  for argv, expect in cases:
    with pytest.raises(SystemExit) as e:
      evaluate_cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and expect in err, (argv, err)
    assert err.count("\n") == 1, err
  assert sorted(p.name for p in fresh.iterdir()) == [workdir.CONFIG_FILE]  # nothing written


def test_top5_of_fewer_than_5_classes_counts_every_class():
  logits = jnp.asarray([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
  score = jax.jit(steps.score, static_argnames=("name", "confusion"))  # one compilation
  out = score(logits, jnp.asarray([1, 1]), jnp.asarray([1.0, 1.0]), name="s", confusion=True)
  assert float(out["s_top1"]) == 1.0 and float(out["s_top5"]) == 2.0
  np.testing.assert_array_equal(out["s_confusion"], [[0, 0, 0], [1, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize("k", [10, 100])
def test_confusion_figure_names_every_class(k):
  rng = np.random.default_rng(k)
  confusion = rng.integers(0, 5, (k, k))
  names = [f"name{i}" for i in range(k)]
  fig = scoring.confusion_figure(confusion, names, "t")
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_yticklabels()] == names
  assert [t.get_text() for t in ax.get_xticklabels()] == names
  assert len(ax.texts) == (np.count_nonzero(confusion) if k <= 20 else 0)


def test_progress_of_an_imported_checkpoint_says_so():
  """A converted run's checkpoint (step 0) is not 'epoch 0 of 200' of its config."""
  assert evaluate_cli.progress({"step": 120, "epoch": 3, "num_epochs": 200}) == "epoch 3 of 200"
  assert evaluate_cli.progress({"step": 0, "epoch": 0, "num_epochs": 200}) == (
      "not trained here: an imported network")
