"""What a run shows a person: epoch positions in the log, and the learning-curve figure."""
import pytest

from jointrd_jax.training import reporting


def test_epoch_position_uses_the_progress_lines_one_based_epochs():
  # 16 steps per epoch, 2 epochs: the progress line of step 24 says "epoch 2/2".
  assert reporting.epoch_position(24, 16, 2) == "in epoch 2/2, step 8 of 16"
  assert reporting.epoch_position(16, 16, 2) == "after epoch 1/2"
  assert reporting.epoch_position(1, 16, 2) == "in epoch 1/2, step 1 of 16"
  assert reporting.epoch_position(0, 16, 2) == "at the start"


def _records(epochs, heads=("student",)):
  return [{"split": "eval", "epoch": e, "step": 8 * e, "train_loss": 1.0 / e,
           **{f"{h}_top1": 10.0 * e for h in heads}} for e in epochs]


def _visible_ticks(ax):
  lo, hi = ax.get_xlim()
  return [t for t in ax.get_xticks() if lo <= t <= hi]


@pytest.mark.parametrize("epochs", [[1], [1, 2], [1, 2, 3, 4, 5]])
def test_learning_curves_show_whole_epochs_only(epochs):
  pytest.importorskip("matplotlib")
  fig = reporting.learning_curves_figure(_records(epochs))
  fig.canvas.draw()
  for ax in fig.axes:
    assert _visible_ticks(ax) == epochs  # not 0.945 .. 1.050 for one epoch
    lo, hi = ax.get_xlim()
    assert epochs[0] - 1 < lo < epochs[0] and epochs[-1] < hi < epochs[-1] + 1


def test_learning_curves_label_the_trained_network_by_what_it_is():
  pytest.importorskip("matplotlib")
  fig = reporting.learning_curves_figure(_records([1, 2]), network="resnet")
  assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["resnet"]
  fig = reporting.learning_curves_figure(_records([1, 2], ("student", "teacher", "hybrid1")))
  assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == [
      "student", "hybrid1", "teacher"]
