"""Metrics out of a run: `metrics.jsonl` (one JSON object a line), TensorBoard events, the
progress lines a person reads (epoch, step, images/s, ETA), and a learning-curve PNG.

Only process 0 writes. Each record has `epoch` (1-based, the epoch it closes or is in),
`step` (global optimizer steps done), `split` and scalar metrics:
- `train`: every `log_every_steps` steps (and at each epoch's end), the means of every loss
  term, accuracy, learning rate and gradient norm over the steps since the previous
  `train` record (`steps` of them), and `images_per_s`;
- `eval`: at each epoch's end, test top-1/top-5/loss of the student (and of the teacher and
  each hybrid path where they exist), and `train_loss`, the epoch's mean training loss.

One log format for everything a run prints: `[hh:mm:ss] message` on stdout, and warnings
(ours and the libraries') as `[hh:mm:ss] warning: message` on stderr.
"""
import datetime
import json
import logging as py_logging
import math
import os
import sys
import time
import types
import warnings

import jax
from absl import logging
from etils import epath

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "learning_curves.png"


def format_eta(seconds: float) -> str:
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  return str(datetime.timedelta(seconds=int(seconds)))


def epoch_position(step: int, steps_per_epoch: int, num_epochs: int) -> str:
  """Where global step `step` (steps done) stands, in the 1-based epochs of the progress
  lines: 'after epoch 2/3' at an epoch's end, 'in epoch 2/3, step 5 of 16' within one."""
  done, into = divmod(int(step), int(steps_per_epoch))
  if into == 0:
    return f"after epoch {done}/{num_epochs}" if done else "at the start"
  return f"in epoch {done + 1}/{num_epochs}, step {into} of {steps_per_epoch}"


# ------------------------------------------------------------------ log format


class _Formatter(py_logging.Formatter):

  def format(self, record):
    level = "" if record.levelno < py_logging.WARNING else f"{record.levelname.lower()}: "
    return f"[{time.strftime('%H:%M:%S', time.localtime(record.created))}] {level}" + \
        " ".join(record.getMessage().split("\n"))


def _show_warning(message, category, filename, lineno, file=None, line=None):
  """Python's warnings (`warnings.warn`) as log records, one line each: `message
  (Category, file.py:N)`."""
  del file, line
  where = f"{os.path.basename(str(filename))}:{lineno}"
  py_logging.getLogger("py.warnings").warning("%s (%s, %s)", str(message).strip(),
                                              category.__name__, where)


def use_one_log_format() -> None:
  """absl's (and so every library's Python) log records in this module's format, under
  `app.run` (absl's handler) and outside it: a script's root logger, which absl's first
  record outside `app.run` gives `logging.basicConfig`'s plain stream handler. Python's
  warnings become log records too (one line each, same format)."""
  warnings.showwarning = _show_warning
  formatter = _Formatter()
  logging.get_absl_handler().python_handler.setFormatter(formatter)
  root = py_logging.getLogger()
  if not root.handlers:
    root.addHandler(py_logging.StreamHandler(sys.stderr))
  for handler in root.handlers:
    if type(handler) is py_logging.StreamHandler:  # pylint: disable=unidiomatic-typecheck
      handler.setFormatter(formatter)  # not a subclass such as pytest's capture handlers


def log(msg: str, *args) -> None:
  """A progress line on stdout (process 0 only), time-stamped."""
  if jax.process_index() == 0:
    text = msg % args if args else msg
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# ------------------------------------------------------------------ metrics


def _tensorboard_writer(logdir: str):
  """tensorboard's own event writer. It reads and writes files through TensorFlow when TF
  is importable; for a local directory in a run that has not imported TF (seconds to
  import), tensorboard's built-in TF-free stub does the same."""
  if "://" not in logdir and "tensorflow" not in sys.modules:
    # The switch tensorboard's build offers as //tensorboard/compat:no_tensorflow.
    sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("notf"))
  from tensorboard.summary import Writer  # TensorBoard (TensorFlow's): imported where needed
  return Writer(logdir)


