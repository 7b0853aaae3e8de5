"""Stopping a run cleanly: SIGTERM (preemption) and SIGINT (Ctrl-C) ask the training loop to
checkpoint at the step reached and stop, decided alike by every process."""
import signal

import jax
import numpy as np
from jax.experimental import multihost_utils


class Interruption:
  """SIGTERM (preemption) and SIGINT (Ctrl-C) ask the loop to checkpoint and stop.

  `signum` is the first of them received (0: none). A second Ctrl-C aborts at once
  (KeyboardInterrupt, even during the checkpoint save: the run then resumes from the
  previous complete checkpoint)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = 0
    self._old = {}

  def __enter__(self):
    for sig in self.SIGNALS:
      try:
        self._old[sig] = signal.signal(sig, self._handler)
      except ValueError:  # not the main thread: no handler
        pass
    return self

  def _handler(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = self.signum or int(signum)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


def stop_now(interruption, steps_done_in_epoch=None, every=1) -> int:
  """The signal to checkpoint and stop for (SIGTERM or SIGINT; 0: go on), decided alike by
  every process.

  One process checks its own flag after every chunk of steps. Several processes must stop
  at the same step (saving is collective), and the signal may reach only some of them, or
  at different steps: they exchange their flags every `every` steps of an epoch (a host
  sync, at the same steps everywhere) and at each epoch's end, and stop if any got one.
  """
  if jax.process_count() == 1:
    return interruption.signum
  if steps_done_in_epoch is not None and steps_done_in_epoch % every:
    return 0
  return int(np.max(multihost_utils.process_allgather(np.int32(interruption.signum))))
