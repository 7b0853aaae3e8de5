"""Runs a module as `python -m MODULE ARGS...` does and records what JAX and the data loader
did, for tests that check that a refusal comes before any work (what makes it fast):

    python tests/jax_probe.py RECORD.json MODULE ARGS...

RECORD.json, written however the module exits: {"events": the names of the
`jax.monitoring` events and durations in order (tracing a function, lowering it, compiling
it: '/jax/core/compile/...'), "datasets_loaded": how many in-memory datasets
(`datasets.sources.Dataset.load_arrays`) were read}. `run` starts it from a test.
"""
import json
import os
import pathlib
import runpy
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# A jaxpr traced (also by jax.eval_shape), lowered to MLIR, compiled by XLA (jax 0.10).
TRACE = "/jax/core/compile/jaxpr_trace_duration"
LOWER = "/jax/core/compile/jaxpr_to_mlir_module_duration"
COMPILE = "/jax/core/compile/backend_compile_duration"


def run(record: pathlib.Path, module: str, args, *, cwd=REPO, env=None, timeout=120):
  """The probed `python -m module *args` (its CompletedProcess, text output) and its record."""
  env = dict(os.environ if env is None else env)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  proc = subprocess.run([sys.executable, __file__, str(record), module, *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=timeout)
  return proc, json.loads(record.read_text())


def _main():
  record, module, *args = sys.argv[1:]
  seen = {"events": [], "datasets_loaded": 0}
  # Registered before the module (or anything of jax's) runs.
  from jax import monitoring  # pylint: disable=g-import-not-at-top
  monitoring.register_event_listener(lambda name, **kw: seen["events"].append(name))
  monitoring.register_event_duration_secs_listener(
      lambda name, secs, **kw: seen["events"].append(name))
  from jointrd_jax.datasets.sources import core  # pylint: disable=g-import-not-at-top
  load = core.Dataset.load_arrays

  def counted(*a, **kw):
    loaded = load(*a, **kw)
    seen["datasets_loaded"] += 1
    return loaded

  core.Dataset.load_arrays = counted
  sys.argv = [module, *args]
  sys.path[0] = os.getcwd()  # as `python -m`: the working directory, not tests/
  try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
  finally:
    pathlib.Path(record).write_text(json.dumps(seen))


if __name__ == "__main__":
  _main()
