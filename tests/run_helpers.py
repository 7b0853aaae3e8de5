"""Shared by the trainer's tests: a preemption (SIGTERM) at a chosen step; a method's config
file with overrides."""
import importlib
import os
import signal


def sigterm_at(monkeypatch, feed_class, epoch_to_stop: int, step_in_epoch: int) -> None:
  """SIGTERM this process when the trainer dispatches step `step_in_epoch` of epoch
  `epoch_to_stop` (0-based) through a `feed_class` (`feeds.MemoryFeed`, `feeds.StreamFeed`).
  The trainer then stops at the end of that chunk of steps (one step per chunk on CPU)."""
  real_start, real_chunk = feed_class.start_epoch, feed_class.chunk
  now = {}

  def start_epoch(self, seed, epoch):
    now["epoch"] = epoch
    return real_start(self, seed, epoch)

  def chunk(self, first_step, num_steps):
    if now["epoch"] == epoch_to_stop and first_step <= step_in_epoch < first_step + num_steps:
      os.kill(os.getpid(), signal.SIGTERM)
    return real_chunk(self, first_step, num_steps)

  monkeypatch.setattr(feed_class, "start_epoch", start_epoch)
  monkeypatch.setattr(feed_class, "chunk", chunk)


def preset_config(method, recipe="configs", arg="", **overrides):
  """`configs/<method>.py` (recipe "configs") or `configs/imagenet/<method>.py` (recipe
  "configs.imagenet") with `arg` (e.g. "smoke"), then the flattened `overrides`."""
  c = importlib.import_module(f"{recipe}.{method}").get_config(arg)
  c.update_from_flattened_dict(overrides)
  return c
