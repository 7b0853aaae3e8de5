"""`pareto.png` without runtimes: points labelled by method (numbers on the points, the
numbers' methods in the legend), no label over another label or a point, and the labels
made unique where two runs share a method. The plot of measured runs is
test_inference_runtimes.py."""
import itertools
import math

import pytest

from jointrd_jax.benchmarking import pareto

pareto_plot = pytest.importorskip("jointrd_jax.benchmarking.pareto_plot")

# The trained comparison of the README (docs/figures/pareto_digits.png): (method, int8 ms,
# int8 top-1, fp32 ms, fp32 top-1); three fp32 points within 0.023 ms at the same top-1 and
# five int8 points within 0.02 ms and 2 points of top-1, the crowds whose labels collided.
DIGITS = [("resnet", .113, 98.06, .400, 98.06), ("plain_dirac", .108, 86.39, .421, 91.39),
          ("kd_logits_dirac", .128, 96.39, .422, 96.39), ("dist_dirac", .105, 96.94, .374, 96.94),
          ("plain_repvgg", .107, 97.78, .410, 98.06),
          ("kd_logits_repvgg", .125, 98.33, .423, 98.06), ("jointrd", .110, 83.89, .466, 84.44),
          ("jointrd_repvgg", .125, 90.56, .417, 91.67)]
# Each method's name in the tables (methods/presets.py), written out.
LABELS = {"resnet": "ResNet (with shortcuts)", "plain_dirac": "Plain CNN + Dirac, from scratch",
          "kd_logits_dirac": "KD(logits) + Dirac", "dist_dirac": "DIST + Dirac",
          "plain_repvgg": "Plain CNN + RepVGG, from scratch",
          "kd_logits_repvgg": "KD(logits) + RepVGG", "jointrd": "JointRD (ours)",
          "jointrd_repvgg": "JointRD + RepVGG"}


def _run(name, method, arch="resnet10", seed=0):
  return {"name": name, "method": method, "arch": arch, "seed": seed}


def _figure(rows):
  """The figure of `rows` (method, int8 ms, int8 top-1, fp32 ms, fp32 top-1), each run in a
  folder named like the README's (`seed0`: the workdir names the old plot showed)."""
  runs = [_run(f"{m}/seed0", m) for m, *_ in rows]
  labels = dict(zip((r["name"] for r in runs), pareto.method_labels(runs)))
  pts = [{"name": r["name"], "precision": prec, "latency_ms": ms, "top1": top1}
         for r, (_, i_ms, i_top1, f_ms, f_top1) in zip(runs, rows)
         for prec, ms, top1 in (("int8", i_ms, i_top1), ("fp32", f_ms, f_top1))]
  fig = pareto_plot.figure(pts, pareto.front(pts), labels, "title")
  fig.canvas.draw()
  return fig, pts


def _text_box(text, renderer):
  # The text's own box: an Annotation's extent also covers its leader line.
  return pareto_plot.Text.get_window_extent(text, renderer)


def _check_labels(fig, pts, numbers):
  """Each point carries its run's number; no label box overlaps another label or a
  point's marker; every label lies inside the axes."""
  ax = fig.axes[0]
  renderer = fig.canvas.get_renderer()
  texts = ax.texts
  assert sorted(t.get_text() for t in texts) == sorted(str(numbers[p["name"]]) for p in pts)
  for t in texts:  # each number sits next to a point of its run
    owners = [p for p in pts if (p["latency_ms"], p["top1"]) == tuple(t.xy)]
    assert [str(numbers[p["name"]]) for p in owners] == [t.get_text()]
  boxes = [_text_box(t, renderer) for t in texts]
  for a, b in itertools.combinations(boxes, 2):
    assert not a.overlaps(b), (a, b)
  inside = ax.get_window_extent(renderer)
  for box in boxes:
    assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), box
  # The markers, from the drawn scatter collections: centre and size (points^2).
  for coll in ax.collections:
    r_px = math.sqrt(coll.get_sizes()[0]) / 2 * fig.dpi / 72
    for x, y in ax.transData.transform(coll.get_offsets()):
      for box in boxes:  # the nearest point of the box is outside the marker's circle
        dx, dy = max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1)
        assert math.hypot(dx, dy) >= r_px - 0.5, (box, (x, y), r_px)


def test_points_are_labelled_by_method_and_labels_do_not_overlap():
  fig, pts = _figure(DIGITS)
  legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
  assert legend == [f"{i}  {LABELS[m]}" for i, (m, *_) in enumerate(DIGITS, 1)] + [
      "fp32", "int8", "Pareto front"]
  assert not any("seed0" in t.get_text() for t in fig.findobj(pareto_plot.Text))
  _check_labels(fig, pts, {f"{m}/seed0": i for i, (m, *_) in enumerate(DIGITS, 1)})


def test_labels_of_a_crowd_do_not_overlap():
  # 12 runs at nearly one spot (0.001 ms and 0.01 points apart): labels move off with lines.
  methods = list(LABELS) + ["dkd_dirac", "kd_ls_dirac", "jointrd_dkd", "kd_logits"]
  rows = [(m, 0.1 + 0.001 * i, 90 + 0.01 * i, 0.4 + 0.001 * i, 95 - 0.01 * i)
          for i, m in enumerate(methods)]
  fig, pts = _figure(rows)
  _check_labels(fig, pts, {f"{m}/seed0": i for i, m in enumerate(methods, 1)})
  assert any(t.arrow_patch is not None for t in fig.axes[0].texts)  # leader lines drawn


def test_labels_are_unique_where_runs_share_a_method():
  runs = [_run("a/s0", "jointrd"), _run("a/s1", "jointrd", seed=1),
          _run("b", "jointrd", arch="resnet18"), _run("c", "plain"), _run("d", None),
          _run("e/x", "kd_logits", seed=None), _run("f/x", "kd_logits", seed=None)]
  assert pareto.method_labels(runs) == [
      "JointRD (ours), resnet10, seed 0", "JointRD (ours), resnet10, seed 1",
      "JointRD (ours), resnet18", "Plain CNN, from scratch", "d",
      "KD(logits), resnet10, e/x", "KD(logits), resnet10, f/x"]


def test_a_runs_recorded_label_names_what_it_trained():
  # A run that changed its preset records the label saying so (training.identity); older
  # summaries without one fall back to the preset's label.
  changed = dict(_run("a", "kd_logits_dirac"),
                 run_label="KD(logits) + Dirac, changed: conv repvgg")
  assert pareto.method_labels([changed, _run("b", "kd_logits_dirac")]) == [
      "KD(logits) + Dirac, changed: conv repvgg", "KD(logits) + Dirac"]
