r"""Inference cost of the ResNet teacher vs the plain students, in deployment (folded) form,
on XLA (default) or a deployment runtime (LiteRT, ONNX Runtime; fp32 and int8), and the
accuracy-against-latency plot of trained runs.

  python -m experiments.inference_benchmark [--arch=resnet50] [--batch_sizes=1,64] \
      [--image_size=0] [--num_classes=0] [--width=64] [--shortcuts=all,projection,none] \
      [--iters=30] [--warmup=3] [--time_budget_s=120]

  python -m experiments.inference_benchmark --arch=imagenet_resnet50   # at 224x224

  # LiteRT / ONNX Runtime: fp32 and int8, 1 thread and all cores, batch 1 and 8
  python -m experiments.inference_benchmark --runtime=litert [--precisions=fp32,int8] \
      [--threads=1,all] [--arch=resnet50 --width=64 --batch_sizes=1,8]

  # accuracy against latency of trained, exported runs: OUT/pareto.png, OUT/pareto.md
  python -m experiments.inference_benchmark --runs=runs/jointrd,runs/plain=exports/plain \
      --out=pareto [--runtime=litert] [--threads=1]

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

Deployment runtimes (`--runtime=litert|onnxruntime`): each network (random weights,
folded, raw uint8 images in with the normalisation inside, float32 logits out: an
export's interface) is converted with the export's own code: SavedModel -> TFLite fp32 and
full-integer int8 (LiteRT), TFLite -> ONNX through tf2onnx, ONNX Runtime static int8 (QDQ);
int8 calibrated on 16 random images (the latency does not depend on the values).
Conversions take 10-60 s per model, so each model is kept in the cache
(`~/.cache/jointrd_jax/generated/inference_models/`, see `jointrd_jax/caches.py`; one log
line says how many were reused) and converted again only when missing. Every case
(network x precision x `--threads` x batch) runs in a FRESH process: the LiteRT
interpreter (`ai-edge-litert`, XNNPACK) or an ONNX Runtime CPU session with that many
threads (`all`: every usable core); an `ai_edge_litert` that cannot be imported is refused
before any work (`tf.lite`'s interpreter is never timed in its place), and every record
names the module that ran the model (`runtime_module`, `runtime_module_version`).
Fields: `latency_ms_median` / `_p90` / `_p10` / `_min` of one blocking call (input copy
and output read included) over up to `--iters` calls after `--warmup`, the cases of one
batch size sharing `--time_budget_s`;
`model_bytes` (the file's size); `load_ms` (creating the interpreter / session);
`memory.peak_rss_growth_bytes`: the process's peak RSS while loading and running the
model minus its RSS just before (neither runtime reports its arena through Python), with
`load_rss_growth_bytes` and the runtime library's own `import_rss_growth_bytes`
(`jointrd_jax/benchmarking/runtime_case.py`). Without `--arch`, `--width` and
`--batch_sizes` a runtime run times resnet10 width 16 at batches 1 and 8 (about a minute
once converted), said on the first line; the README's table gives the full-size command.

Runs (`--runs=RUN[=EXPORT_DIR],...`; the export defaults to RUN/export): each finished run
(`summary.json`) and its export (`python -m experiments.export --workdir=RUN
--out=RUN/export --quantize=int8`; a run without one is refused with that command;
each export's files are checked against its SHA256SUMS first, as `predict` and
`deploy.load` check them, `--noverify` for exports made before packages) give
an fp32 point (the run's final-epoch top-1, latency of the export's `model.tflite` /
`model.onnx`) and, when the export has int8 models, an int8 point (the export's int8
top-1 on its check images, latency of `model_int8.*`), at batch 1 with the first
`--threads` (default 1); `--out` gets `pareto.png` (latency vs top-1, each run's points
numbered and the numbers' methods in the legend, the Pareto front dashed) and `pareto.md`
(the same as a table, the front marked, the machine named).
`jointrd_jax/benchmarking/pareto.py` says what each number is.

The zoo beside our plain students (`--zoo`): every network of `--arch` (comma-separated
`ARCH[:POLICY]`, policy default `all`; default: resnet8x4, resnet20, wrn_16_2, vgg8,
mobilenetv2, shufflenetv1, shufflenetv2 and our plain resnet18:none, resnet50:none) at
`--width` (default 64, the reference networks) on LiteRT and ONNX Runtime (or the one
`--runtime`), fp32 and int8, batch 1, 1 thread by default, in one run: one JSON line per
case, then one table (parameters of the folded network, MACs per image, median ms per
runtime and precision, top-1 of the runs). A conversion or case that fails is recorded as
`failed` with its reason and the run goes on. `--runs=RUN,...` (finished runs' workdirs)
fill the top-1 column (each run's final-epoch top-1, matched to the network it trained)
and, with `--out=DIR`, `DIR/zoo_<runtime>.png` (top-1 against fp32 latency); `--out` also
gets `zoo.md` (the table and the machine). `jointrd_jax/benchmarking/zoo_speed.py`.

  python -m experiments.inference_benchmark --zoo [--runs=runs/kd_r8x4,...] [--out=zoo]

The measurement and the model are library code (`jointrd_jax/benchmarking/inference.py`,
`deployment.py`, `runtime_case.py`, `pareto.py`); this script parses the flags and prints.
The XLA path does not import TensorFlow (it measures JAX/XLA only).
"""
import os
import sys
import time

