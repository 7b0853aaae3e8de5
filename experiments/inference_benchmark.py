r"""Inference cost of the ResNet teacher vs the plain students, in deployment (folded) form.

  python -m experiments.inference_benchmark [--arch=resnet50] [--batch_sizes=1,64] \
      [--image_size=0] [--num_classes=0] [--width=64] [--shortcuts=all,projection,none] \
      [--iters=30] [--warmup=3] [--time_budget_s=120]

  python -m experiments.inference_benchmark --arch=imagenet_resnet50   # at 224x224

Images are `--image_size` squared (0: the arch's, 32 for the CIFAR archs, 224 for the
`imagenet_*` archs); `--num_classes` 0 is the arch's (100 CIFAR, 1000 ImageNet).

Cases: the teacher (`shortcuts=all`) and the two plain students (`projection`: the
release's plain-CNN with 3 projection shortcuts left in ResNet-50; `none`: strictly
shortcut-free), each FOLDED (`fold.py`: biased convs, no BatchNorm, no Dirac), for every
batch size. Random weights: the cost does not depend on their values.

Per case it prints one JSON line, then a table. Fields:

- `latency_ms_median` (also p10/p90, min): wall time of ONE call of the jitted, compiled
  inference function (`images f32 NHWC -> logits`), blocked until the result is ready,
  over `iters_timed` calls after `warmup` untimed calls (compilation is not timed). The
  cases of one batch size are timed round-robin (each round calls every case once), so
  load from other processes hits them alike; timing stops after `--time_budget_s`
  seconds per batch size (once every case ran min(3, iters) times).
- `xla_memory`: what XLA's `compiled.memory_analysis()` reports for that function on this
  backend: `argument_size_in_bytes` (parameters + images), `output_size_in_bytes`,
  `temp_size_in_bytes` (XLA's scratch buffers: the activations live at its peak, after
  buffer re-use), `alias_size_in_bytes`, `generated_code_size_in_bytes`, and
  `peak_memory_in_bytes` when the backend reports it (on XLA:CPU with jax 0.10.2 it
  equals arguments + outputs, i.e. it leaves out the temporaries, so the table does not
  use it). `xla_peak_live_bytes_estimate` = argument + output + temp - alias (everything
  XLA allocates for one call, live at once: an upper bound of the true peak); the table's
  "XLA a+o+t" column.
- `xla_gflops`: XLA's cost analysis of the compiled function (whole batch), when available.
- `analytic`: a per-image activation model of the folded network (fp32 elements; multiply
  by 4 bytes and by the batch). Execution is sequential, each conv fused with its bias and
  ReLU, every tensor freed right after its last use, a residual add done in place. The
  stem is its conv (stride 1 CIFAR, stride 2 ImageNet) and, for ImageNet, the 3x3
  stride-2 max-pool, a separate op (its input and output live at once):
    * `activations_total`: elements of every feature map produced (stem conv, max-pool,
      each conv, each projection shortcut);
    * `largest_activation`: the largest of those;
    * `shortcut_held`: for each block with a shortcut (identity or projection), its input
      activation x, which must stay alive while the residual branch runs (x is needed
      again by the shortcut at the add); summed over blocks. A shortcut-free network
      frees x right after the block's first conv;
    * `shortcut_share_of_total` = shortcut_held / activations_total;
    * `shortcut_max_held_over_largest` = the largest single held x / largest_activation;
    * `peak_live`: the maximum, over the ops, of the elements live during that op (its
      inputs, its output, and any tensor held for a later use). For a conv inside a
      residual branch after the first one, the held x counts; for a projection conv, the
      branch output waits too; for the add, the branch output and the shortcut tensor;
    * `shortcut_share_of_peak`: the part of `peak_live` held only because of shortcuts
      (the held x inside a branch; x plus the projection's output at a projection conv;
      the shortcut tensor at the add), divided by `peak_live`;
    * `peak_live_without_shortcut_memory`: max over ops of (live - shortcut part):
      the peak the same ops would need if nothing were held for a shortcut.
  A network without shortcuts (`none`) has every shortcut figure exactly 0.

Must not import TensorFlow (it measures JAX/XLA only).
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def machine() -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  d = jax.devices()[0]
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = os.cpu_count()
  return {"platform": d.platform, "device_kind": d.device_kind, "num_devices": jax.device_count(),
          "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
          "jax": jax.__version__}


# ------------------------------------------------------------------ analytic model


def activation_accounting(net, image_shape=None) -> dict:
  """The per-image activation model described in the module docstring (elements).
  `image_shape` None: the net's variant's (32x32x3 CIFAR, 224x224x3 ImageNet)."""
  from jointrd_jax import models  # pylint: disable=g-import-not-at-top
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


# ------------------------------------------------------------------ measurement


def _memory(compiled) -> dict:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    m = None
  if m is None:
    return {}
  out = {}
  for k in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
            "alias_size_in_bytes", "generated_code_size_in_bytes", "peak_memory_in_bytes",
            "host_temp_size_in_bytes", "host_argument_size_in_bytes",
            "host_output_size_in_bytes"):
    v = getattr(m, k, None)
    if v is not None:
      out[k] = int(v)
  if {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"} <= set(out):
    out["xla_peak_live_bytes_estimate"] = (out["argument_size_in_bytes"]
                                           + out["output_size_in_bytes"]
                                           + out["temp_size_in_bytes"]
                                           - out.get("alias_size_in_bytes", 0))
  return out


def _gflops(compiled):
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  if not cost or "flops" not in cost:
    return None
  return float(cost["flops"]) / 1e9


def random_variables(net, image_shape, seed: int = 0) -> dict:
  """Variables of `net` drawn with numpy at the init's scales (kaiming-normal convs, BN
  identity, Dirac a=1, b=0.1). XLA:CPU takes tens of seconds to compile the threefry
  init of even a tiny ResNet; the benchmark only needs realistic magnitudes."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jointrd_jax import dirac, models  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0), image_shape))

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    shape = leaf.shape
    if name == "kernel" and len(shape) == 4:  # HWIO, fan-out = kh * kw * out
      return (rng.standard_normal(shape) * np.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
              ).astype(np.float32)
    if name == "kernel":  # the head
      bound = 1.0 / np.sqrt(shape[0])
      return rng.uniform(-bound, bound, shape).astype(np.float32)
    if name in ("scale", "var", dirac.A_NAME):
      return np.ones(shape, np.float32)
    if name == dirac.B_NAME:
      return np.full(shape, dirac.B_INIT, np.float32)
    return np.zeros(shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def prepare_case(arch: str, shortcuts: str, batch: int, *, num_classes: int, width: int,
                 image_size: int = 0):
  """`(call, record)`: a blocking zero-argument call of the compiled inference function,
  and the case's record without timings (parameters, XLA memory, analytic model).
  `image_size` 0: the arch's (32 CIFAR, 224 ImageNet)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jointrd_jax import fold, models  # pylint: disable=g-import-not-at-top

  # The deployment form of the trained network: built as trained (BN, and Dirac for the
  # students), then folded; only the folded network is timed.
  dirac = "none" if shortcuts == "all" else "reparam"
  net = models.build(arch, shortcuts, dirac, num_classes=num_classes, width=width)
  image_size = image_size or net.default_image_shape[0]
  image_shape = (image_size, image_size, 3)
  folded_net, folded = fold.fold(net, random_variables(net, image_shape))
  params = jax.device_put(folded["params"])

  def infer(params, images):
    logits, _ = folded_net.apply({"params": params}, images, train=False)
    return logits

  x = jax.device_put(np.random.default_rng(0).standard_normal((batch,) + image_shape,
                                                              dtype=np.float32))
  t = time.perf_counter()
  compiled = jax.jit(infer).lower(params, x).compile()
  compile_s = time.perf_counter() - t
  record = {
      "arch": arch, "width": width, "num_classes": num_classes, "image_size": image_size,
      "network": "teacher" if shortcuts == "all" else "student",
      "shortcuts": shortcuts, "folded": True, "batch_size": batch, "dtype": "float32",
      "num_params": models.num_params(params), "compile_s": compile_s,
      "xla_memory": _memory(compiled),
      "xla_gflops": _gflops(compiled),
      "analytic": activation_accounting(folded_net, image_shape),
  }
  return (lambda: jax.block_until_ready(compiled(params, x))), record


def time_round_robin(calls, *, iters: int, warmup: int, time_budget_s: float):
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
  ms = sorted(1e3 * t for t in times)
  q = lambda p: ms[min(len(ms) - 1, int(round(p * (len(ms) - 1))))]
  med = statistics.median(ms)
  return {"latency_ms_median": med, "latency_ms_p10": q(0.1), "latency_ms_p90": q(0.9),
          "latency_ms_min": ms[0], "images_per_s": batch / (med / 1e3),
          "iters_timed": len(ms), "warmup": max(warmup, 1)}


def run_batch(arch: str, policies, batch: int, *, num_classes: int, width: int, iters: int,
              warmup: int, time_budget_s: float, image_size: int = 0) -> list:
  """The records of every policy at one batch size, timed round-robin."""
  prepared = [prepare_case(arch, s, batch, num_classes=num_classes, width=width,
                           image_size=image_size)
              for s in policies]
  times = time_round_robin([c for c, _ in prepared], iters=iters, warmup=warmup,
                           time_budget_s=time_budget_s)
  return [dict(record, **latency_fields(ts, batch, warmup))
          for (_, record), ts in zip(prepared, times)]


CASES = ("all", "projection", "none")


def table(results) -> str:
  head = (f"{'network':<8} {'shortcuts':<10} {'batch':>5} {'lat ms':>9} {'img/s':>8} "
          f"{'XLA temp MiB':>12} {'XLA a+o+t MiB':>13} {'sc/total':>8} {'sc/peak':>8} "
          f"{'peak MiB':>9} {'w/o sc MiB':>10}")
  lines = [head, "-" * len(head)]
  mib = lambda b: b / 2 ** 20
  for r in results:
    m, a, b = r["xla_memory"], r["analytic"], r["batch_size"]
    temp = f"{mib(m['temp_size_in_bytes']):12.1f}" if "temp_size_in_bytes" in m else f"{'n/a':>12}"
    peak = m.get("xla_peak_live_bytes_estimate")
    peak = f"{mib(peak):13.1f}" if peak is not None else f"{'n/a':>13}"
    lines.append(
        f"{r['network']:<8} {r['shortcuts']:<10} {b:>5} {r['latency_ms_median']:9.2f} "
        f"{r['images_per_s']:8.1f} {temp} {peak} {a['shortcut_share_of_total']:8.3f} "
        f"{a['shortcut_share_of_peak']:8.3f} {mib(4 * b * a['peak_live']):9.1f} "
        f"{mib(4 * b * a['peak_live_without_shortcut_memory']):10.1f}")
  return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
  from experiments import cli  # pylint: disable=g-import-not-at-top
  p = cli.OneLineErrorParser(
      prog="python -m experiments.inference_benchmark",
      description="Inference latency and activation memory of the folded ResNet teacher vs "
                  "the plain students. Fields and the memory model: the module docstring "
                  "(pydoc experiments.inference_benchmark).")
  p.add_argument("--arch", default="resnet50",
                 help="resnet18/34/50 (CIFAR) or imagenet_resnet18/34/50 (default resnet50).")
  p.add_argument("--batch_sizes", default="1,64",
                 help="Comma-separated batch sizes (default 1,64).")
  p.add_argument("--image_size", type=int, default=0,
                 help="Image height = width (default 0: 32 for CIFAR archs, 224 for ImageNet).")
  p.add_argument("--num_classes", type=int, default=0,
                 help="Classes of the head (default 0: 100 for CIFAR archs, 1000 for ImageNet).")
  p.add_argument("--width", type=int, default=64,
                 help="Stem width, 64 in the paper (default 64).")
  p.add_argument("--shortcuts", default=",".join(CASES),
                 help=f"Comma-separated shortcut policies to compare (default {','.join(CASES)}).")
  p.add_argument("--iters", type=int, default=30,
                 help="Timed calls per case, at most (default 30).")
  p.add_argument("--warmup", type=int, default=3, help="Untimed calls first (default 3).")
  p.add_argument("--time_budget_s", type=float, default=120.0,
                 help="Seconds of timing per batch size, at most (default 120).")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def check_args(args):
  """`(batches, policies, image_size, num_classes)` from the flags; a UserError naming the
  flag for a bad value (the library's messages name none)."""
  from jointrd_jax import models  # pylint: disable=g-import-not-at-top
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  except ValueError:
    batches = []
  if not batches or min(batches) <= 0:
    raise UserError(f"--batch_sizes={args.batch_sizes} must be positive integers, e.g. 1,64.")
  policies = [s.strip() for s in args.shortcuts.split(",") if s.strip()]
  if not policies:
    raise UserError(f"--shortcuts={args.shortcuts!r} names no policy; e.g. {','.join(CASES)}.")
  checks = [("--arch", "arch", args.arch, models.ARCHS)]
  checks += [("--shortcuts", "shortcut policy", s, models.SHORTCUTS) for s in policies]
  for flag, what, value, choices in checks:
    try:
      models.check_choice(what, value, choices)
    except UserError as e:
      raise UserError(f"{flag}: {e}") from None
  variant = models.ARCHS[args.arch][0]
  image_size = args.image_size or models.IMAGE_SIZE[variant]
  num_classes = args.num_classes or models.NUM_CLASSES[variant]
  for flag, value, least in (("--image_size", args.image_size, 0),
                             ("--num_classes", args.num_classes, 0), ("--width", args.width, 1),
                             ("--iters", args.iters, 1), ("--warmup", args.warmup, 0)):
    if value < least:
      zero = " (0: the arch's default)" if flag in ("--image_size", "--num_classes") else ""
      raise UserError(f"{flag}={value} must be at least {least}{zero}.")
  return batches, policies, image_size, num_classes


def main(argv=None, out=None):
  """Runs the benchmark; prints JSON lines and the table to `out`; returns the results."""
  out = out or sys.stdout
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    batches, policies, image_size, num_classes = check_args(args)
    mach = machine()
    print(f"# machine: {mach['platform']} / {mach['device_kind']} / {mach['cpu']} / "
          f"{mach['cpu_count']} CPUs ({mach['cpus_usable']} usable) / jax {mach['jax']}",
          file=out, flush=True)
    results = []
    for b in batches:
      for r in run_batch(args.arch, policies, b, num_classes=num_classes,
                         width=args.width, iters=args.iters, warmup=args.warmup,
                         time_budget_s=args.time_budget_s, image_size=image_size):
        r["machine"] = mach
        print(json.dumps(r, sort_keys=True), file=out, flush=True)
        results.append(r)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None
  print(f"\n{args.arch} width {args.width}, {num_classes} classes, {image_size}x{image_size} "
        "images, folded, fp32; "
        "latency = median ms per call; sc/total, sc/peak: analytic shortcut share of "
        "activation memory (see docstring); peak MiB = analytic peak live activations.",
        file=out)
  print(table(results), file=out, flush=True)
  return results


if __name__ == "__main__":
  main()
