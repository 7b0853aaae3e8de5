"""Where this project keeps files between runs, outside any workdir: one cache folder,
`$JOINTRD_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/jointrd_jax`, else `~/.cache/jointrd_jax`,
with

- `xla/`: compiled XLA programs (the persistent compilation cache of the entry points,
  `--compilation_cache_dir`);
- `generated/<name>/`: generated data sets, made once and reused (the ImageNet smoke
  configs' image folders, the JPEGs of `experiments.data_throughput`, the converted
  LiteRT / ONNX models of `experiments.inference_benchmark` in `inference_models/`), each
  keyed by its generation parameters.

Anything here can be deleted at any time; it is made again when needed.
"""
import os

ENV = "JOINTRD_JAX_CACHE_DIR"


def root() -> str:
  return os.environ.get(ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jointrd_jax")


def xla() -> str:
  return os.path.join(root(), "xla")


def generated(name: str) -> str:
  return os.path.join(root(), "generated", name)
