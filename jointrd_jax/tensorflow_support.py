"""TensorFlow as this project uses it: for reading data and exporting models only.

`import_tensorflow()` imports it once, lazily (seconds; runs that need no TF never pay),
quietly (TF's C++ start-up banners go to /dev/null instead of interleaving with our log,
and its C++ INFO and WARNING lines are off: `quiet_cpp_logs`), and keeps it off the
accelerators (TF would otherwise claim every GPU's memory). Every module of this project
imports TensorFlow through it (never `import tensorflow` directly).
"""
import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_silenced():
  """File descriptor 2 to /dev/null for the block: C++ code (TensorFlow's start-up
  banners, the TFLite converter, the XNNPACK delegate's "INFO: Created ...") writes there
  directly, below Python. Everything the process writes to stderr meanwhile is lost, so
  keep the block short; exceptions still propagate."""
  sys.stderr.flush()
  saved = os.dup(2)
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)


# JAX sets TF_CPP_MIN_LOG_LEVEL to 1 when it is imported (unless it is set): this value
# is taken for "not chosen by the user".
_JAX_DEFAULT_LEVEL = "1"


def quiet_cpp_logs() -> None:
  """TensorFlow's C++ log level to 2 (errors only; no `I0000`/`W0000` lines such as
  `local_rendezvous ... aborting` when a corrupt image fails a tf.data pipeline, which the
  pipeline reports as one error line of its own), unless the user chose a level other than
  JAX's default 1 (e.g. TF_CPP_MIN_LOG_LEVEL=0 to see them). TF reads the variable when it
  is imported: call this before."""
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL", _JAX_DEFAULT_LEVEL) in ("", _JAX_DEFAULT_LEVEL):
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"


def import_tensorflow():
  """`tensorflow`, imported quietly with every GPU hidden from it."""
  if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
  else:
    quiet_cpp_logs()
    with stderr_silenced():
      import tensorflow as tf  # TensorFlow: imported where needed
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices (then it was hidden before)
    pass
  return tf


def import_tfds():
  """`tensorflow_datasets`, after `import_tensorflow()`."""
  import_tensorflow()
  with stderr_silenced():
    import tensorflow_datasets as tfds  # TensorFlow: imported where needed
  return tfds
