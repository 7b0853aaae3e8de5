"""What every entry point shares: multi-host start-up, TensorFlow kept off the
accelerators, and user errors printed as one line (`error: ...`, exit status 2)."""
import sys

import jax
from absl import app, flags, logging

flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() (auto-detected on "
                  "Cloud TPU and SLURM).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for jax.distributed.")
flags.DEFINE_integer("num_processes", None, "Number of processes, for jax.distributed.")
flags.DEFINE_integer("process_id", None, "This process's index, for jax.distributed.")


def define_distributed_flags():
  """The flags above are defined on import; this makes the dependency explicit."""


def hide_gpus_from_tensorflow():
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    return
  tf.config.set_visible_devices([], "GPU")


def setup():
  f = flags.FLAGS
  if not f["verbosity"].present:
    # Orbax and TFDS log every file at INFO; our progress lines go to stdout instead.
    logging.set_verbosity(logging.WARNING)
  if f.coordinator_address is not None:
    jax.distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  elif f.multihost:
    jax.distributed.initialize()
  hide_gpus_from_tensorflow()
  logging.warning("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(),
               jax.devices()[0].device_kind)


def run_guarded(fn):
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from jointrd_jax.train import Preempted  # pylint: disable=g-import-not-at-top
  try:
    return fn()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  except Preempted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(0)


def run_app(main):
  """`app.run(main)`, with config-flag mistakes (unknown key, wrong type) as one line."""
  try:
    app.run(main, flags_parser=_parse_flags)
  except SystemExit:
    raise


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
