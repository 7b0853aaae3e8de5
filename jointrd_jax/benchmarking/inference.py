"""The inference cost of the folded networks (the deployment form) and the analytic model
of their activation memory: what `experiments.inference_benchmark` reports (every field and
the model are described in that script's docstring).

Must not import TensorFlow (it measures JAX/XLA only).
"""
import time

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.benchmarking import random_weights, timing, xla_analysis
from jointrd_jax.models import fold

CASES = ("all", "projection", "none")


def activation_accounting(net, image_shape=None) -> dict:
  """The per-image activation model (elements), described in the docstring of
  `experiments/inference_benchmark.py` (`analytic`).
  `image_shape` None: the net's variant's (32x32x3 CIFAR, 224x224x3 ImageNet)."""
  h, w, c_in = (int(d) for d in (image_shape or net.default_image_shape))
  # ops: (name, elements produced (0 for an in-place add), elements live during the op,
  #       the part of those held only because of a shortcut)
  ops = []
  held = []  # per block with a shortcut: its input x, alive across the residual branch

  def out_hw(h, w, s, k):
    pad = k // 2
    return (h + 2 * pad - k) // s + 1, (w + 2 * pad - k) // s + 1

  spec = models.STEM[net.variant]
  h0, w0 = h, w
  h, w = out_hw(h, w, spec["strides"], spec["kernel"])
  stem = h * w * net.width
  ops.append(("stem", stem, h0 * w0 * c_in + stem, 0))
  if spec["max_pool"]:  # 3x3, stride 2, padding 1
    h, w = out_hw(h, w, 2, 3)
    pooled = h * w * net.width
    ops.append(("stem/max_pool", pooled, stem + pooled, 0))
    stem = pooled
  x_size = stem
  for i, stage in enumerate(net.plan):
    for j, shortcut in enumerate(stage):
      name = f"stage{i + 1}_block{j}"
      s = 2 if (i > 0 and j == 0) else 1
      planes = net.width * 2 ** i
      if net.kind == "bottleneck":
        convs = [(1, 1, planes), (3, s, planes), (1, 1, planes * 4)]
      else:
        convs = [(3, s, planes), (3, 1, planes)]
      kept = x_size if shortcut != "none" else 0
      if kept:
        held.append(kept)
      hh, ww, prev = h, w, x_size
      for n, (k, stride, ch) in enumerate(convs):
        hh, ww = out_hw(hh, ww, stride, k)
        out = hh * ww * ch
        extra = kept if n > 0 else 0  # the first conv reads x anyway
        ops.append((f"{name}/conv{n + 1}", out, prev + out + extra, extra))
        prev = out
      if shortcut == "projection":
        proj = hh * ww * convs[-1][2]
        ops.append((f"{name}/shortcut", proj, prev + x_size + proj, x_size + proj))
        ops.append((f"{name}/add", 0, prev + proj, proj))
      elif shortcut == "identity":
        ops.append((f"{name}/add", 0, prev + x_size, x_size))
      h, w, x_size = hh, ww, prev
  produced = [o[1] for o in ops if o[1]]
  total, largest = sum(produced), max(produced)
  peak_op = max(ops, key=lambda o: (o[2], o[3]))
  return {
      "activations_total": int(total),
      "largest_activation": int(largest),
      "shortcut_held": int(sum(held)),
      "num_shortcuts": len(held),
      "shortcut_share_of_total": sum(held) / total,
      "shortcut_max_held_over_largest": (max(held) if held else 0) / largest,
      "peak_live": int(peak_op[2]),
      "peak_op": peak_op[0],
      "shortcut_share_of_peak": peak_op[3] / peak_op[2],
      "peak_live_without_shortcut_memory": int(max(o[2] - o[3] for o in ops)),
  }


def prepare_case(arch: str, shortcuts: str, batch: int, *, num_classes: int, width: int,
                 image_size: int = 0):
  """`(call, record)`: a blocking zero-argument call of the compiled inference function,
  and the case's record without timings (parameters, XLA memory, analytic model).
  `image_size` 0: the arch's (32 CIFAR, 224 ImageNet)."""

  # The deployment form of the trained network: built as trained (BN, and Dirac for the
  # students), then folded; only the folded network is timed.
  dirac = "none" if shortcuts == "all" else "reparam"
  net = models.build(arch, shortcuts, dirac, num_classes=num_classes, width=width)
  image_size = image_size or net.default_image_shape[0]
  image_shape = (image_size, image_size, 3)
  folded_net, folded = fold.fold(net, random_weights.random_variables(net, image_shape))
  params = jax.device_put(folded["params"])

  def infer(params, images):
    logits, _ = folded_net.apply({"params": params}, images, train=False)
    return logits

  x = jax.device_put(np.random.default_rng(0).standard_normal((batch,) + image_shape,
                                                              dtype=np.float32))
  t = time.perf_counter()
  compiled = jax.jit(infer).lower(params, x).compile()
  compile_s = time.perf_counter() - t
  flops = xla_analysis.cost(compiled, "flops")
  record = {
      "arch": arch, "width": width, "num_classes": num_classes, "image_size": image_size,
      "network": "teacher" if shortcuts == "all" else "student",
      "shortcuts": shortcuts, "folded": True, "batch_size": batch, "dtype": "float32",
      "num_params": models.num_params(params), "compile_s": compile_s,
      "xla_memory": xla_analysis.memory(compiled, xla_analysis.MEMORY_FIELDS_ALL,
                                        "xla_peak_live_bytes_estimate"),
      "xla_gflops": flops / 1e9 if flops is not None else None,
      "analytic": activation_accounting(folded_net, image_shape),
  }
  return (lambda: jax.block_until_ready(compiled(params, x))), record


def run_batch(arch: str, policies, batch: int, *, num_classes: int, width: int, iters: int,
              warmup: int, time_budget_s: float, image_size: int = 0) -> list:
  """The records of every policy at one batch size, timed round-robin."""
  prepared = [prepare_case(arch, s, batch, num_classes=num_classes, width=width,
                           image_size=image_size)
              for s in policies]
  times = timing.time_round_robin([c for c, _ in prepared], iters=iters, warmup=warmup,
                                  time_budget_s=time_budget_s)
  return [dict(record, **timing.latency_fields(ts, batch, warmup))
          for (_, record), ts in zip(prepared, times)]