class Writer:
  """Appends to `metrics.jsonl` and TensorBoard under `workdir/tensorboard`."""

  def __init__(self, workdir, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = epath.Path(workdir) / METRICS_FILE
    self._tb = None
    if self.enabled and tensorboard:
      self._tb = _tensorboard_writer(str(epath.Path(workdir) / "tensorboard"))

  def truncate_after(self, step_done: int) -> None:
    """On resume: drop the records an interrupted run wrote after its last checkpoint (a
    record of step s describes the run up to step s, which a checkpoint of step s holds)."""
    if not self.enabled or not self.path.exists():
      return
    keep = [line for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step_done]
    self.path.write_text("".join(line + "\n" for line in keep))

  def write(self, split: str, epoch: int, step: int, scalars: dict) -> None:
    if not self.enabled:
      return
    record = {"split": split, "epoch": int(epoch), "step": int(step)}
    record.update({k: float(v) for k, v in sorted(scalars.items())})
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")
    if self._tb is not None:
      for k, v in scalars.items():
        self._tb.add_scalar(f"{split}/{k}", float(v), step=int(step))
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir) -> list:
  path = epath.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def integer_epoch_axis(ax, epochs) -> None:
  """An x axis of whole epochs: ticks at integers only, the view half an epoch beyond the
  first and last epoch plotted (so one epoch gets the single tick 1, two epochs 1 and 2)."""
  from matplotlib.ticker import MaxNLocator  # matplotlib (~1.5 s): only where a plot is drawn
  epochs = list(epochs)
  if epochs:
    ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
  ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


# Series styles: tab10's colours, then the same colours dashed, dotted, dash-dotted; the
# marker cycles with a period (7) coprime to the colours' (10), so no two of the first
# 10 x 4 x 7 = 280 series share (colour, line style, marker).
SERIES_LINESTYLES = ("-", "--", ":", "-.")
SERIES_MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def series_styles(n: int) -> list:
  """`n` dicts of `color`, `linestyle` and `marker` (keywords of `Axes.plot`), distinct as
  (colour, line style, marker) tuples for up to 280 series: series i has tab10 colour
  i mod 10, line style i // 10 (mod 4) and marker i mod 7."""
  from matplotlib import colormaps  # matplotlib (~1.5 s): only where a plot is drawn
  colours = colormaps["tab10"].colors
  return [{"color": colours[i % 10],
           "linestyle": SERIES_LINESTYLES[(i // 10) % len(SERIES_LINESTYLES)],
           "marker": SERIES_MARKERS[i % len(SERIES_MARKERS)]} for i in range(n)]


def learning_curves_figure(records, title: str = "", network: str = "student"):
  """A matplotlib Figure (Agg) of a run's `metrics.jsonl` records: the training loss and
  the top-1 of every head per epoch (the trained network labelled `network`; the teacher
  and the hybrid paths where they exist)."""
  import matplotlib  # matplotlib (~1.5 s): only where a plot is drawn
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # matplotlib (~1.5 s): only where a plot is drawn

  evals = [r for r in records if r["split"] == "eval"]
  epochs = [r["epoch"] for r in evals]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
  ax_loss.plot(epochs, [r.get("train_loss", float("nan")) for r in evals], marker=".")
  ax_loss.set(xlabel="epoch", ylabel="training loss (epoch mean)")
  # Every head any record has (the hybrid paths are evaluated at some epochs only).
  heads = sorted({k[:-len("_top1")] for r in evals for k in r if k.endswith("_top1")},
                 key=lambda h: (h != "student", h))
  for head in heads:
    points = [(r["epoch"], r[f"{head}_top1"]) for r in evals if f"{head}_top1" in r]
    ax_acc.plot(*zip(*points), marker=".", label=network if head == "student" else head)
  ax_acc.set(xlabel="epoch", ylabel="top-1 on the evaluation split (%)")
  if heads:
    ax_acc.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
  for ax in (ax_loss, ax_acc):
    integer_epoch_axis(ax, epochs)
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig


def plot_learning_curves(workdir, title: str = "", network: str = "student") -> epath.Path:
  """`workdir/learning_curves.png` (`learning_curves_figure` of its `metrics.jsonl`)."""
  from matplotlib import pyplot as plt  # matplotlib (~1.5 s): only where a plot is drawn
  fig = learning_curves_figure(read_metrics(workdir), title, network)
  path = epath.Path(workdir) / CURVES_FILE
  with path.open("wb") as f:
    fig.savefig(f, format="png", dpi=100)
  plt.close(fig)
  return path


class Progress:
  """Throughput and ETA from the steps timed so far (compile time excluded)."""

  def __init__(self, total_steps: int, batch_size: int):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.timed_steps = 0
    self.timed_seconds = 0.0
    self._t = None

  def start(self):
    self._t = time.perf_counter()

  def add(self, steps: int):
    now = time.perf_counter()
    self.timed_seconds += now - self._t
    self.timed_steps += steps
    self._t = now

  @property
  def images_per_s(self) -> float:
    return self.timed_steps * self.batch_size / self.timed_seconds if self.timed_seconds else 0.0

  def eta(self, step: int, epoch_overhead_s: float = 0.0, epochs_left: int = 0) -> str:
    if not self.timed_steps:
      return "?"
    per_step = self.timed_seconds / self.timed_steps
    return format_eta((self.total_steps - step) * per_step + epoch_overhead_s * epochs_left)
