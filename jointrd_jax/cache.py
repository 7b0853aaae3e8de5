"""Where jointrd-jax keeps files it can make again and reuses between runs.

`cache_dir(*parts)`: `$JOINTRD_JAX_CACHE_DIR`, else `$XDG_CACHE_HOME/jointrd_jax`, else
`~/.cache/jointrd_jax`, joined with `parts`. Below it: `xla/` (compiled XLA programs, the
entry points' `--compilation_cache_dir` default) and `generated/` (generated image folders
of the ImageNet smoke configs and of `experiments.data_throughput`). Deleting it is always
safe: whatever is needed is made again.
"""
import os

ENV = "JOINTRD_JAX_CACHE_DIR"


def cache_dir(*parts: str) -> str:
  root = os.environ.get(ENV) or os.path.join(
      os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jointrd_jax")
  return os.path.join(root, *parts)
