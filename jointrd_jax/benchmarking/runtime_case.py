"""One deployment-runtime case (a model file, a runtime, a thread count, a batch size)
timed in a FRESH Python process, so the process's memory growth belongs to that case alone.

`measure(...)` starts `python -m jointrd_jax.benchmarking.runtime_case '<json>'` and reads
back one JSON record. The child imports numpy and the runtime (nothing else of weight:
no JAX, no TensorFlow: LiteRT is run by its own interpreter, `ai_edge_litert`, never by
`tf.lite` in its place; a child that cannot import it fails with one line naming the
install), then:

1. makes the input (`batch` uniform random uint8 images; the values do not change the
   latency) and imports the runtime's package (`import_rss_growth_bytes`: the RSS it
   added, the runtime's own fixed cost);
2. resets the kernel's peak-RSS mark (`/proc/self/clear_refs` <- 5: VmHWM then equals
   VmRSS), reads VmRSS (`rss_baseline_bytes`), loads the model
   (`deploy.runtimes.TFLiteModel` / `OnnxModel` with `threads`), timing it (`load_ms`);
3. runs `warmup` untimed calls (the first allocates the runtime's tensors for this batch
   shape), then up to `iters` timed calls, each the wall time of one blocking call
   uint8 images -> float32 logits (the runtime's own call, its input copy and output
   read included), stopping after `time_budget_s` once `min(3, iters)` ran;
4. reads VmHWM: `peak_rss_growth_bytes` = VmHWM - baseline, the most memory the process
   held while loading and running the model (weights as loaded, the runtime's arena or
   allocations, activations, its thread pools) beyond what it held before. Neither
   runtime reports its allocations through Python here (LiteRT's `Interpreter` and ONNX
   Runtime's `InferenceSession` expose no arena statistics), so this is the measure for
   both. A TFLite model is memory-mapped: only its pages that were read count.
   `load_rss_growth_bytes` = VmRSS after loading - baseline.

The record names what ran the model: `runtime_module` (ai_edge_litert, onnxruntime) and
`runtime_module_version` (its `__version__`). Where `/proc` is missing (not Linux) the
memory fields are None.
"""
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.benchmarking import timing
from jointrd_jax.deploy import runtimes
from jointrd_jax.errors import UserError

RUNTIME_CLASSES = {"litert": "TFLiteModel", "onnxruntime": "OnnxModel"}
RUNTIME_MODULES = {"litert": "ai_edge_litert.interpreter", "onnxruntime": "onnxruntime"}


def _status_kib(fields=("VmRSS", "VmHWM")) -> dict:
  try:
    with open("/proc/self/status") as f:
      out = {}
      for line in f:
        key, _, value = line.partition(":")
        if key in fields:
          out[key] = int(value.split()[0]) * 1024
      return out
  except OSError:
    return {}


def _reset_peak() -> bool:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    return True
  except OSError:
    return False


def _images(batch: int, image_shape, seed: int = 0):
  shape = (int(batch),) + tuple(int(d) for d in image_shape)
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def run_case(spec: dict) -> dict:
  """The measurement (in this process): see the module doc. `spec`: path, runtime,
  threads, batch, image_shape, iters, warmup, time_budget_s."""
  x = _images(spec["batch"], spec["image_shape"])
  cls = getattr(runtimes, RUNTIME_CLASSES[spec["runtime"]])
  # LiteRT is timed with its own interpreter or not at all (no tf.lite in its place).
  strict = {"fallback": False} if spec["runtime"] == "litert" else {}
  before_import = _status_kib().get("VmRSS")
  try:  # the runtime's library, loaded before the baseline (else tf.lite's, on first use)
    importlib.import_module(RUNTIME_MODULES[spec["runtime"]])
  except ImportError:
    pass
  reset = _reset_peak()
  base = _status_kib().get("VmRSS")
  t = time.perf_counter()
  model = cls(spec["path"], threads=spec["threads"], **strict)
  load_ms = 1e3 * (time.perf_counter() - t)
  after_load = _status_kib().get("VmRSS")
  for _ in range(max(spec["warmup"], 1)):
    logits = model(x)
  times = []
  start = time.perf_counter()
  for i in range(max(spec["iters"], 1)):
    t = time.perf_counter()
    model(x)
    times.append(time.perf_counter() - t)
    if time.perf_counter() - start > spec["time_budget_s"] and i + 1 >= min(3, spec["iters"]):
      break
  peak = _status_kib().get("VmHWM")
  known = reset and base is not None and peak is not None
  return {
      "runtime_module": model.runtime,
      "runtime_module_version": module_version(model.runtime),
      "output_shape": [int(d) for d in logits.shape],
      **timing.latency_fields(times, spec["batch"], spec["warmup"]), "load_ms": load_ms,
      "memory": {
          "source": "process RSS growth (VmHWM - VmRSS before loading), fresh process"
                    if known else None,
          "rss_baseline_bytes": base,
          "import_rss_growth_bytes": base - before_import if known else None,
          "load_rss_growth_bytes": after_load - base if known else None,
          "peak_rss_growth_bytes": peak - base if known else None,
      },
  }


def module_version(module: str) -> str:
  """The version of the (imported) runtime module `module`: ai_edge_litert, onnxruntime,
  tf.lite (TensorFlow's)."""
  top = "tensorflow" if module == "tf.lite" else module.split(".")[0]
  return str(getattr(sys.modules.get(top), "__version__", "?"))


def used(records) -> str:
  """The runtime modules the `records` of `measure` ran on, e.g. 'ai_edge_litert 2.3.0'."""
  return ", ".join(sorted({f"{r['runtime_module']} {r['runtime_module_version']}"
                           for r in records}))


def measure(path: str, runtime: str, *, threads: int, batch: int, image_shape, iters: int,
            warmup: int, time_budget_s: float, timeout_s: float = 1800) -> dict:
  """`run_case` in a fresh Python process (this interpreter, this package on its path)."""
  spec = {"path": os.path.abspath(path), "runtime": runtime, "threads": int(threads),
          "batch": int(batch), "image_shape": [int(d) for d in image_shape],
          "iters": int(iters), "warmup": int(warmup), "time_budget_s": float(time_budget_s)}
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      p for p in (root, os.environ.get("PYTHONPATH", "")) if p))
  proc = subprocess.run([sys.executable, "-m", "jointrd_jax.benchmarking.runtime_case",
                         json.dumps(spec)], capture_output=True, text=True, env=env,
                        timeout=timeout_s, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode != 0 or not lines:
    said = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    tail = said[-1][len("error: "):] if said else " ".join(
        (proc.stderr or proc.stdout).split())[-300:]
    raise UserError(f"{runtime} could not run {path} (batch {batch}, {threads} threads): "
                    f"{tail}")
  return json.loads(lines[-1])


def _main(argv) -> int:
  tensorflow_support.quiet_cpp_logs()
  try:
    print(json.dumps(run_case(json.loads(argv[1]))), flush=True)
  except UserError as e:  # one line, which `measure` passes on
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(_main(sys.argv))