from experiments import cli
from jointrd_jax.benchmarking import runtime_case
from jointrd_jax.errors import UserError

XLA_DEFAULTS = {"arch": "resnet50", "width": 64, "batch_sizes": "1,64"}
# The deployment runtimes run on the CPU: a case of about a minute (once converted).
RUNTIME_DEFAULTS = {"arch": "resnet10", "width": 16, "batch_sizes": "1,8"}
RUNTIME_ONLY = ("precisions", "threads")
TABLE_FLAGS = ("arch", "width", "batch_sizes", "image_size", "num_classes", "shortcuts")


def parser() -> cli.OneLineErrorParser:
  from jointrd_jax.benchmarking.inference import CASES  # deferred: loads JAX, --help stays fast
  p = cli.OneLineErrorParser(
      prog="python -m experiments.inference_benchmark",
      description="Inference latency and memory of the folded ResNet teacher vs the plain "
                  "students (XLA, LiteRT, ONNX Runtime), and accuracy against latency of "
                  "trained runs. Fields: pydoc experiments.inference_benchmark.")
  p.add_argument("--runtime", default=None,
                 help="xla, litert or onnxruntime (default xla; litert with --runs).")
  p.add_argument("--arch", default=None,
                 help="resnet18/34/50/10 (CIFAR) or imagenet_* (default resnet50; resnet10 "
                      "off xla).")
  p.add_argument("--batch_sizes", default=None,
                 help="Comma-separated batch sizes (default 1,64; 1,8 off xla).")
  p.add_argument("--image_size", type=int, default=0,
                 help="Image height = width (default 0: 32 for CIFAR archs, 224 for ImageNet).")
  p.add_argument("--num_classes", type=int, default=0,
                 help="Classes of the head (default 0: 100 for CIFAR archs, 1000 for ImageNet).")
  p.add_argument("--width", type=int, default=None,
                 help="Stem width, 64 in the paper (default 64; 16 off xla).")
  p.add_argument("--shortcuts", default=None,
                 help=f"Comma-separated shortcut policies (default {','.join(CASES)}).")
  p.add_argument("--precisions", default=None,
                 help="litert/onnxruntime: fp32 and/or int8 (default fp32,int8).")
  p.add_argument("--threads", default=None,
                 help="litert/onnxruntime: thread counts, 1 and/or all (default 1,all).")
  p.add_argument("--iters", type=int, default=30,
                 help="Timed calls per case, at most (default 30).")
  p.add_argument("--warmup", type=int, default=3, help="Untimed calls first (default 3).")
  p.add_argument("--time_budget_s", type=float, default=120.0,
                 help="Seconds of timing per batch size, at most (default 120).")
  p.add_argument("--runs", default="",
                 help="RUN[=EXPORT_DIR],...: trained runs for pareto.png (default none).")
  p.add_argument("--out", default="", help="With --runs: where pareto.png/.md go (default none).")
  cli.add_bool(p, "overwrite", False, "With --runs: replace pareto.png/.md in --out (default false).")
  cli.add_bool(p, "verify", True,
               "With --runs: check each export against its SHA256SUMS first (default true).")
  cli.add_bool(p, "zoo", False, "Zoo and plain students on LiteRT/ONNX Runtime; --arch: "
               "ARCH[:POLICY],... (default false).")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def _runtime(args):
  """The runtime (checked), and refusals of flags that do not apply to it."""
  from jointrd_jax.benchmarking import deployment  # deferred: loads JAX, --help stays fast
  runtime = args.runtime or ("litert" if args.runs else "xla")
  if runtime not in deployment.RUNTIMES:
    raise UserError(f"--runtime={runtime} is not one of {', '.join(deployment.RUNTIMES)}.")
  if runtime == "xla":
    for name in RUNTIME_ONLY:
      if getattr(args, name) is not None:
        raise UserError(f"--{name} applies to --runtime=litert or onnxruntime; XLA times fp32 "
                        "with all its threads.")
    if args.runs:
      raise UserError("--runs measures exported model files: give --runtime=litert or "
                      "--runtime=onnxruntime.")
  if args.runs:
    given = [f for f in TABLE_FLAGS if getattr(args, f) not in (None, 0)]
    if given:
      raise UserError(f"--{given[0]} does not apply with --runs (the runs' exports give the "
                      "networks).")
    if not args.out:
      raise UserError("--runs needs --out=DIR for pareto.png and pareto.md.")
  elif args.out or args.overwrite or not args.verify:
    raise UserError("--out, --overwrite and --noverify apply with --runs only.")
  try:
    deployment.check_runtime(runtime)
  except UserError as e:
    raise UserError(f"--runtime={runtime}: {e}") from None
  return runtime


