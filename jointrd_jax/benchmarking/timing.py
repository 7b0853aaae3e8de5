"""Timing loops: blocks of calls closed by one device sync, calls interleaved round-robin,
best passes over iterators; and the statistics the records report."""
import statistics
import time

from jointrd_jax.errors import UserError


def percentile(xs, q: float):
  """The `q`-th percentile (0-100) of `xs`: the nearest-rank element, no interpolation."""
  xs = sorted(xs)
  i = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
  return xs[i]


def time_blocks(call, sync, *, calls_per_block: int, blocks: int) -> list:
  """Wall seconds of each of `blocks` blocks: `calls_per_block` calls of `call()` (no host
  sync between them), then `sync()` (e.g. `jax.block_until_ready` on the state)."""
  times = []
  for _ in range(blocks):
    t = time.perf_counter()
    for _ in range(calls_per_block):
      call()
    sync()
    times.append(time.perf_counter() - t)
  return times


def time_round_robin(calls, *, iters: int, warmup: int, time_budget_s: float) -> list:
  """Per call, the wall times (s) of up to `iters` runs, interleaved: round r runs every
  call once, so a change of machine load hits all cases alike. Stops after
  `time_budget_s` once every call has run min(3, iters) times."""
  for _ in range(max(warmup, 1)):
    for call in calls:
      call()
  times = [[] for _ in calls]
  start = time.perf_counter()
  for r in range(max(iters, 1)):
    for call, ts in zip(calls, times):
      t = time.perf_counter()
      call()
      ts.append(time.perf_counter() - t)
    if time.perf_counter() - start > time_budget_s and r + 1 >= min(3, iters):
      break
  return times


def latency_fields(times, batch: int, warmup: int) -> dict:
  """Median / p10 / p90 / min latency (ms) of `times` (s) and the median's images/s."""
  ms = sorted(1e3 * t for t in times)
  med = statistics.median(ms)
  return {"latency_ms_median": med, "latency_ms_p10": percentile(ms, 10),
          "latency_ms_p90": percentile(ms, 90), "latency_ms_min": ms[0],
          "images_per_s": batch / (med / 1e3), "iters_timed": len(ms), "warmup": max(warmup, 1)}


def best_rate(make_iter, count_fn, repeats: int, seconds: float) -> tuple:
  """(items per wall second, items per CPU second of this process), each the best of
  `repeats` passes; a pass runs whole iterators for >= `seconds` of wall time.

  The first element of each iterator is untimed (pipeline start-up and fill). CPU time
  counts every thread of this process, so items per CPU second is the rate per fully
  used core, whatever else runs on the machine (idle TF threads that spin count too:
  it can only be an underestimate).
  """
  best_wall = best_cpu = 0.0
  for _ in range(repeats):
    n, wall, cpu = 0, 0.0, 0.0
    while wall < seconds:
      it = iter(make_iter())
      if next(it, None) is None:
        raise UserError("nothing to measure: too few images for one batch.")
      t, c = time.perf_counter(), time.process_time()
      for item in it:
        n += count_fn(item)
      wall += time.perf_counter() - t
      cpu += time.process_time() - c
    best_wall, best_cpu = max(best_wall, n / wall), max(best_cpu, n / cpu)
  return best_wall, best_cpu
