"""`pareto.png`: accuracy against latency, one numbered point per network and precision.

Each network (a run) gets a number and a colour; its points (o fp32, ^ int8) carry the
number, and the legend beside the axes says which method each number is (`label`: the
method's name in the tables, with the architecture or seed where two runs share it). A
number is placed next to its point where it overlaps no other number and no point and
stays inside the axes (the first free spot on growing rings around the point; a thin line
joins a number placed further off to its point).
"""
from __future__ import annotations

import math

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from jointrd_jax.training import reporting

PRECISION_MARKERS = {"fp32": "o", "int8": "^"}
MARKER_SIZE = 50      # scatter `s` (points^2) of a point; the front's ring is FRONT_SIZE
FRONT_SIZE = 160
RINGS_PT = (7, 10, 14, 19, 25, 32, 40, 50, 62, 76, 92)  # offsets tried, points from the point
DPI = 120
LEADER_FROM_PT = 14   # a number this far or further from its point gets a line to it


def _padded(lo: float, hi: float, frac: float) -> tuple:
  span = hi - lo or max(abs(hi), 1.0) * 0.2
  return lo - frac * span, hi + frac * span


def _markers_px(ax, pts, on) -> list:
  """Each point's marker as a display-space box (the front's ring where it has one)."""
  boxes = []
  for p, o in zip(pts, on):
    x, y = ax.transData.transform((p["latency_ms"], p["top1"]))
    r = math.sqrt(FRONT_SIZE if o else MARKER_SIZE) / 2 * ax.figure.dpi / 72
    boxes.append(Bbox([[x - r, y - r], [x + r, y + r]]))
  return boxes


def _candidates():
  """(dx, dy) offsets in points: ring by ring, 16 directions each, right/up first."""
  for r in RINGS_PT:
    for k in range(16):
      a = math.radians(45 + 22.5 * k)
      yield r * math.cos(a), r * math.sin(a)


def _text_box(ann, renderer):
  """The display box of an annotation's text (without its leader line), 1 pixel wider."""
  ann.update_positions(renderer)
  return Text.get_window_extent(ann, renderer).padded(1)


def place_labels(ax, pts, on, texts) -> list:
  """Annotates point i with `texts[i]` at the first candidate offset whose text box stays
  inside the axes and overlaps no placed label and no marker; returns the annotations."""
  fig = ax.figure
  renderer = fig.canvas.get_renderer()
  inside = ax.get_window_extent(renderer)
  markers = _markers_px(ax, pts, on)
  placed, out = [], []
  order = sorted(range(len(pts)), key=lambda i: (pts[i]["latency_ms"], -pts[i]["top1"]))
  for i in order:
    xy = (pts[i]["latency_ms"], pts[i]["top1"])
    probe = ax.annotate(texts[i], xy, xytext=(0, 0), textcoords="offset points", ha="center",
                        va="center", fontsize=8)
    best = (5.0, 4.0)  # nowhere free (hundreds of points): next to its point, as before
    for dx, dy in _candidates():
      probe.xyann = (dx, dy)
      box = _text_box(probe, renderer)
      if (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0
          and box.y1 <= inside.y1 and not any(box.overlaps(b) for b in placed + markers)):
        best = (dx, dy)
        break
    probe.remove()
    leader = math.hypot(*best) >= LEADER_FROM_PT
    ann = ax.annotate(texts[i], xy, textcoords="offset points", xytext=best, ha="center",
                      va="center", fontsize=8, zorder=5,
                      arrowprops=dict(arrowstyle="-", color="0.5", linewidth=0.6, shrinkA=1,
                                      shrinkB=4) if leader else None)
    placed.append(_text_box(ann, renderer))
    out.append(ann)
  return out


def figure(pts, on, labels, title: str):
  """The figure of `pts` (`pareto.points`) with the front `on`; `labels`: {run name:
  the method label}, in the legend's order (the numbers 1, 2, ...)."""
  names = list(labels)
  number = {n: i + 1 for i, n in enumerate(names)}
  colours = {n: s["color"] for n, s in zip(names, reporting.series_styles(len(names)))}
  fig = Figure(figsize=(9, 5.2), dpi=DPI)  # no pyplot: no GUI backend, no global state
  FigureCanvasAgg(fig)
  ax = fig.subplots()
  for p in pts:
    ax.scatter(p["latency_ms"], p["top1"], color=colours[p["name"]], s=MARKER_SIZE,
               marker=PRECISION_MARKERS.get(p["precision"], "s"), zorder=3)
  best = sorted((p for p, o in zip(pts, on) if o), key=lambda p: p["latency_ms"])
  ax.step([p["latency_ms"] for p in best], [p["top1"] for p in best], where="post",
          color="0.4", linestyle="--", linewidth=1, zorder=2)
  ax.scatter([p["latency_ms"] for p in best], [p["top1"] for p in best], s=FRONT_SIZE,
             facecolors="none", edgecolors="0.2", linewidths=1.2, zorder=4)
  handles = [Line2D([], [], color=colours[n], marker="o", linestyle="none",
                    label=f"{number[n]}  {labels[n]}") for n in names]
  handles += [Line2D([], [], color="0.3", marker=m, linestyle="none", label=pr)
              for pr, m in PRECISION_MARKERS.items()]
  handles.append(Line2D([], [], marker="o", markersize=10, markerfacecolor="none",
                        markeredgecolor="0.2", linestyle="--", color="0.4",
                        label="Pareto front"))
  ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1),
            borderaxespad=0, frameon=False)
  ax.set_xlim(*_padded(min(p["latency_ms"] for p in pts), max(p["latency_ms"] for p in pts),
                       0.12))
  ax.set_ylim(*_padded(min(p["top1"] for p in pts), max(p["top1"] for p in pts), 0.1))
  ax.set_xlabel("latency at batch 1 (ms, median)")
  ax.set_ylabel("top-1 (%)")
  ax.set_title(title, fontsize=9)
  ax.grid(True, alpha=0.3)
  fig.tight_layout()  # once, before the numbers are placed: display positions fixed
  fig.canvas.draw()
  place_labels(ax, pts, on, [str(number[p["name"]]) for p in pts])
  return fig


def write(pts, on, labels, path: str, title: str) -> None:
  figure(pts, on, labels, title).savefig(path, dpi=DPI)