def _csv(flag, text, choices):
  values = cli.csv(text)
  bad = [v for v in values if v not in choices]
  if not values or bad:
    raise UserError(f"--{flag}={text}: {'unknown ' + repr(bad[0]) if bad else 'empty'}; "
                    f"choose from {', '.join(choices)}.")
  return list(dict.fromkeys(values))


def _threads(text):
  from jointrd_jax.benchmarking import deployment, machine  # deferred: loads JAX, --help stays fast
  try:
    out = [deployment.resolve_threads(t, machine.usable_cpus()) for t in cli.csv(text)]
  except ValueError:
    out = []
  if not out:
    raise UserError(f"--threads={text}: write 1, all or positive counts, e.g. 1,all.")
  return list(dict.fromkeys(out))


def check_args(args):
  """`(batches, policies, image_size, num_classes)` from the flags; a UserError naming the
  flag for a bad value (the library's messages name none). Fills the defaults of
  --arch/--width/--batch_sizes for the runtime (`args.runtime`)."""
  from jointrd_jax import models  # deferred: loads JAX, --help stays fast
  from jointrd_jax.benchmarking.inference import CASES  # deferred: loads JAX, --help stays fast
  defaults = XLA_DEFAULTS if args.runtime in (None, "xla") else RUNTIME_DEFAULTS
  for name, value in defaults.items():
    if getattr(args, name) is None:
      setattr(args, name, value)
  try:
    batches = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
  except ValueError:
    batches = []
  if not batches or min(batches) <= 0:
    raise UserError(f"--batch_sizes={args.batch_sizes} must be positive integers, e.g. 1,64.")
  shortcuts = args.shortcuts if args.shortcuts is not None else ",".join(CASES)
  policies = [s.strip() for s in shortcuts.split(",") if s.strip()]
  if not policies:
    raise UserError(f"--shortcuts={shortcuts!r} names no policy; e.g. {','.join(CASES)}.")
  if args.arch in models.arch_names() and args.arch not in models.ARCHS:
    raise UserError(f"--arch: {args.arch!r} is a zoo arch: time it with --zoo "
                    f"--arch={args.arch} (this mode compares a ResNet's shortcut policies).")
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
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return cli.guarded(_main, args, out or sys.stdout)


def _main(args, out):
  if args.zoo:
    from experiments import inference_zoo  # deferred: loads JAX, --help stays fast
    return inference_zoo.run(args, out)
  args.runtime = _runtime(args)
  if args.runs:
    return _pareto(args, out)
  if args.runtime != "xla":
    return _deployment(args, out)
  return _xla(args, out)


def _xla(args, out):
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import inference, machine, tables
  batches, policies, image_size, num_classes = check_args(args)
  cli.setup_logging()
  mach = machine.describe()
  print(f"# machine: {machine.describe_line(mach)}", file=out, flush=True)
  results = []
  for b in batches:
    for r in inference.run_batch(args.arch, policies, b, num_classes=num_classes,
                                 width=args.width, iters=args.iters, warmup=args.warmup,
                                 time_budget_s=args.time_budget_s, image_size=image_size):
      r["machine"] = mach
      print(tables.json_line(r), file=out, flush=True)
      results.append(r)
  print(f"\n{args.arch} width {args.width}, {num_classes} classes, {image_size}x{image_size} "
        "images, folded, fp32; "
        "latency = median ms per call; sc/total, sc/peak: analytic shortcut share of "
        "activation memory (see docstring); peak MiB = analytic peak live activations.",
        file=out)
  print(tables.inference_table(results), file=out, flush=True)
  return results


