"""JAX vs PyTorch training steps on the CPU, side by side in one process
(`experiments.cpu_step_compare`): the trainer's jitted step and the release's PyTorch step
of the same network, method and batch, timed in interleaved blocks so that the machine's
load hits every case alike.

Each JAX variant is the trainer's step (`train_step._build` / `_step_function`, data
'fixed', float32) compiled with its own XLA compiler options
(`lowered.compile(compiler_options=...)`), so flags are compared in one process.
"""
import statistics
import time

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.benchmarking import timing, train_step

# The torch names of the compared methods (jointrd_jax.methods presets).
METHODS = ("resnet", "plain_dirac", "jointrd")


def parse_value(text: str):
  """An XLA option's value from its text: true/false, an int, a float, else the string."""
  low = text.lower()
  if low in ("true", "false"):
    return low == "true"
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text


def jax_case(method: str, arch: str, width: int, batch: int, mesh, compiler_options: dict):
  """(one-step function, sync function, loss of the first step, compile seconds) of the
  trainer's step for `method`, compiled with `compiler_options`."""
  opts = train_step.Options(arch=arch, width=width, half_precision=False, data="fixed")
  probe = models.build(arch)
  shape, classes = probe.default_image_shape, probe.num_classes
  config, m, tx, schedule, state, teacher_vars, _, _ = train_step._build(  # pylint: disable=protected-access
      method, opts, classes, shape, mesh)
  jitted, call_args, _ = train_step._step_function(  # pylint: disable=protected-access
      config, m, tx, schedule, teacher_vars, opts, batch, classes, shape, mesh)
  t = time.perf_counter()
  lowered = jitted.lower(state, *call_args())
  compiled = lowered.compile(compiler_options=compiler_options or None)
  compile_s = time.perf_counter() - t
  box = {}
  box["state"], metrics = compiled(state, *call_args())
  loss = float(np.ravel(metrics["loss"])[0])

  def step():
    box["state"], _ = compiled(box["state"], *call_args())
  return step, lambda: jax.block_until_ready(box["state"]), loss, compile_s


def torch_case(method: str, arch: str, width: int, batch: int, channels_last: bool,
               threads: int = 0):
  """(one-step function, sync (none needed on CPU), loss of the first step, build seconds)
  of the release's PyTorch step; `threads` > 0: `torch.set_num_threads(threads)` before each
  step (0: as found)."""
  import torch  # pylint: disable=g-import-not-at-top  # optional dependency
  from jointrd_jax.benchmarking import torch_nets  # imports PyTorch
  _, kind, sizes = models.ARCHS[arch]
  t = time.perf_counter()
  n = threads or torch.get_num_threads()
  torch.set_num_threads(n)
  step, loss = torch_nets.train_step(method, kind, sizes, width, models.build(arch).num_classes,
                                     batch, channels_last=channels_last)

  def run():
    torch.set_num_threads(n)
    step()
  return run, lambda: None, loss, time.perf_counter() - t


def interleaved(cases: dict, *, steps_per_block: int, blocks: int, warmup: int) -> dict:
  """{name: [seconds per block]}: every case runs `steps_per_block` steps then syncs, the
  cases taking turns block by block (`timing.time_round_robin`)."""
  def block(step, sync):
    def run():
      for _ in range(steps_per_block):
        step()
      sync()
    return run
  names = list(cases)
  times = timing.time_round_robin([block(*cases[n][:2]) for n in names], iters=blocks,
                                  warmup=warmup, time_budget_s=float("inf"))
  return dict(zip(names, times))


def summary(times: list, steps_per_block: int, batch: int) -> dict:
  """Median, p10 and p90 images/s over the blocks."""
  rates = sorted(steps_per_block * batch / s for s in times)
  return {"images_per_s": statistics.median(rates), "p10": timing.percentile(rates, 10),
          "p90": timing.percentile(rates, 90), "blocks": len(rates)}
