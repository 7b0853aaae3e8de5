"""Where this project keeps files between runs, outside any workdir: one cache folder,
$XDG_CACHE_HOME/jointrd_jax (~/.cache/jointrd_jax when XDG_CACHE_HOME is not set), with

- `xla/`: compiled XLA programs (the persistent compilation cache of `experiments.main`);
- `generated/<name>/`: generated data sets, made once and reused (e.g. the JPEGs of
  `experiments.data_throughput`), each keyed by its generation parameters.

Anything here can be deleted at any time; it is made again when needed.
"""
import os


def root() -> str:
  return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                      "jointrd_jax")


def xla() -> str:
  return os.path.join(root(), "xla")


def generated(name: str) -> str:
  return os.path.join(root(), "generated", name)