def _logger(out):
  return lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=out, flush=True)


def _deployment(args, out):
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import deployment, machine, tables
  chosen = {k: v for k, v in RUNTIME_DEFAULTS.items() if getattr(args, k) is None}
  batches, policies, image_size, num_classes = check_args(args)
  precisions = _csv("precisions", args.precisions or "fp32,int8", deployment.PRECISIONS)
  threads = _threads(args.threads or "1,all")
  cli.setup_logging()
  mach = machine.host()
  name = deployment.RUNTIME_NAMES[args.runtime]
  print(f"# machine: {machine.host_line(mach)} / {name} "
        f"{deployment.runtime_version(args.runtime)}", file=out, flush=True)
  if chosen:
    print(f"# {' '.join(f'--{k}={v}' for k, v in chosen.items())} (the runtimes' small "
          f"default, about a minute once converted); give them to time others, e.g. "
          f"--arch=resnet50 --width=64 --batch_sizes=1,8", file=out, flush=True)
  nets = [deployment.Network(args.arch, args.width, s, image_size, num_classes)
          for s in policies]

  def show(r):
    r["machine"] = mach
    print(tables.json_line(r), file=out, flush=True)

  results = deployment.run(nets, args.runtime, precisions=precisions, threads=threads,
                           batches=batches, iters=args.iters, warmup=args.warmup,
                           time_budget_s=args.time_budget_s, log=_logger(out), on_record=show)
  print(f"\n{args.arch} width {args.width}, {num_classes} classes, {image_size}x{image_size} "
        f"uint8 images, folded, {name} (run by {runtime_case.used(results)}); median / p90 ms "
        "per call; file = the model file; "
        "peak MiB = peak RSS growth of a fresh process loading and running it.", file=out)
  print(tables.runtime_table(results), file=out, flush=True)
  return results


def check_out(out: str, files, overwrite: bool) -> None:
  """--out may receive `files`: none of them there unless --overwrite, and writable."""
  from jointrd_jax.training import workdir  # deferred: loads JAX, --help stays fast
  existing = [f for f in files if os.path.exists(os.path.join(out, f))]
  if existing and not overwrite:
    raise UserError(f"--out={out} already holds {existing[0]}; pass --overwrite to "
                    "replace it, or choose another --out.")
  problem = workdir.writable_problem(out)
  if problem:
    raise UserError(f"cannot write to --out={out} ({problem}); choose a writable "
                    "directory.")


def _pareto(args, out):
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import deployment, machine, pareto, tables
  precisions = _csv("precisions", args.precisions or "fp32,int8", deployment.PRECISIONS)
  threads = _threads(args.threads or "1")[0]
  for flag, value, least in (("--iters", args.iters, 1), ("--warmup", args.warmup, 0)):
    if value < least:
      raise UserError(f"{flag}={value} must be at least {least}.")
  runs = pareto.read_runs(pareto.parse_runs(args.runs), args.runtime, verify=args.verify)
  for r in runs:
    r["files"] = {p: f for p, f in r["files"].items() if p in precisions}
  check_out(args.out, (pareto.PNG_FILE, pareto.MD_FILE), args.overwrite)
  cli.setup_logging()
  mach = machine.host()
  version = f"{deployment.RUNTIME_NAMES[args.runtime]} {deployment.runtime_version(args.runtime)}"
  print(f"# machine: {machine.host_line(mach)} / {version}", file=out, flush=True)

  def show(run, precision, rec):
    print(tables.json_line(dict(rec, name=run["name"], precision=precision)), file=out,
          flush=True)

  latency = pareto.measure(runs, args.runtime, threads=threads, iters=args.iters,
                           warmup=args.warmup, time_budget_s=args.time_budget_s, on_point=show)
  pts = pareto.points(runs, latency)
  header = [f"Machine: {machine.host_line(mach)} (at the start; {machine.load_average()} at "
            f"the end); {version} (run by {runtime_case.used(latency.values())}), batch 1, "
            f"{threads} thread(s), median of up to {args.iters} calls; "
            f"{time.strftime('%Y-%m-%d')}."]
  written = pareto.write(args.out, pts, runs, header,
                         f"{version}, batch 1, {threads} thread(s); {mach['cpu']}")
  with open(written["md"]) as f:
    print("\n" + f.read(), file=out, end="")
  print(f"wrote {written['png']} and {written['md']}", file=out, flush=True)
  return pts


if __name__ == "__main__":
  main()
