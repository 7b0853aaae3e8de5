"""Metrics out of a run: `metrics.jsonl` (one JSON object a line), TensorBoard events, and
the progress lines a person reads (epoch, step, images/s, ETA).

Only process 0 writes. Each record has `epoch` (1-based, the epoch it closes or is in),
`step` (global optimizer steps done), `split` (`train` or `eval`) and scalar metrics.
"""
import datetime
import json
import math
import time

import jax
from absl import logging
from etils import epath

METRICS_FILE = "metrics.jsonl"


def format_eta(seconds: float) -> str:
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  return str(datetime.timedelta(seconds=int(seconds)))


class Writer:
  """Appends to `metrics.jsonl` and TensorBoard under `workdir/tensorboard`."""

  def __init__(self, workdir, tensorboard: bool = True):
    self.enabled = jax.process_index() == 0
    self.path = epath.Path(workdir) / METRICS_FILE
    self._tb = None
    if self.enabled and tensorboard:
      from flax.metrics import tensorboard as flax_tb  # imports TensorFlow; lazily
      self._tb = flax_tb.SummaryWriter(str(epath.Path(workdir) / "tensorboard"))

  def truncate_after(self, epoch_done: int, step_done: int) -> None:
    """On resume: drop the records an interrupted run wrote after its last checkpoint."""
    if not self.enabled or not self.path.exists():
      return
    keep = [line for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step_done
            and json.loads(line)["epoch"] <= max(epoch_done, 1)]
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
        self._tb.scalar(f"{split}/{k}", float(v), int(step))
      self._tb.flush()

  def close(self):
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir) -> list:
  path = epath.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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


def log(msg: str, *args) -> None:
  """A progress line on stdout (process 0 only), time-stamped; also to absl's log."""
  if jax.process_index() == 0:
    text = msg % args if args else msg
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)
    logging.info(text)
