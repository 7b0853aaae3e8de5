r"""Training-step throughput of every method: the trainer's own jitted, donated step.

  python -m experiments.benchmark [--methods=resnet,kd_logits,kd_mse_all_dirac,jointrd] \
      [--batch_sizes=128,512] [--arch=resnet50] [--width=64] [--num_classes=100] \
      [--steps=60] [--steps_per_block=10] [--warmup=3] [--half_precision=auto] \
      [--peak_tflops=989] [--data=fixed] [--init=auto] [--json_out=FILE]

  # on a CPU, without --arch/--width/--batch_sizes: a small case (resnet10, width 8,
  # batch 32; about a minute), said on the first line; give them to time others:
  python -m experiments.benchmark --arch=resnet10 --width=16 --batch_sizes=32,128

What is timed, per (method, batch size): `steps.make_train_step(method, tx, schedule)`
built exactly as `train.train_and_evaluate` builds it (`run_setup.build_method`,
`optim.create_optimizer`, the state of `steps.create_state`) and jitted as the trainer
jits it, `jax.jit(step, donate_argnums=(0,))`, called as the trainer calls it
(`step(state, teacher_vars, batch, np.int32(epoch))`). The distillation methods get a
frozen, randomly initialised ResNet teacher of the same arch and width (its weights do not
change the cost).

- Compilation: `jitted.lower(...)` then `.compile()`, timed (`lower_s`, `compile_s` =
  lower + compile). The compiled executable is the one timed. With a persistent
  compilation cache (JAX_COMPILATION_CACHE_DIR) a repeated case reads it from the cache
  and `compile_s` is small: the record says which cache was used.
- Data (`--data`): `fixed` (default) = one pre-built batch (synthetic images normalised
  like the input pipeline, cast to the compute dtype, `{'image', 'label'}`) put on the
  mesh with `sharding.batch_sharded`, and fed to every step: the step alone. `trainer`
  = the trainer's own dispatch over a 50,000-image synthetic dataset on the devices
  (`steps_per_dispatch` steps per call, each batch gathered, cropped, flipped and
  normalised inside the step; CIFAR sizes).
- Timing: `--warmup` untimed steps, then `--steps` timed steps in blocks of
  `--steps_per_block`; each block is one wall-clock interval closed by
  `jax.block_until_ready` on the state (no host sync inside a block). `images_per_s` is
  the median over blocks (p10 / p90 / overall mean too), `step_ms` = batch / that.
- FLOPs: XLA's `compiled.cost_analysis()['flops']`, which on a multi-device mesh is the
  cost of ONE device's partitioned program: `xla_tflop_per_step` multiplies it by the
  number of devices (exact for the data-parallel part; it over-counts the replicated
  optimizer update: +3% for a width-4 ResNet-10 on 8 CPU devices, less for wider nets). None where the backend gives no cost analysis.
  `tflops_per_s` = that / step time; `pct_peak` = % of `--peak_tflops` (when given).
  `ref_gflop_per_image` is the reference cost of the issue (ResNet-50, width 64, 32x32,
  100 classes only; None otherwise) and `ref_tflops_per_s` the throughput in those units.
- Memory: `peak_mem_bytes` = `device.memory_stats()['peak_bytes_in_use']` where the
  backend has it (GPU; it is the PROCESS peak so far, so a case can only raise it:
  order cases small to large to read them), else XLA's memory analysis of the compiled
  step, arguments + outputs + temporaries - aliased, for ONE device (`peak_mem_source`
  says which).
- `est_200_epochs_min` (CIFAR archs): 200 x 390 steps x 128 images (the recipe) /
  `images_per_s`, in minutes; `est_imagenet_epoch_min` (ImageNet archs): one epoch of
  1,281,167 images / `images_per_s`: training steps only (evaluation, compilation,
  checkpoints, and a distillation method's teacher training are excluded).

Initial state (`--init`): `jax` = `steps.create_state` and a jitted `models.init` for the
teacher (the trainer's way); `numpy` = the same trees drawn with numpy at the same scales
(XLA:CPU takes many seconds to compile the threefry init), checked against
`steps.create_state`'s shapes and dtypes. `auto` = `numpy` on CPU, `jax` elsewhere.

Defaults: on GPU/TPU ResNet-50 width 64 at batch 128 and 512; on a CPU (where that takes
hours) resnet10 width 8 at batch 32 for every flag of those three not given, said on the
first line. `--half_precision=true` on a CPU warns: bf16 is emulated there.

`--arch` takes every arch of `models.arch_names()`: the ResNet family and the distillation
zoo (docs/zoo.md). A zoo arch keeps its own shortcut rules: the fixed networks
(mobilenetv2, shufflenetv1/v2) take their own shortcuts only and the ShuffleNets width 64
only, so a method whose student is plain (e.g. jointrd) on them is refused in one line
before any case, naming the method.

The zoo's cost table (no step is timed):

  python -m experiments.benchmark --zoo [--arch=resnet8x4,wrn_16_2] [--width=64] \
      [--json_out=FILE]

one row per arch (default: every zoo arch and their ResNet50 teacher, ours), at the
reference form (its own shortcuts), folded, batch 1, 32x32, 100 classes: parameters,
XLA's FLOPs of the forward pass per image, MACs counted as thop / ptflops count them, and
the published MACs with their source where one publishes them
(`jointrd_jax/benchmarking/zoo_cost.py` says how each is counted: XLA counts 2 flops per
multiply-add and only the kernel taps inside the unpadded input).

The measurement is library code (`jointrd_jax/benchmarking/train_step.py`,
`zoo_cost.py`); this script parses the flags and prints. Imports neither TensorFlow nor
ml_collections (nor `configs/`): the optimizer and the method are built from a small
stand-in of the config (`train_step.stand_in_config`).
"""
import os
import sys

from experiments import cli
from jointrd_jax.errors import UserError

# The defaults of --arch, --width and --batch_sizes: on GPU/TPU, and on a CPU (a case of
# about a minute: ResNet-50 at batch 128 runs at ~1 image/s on a 2-core CPU).
ACCELERATOR_DEFAULTS = {"arch": "resnet50", "width": 64, "batch_sizes": [128, 512]}
CPU_DEFAULTS = {"arch": "resnet10", "width": 8, "batch_sizes": [32]}
ZOO_FLAGS = ("zoo", "arch", "width", "num_classes", "json_out")


def parser() -> cli.ArgumentParser:
  from jointrd_jax.benchmarking import train_step  # deferred: loads JAX, --help stays fast
  p = cli.ArgumentParser("python -m experiments.benchmark", __doc__)
  p.add_argument("--methods", type=cli.csv, default=list(train_step.DEFAULT_METHODS),
                 help=f"comma-separated methods (default: {','.join(train_step.DEFAULT_METHODS)})")
  p.add_argument("--batch_sizes", type=cli.int_csv, default=None,
                 help="comma-separated global batch sizes, multiples of the device count "
                 "(default: 128,512; 32 on a CPU)")
  p.add_argument("--arch", default=None, help="network; imagenet_* archs take 224x224 "
                 "images (default: resnet50; resnet10 on a CPU)")
  p.add_argument("--width", type=int, default=None,
                 help="stem width (default: 64; 8 on a CPU)")
  p.add_argument("--num_classes", type=int, default=0, help="classes; 0 = the arch's default")
  p.add_argument("--steps", type=int, default=60, help="timed steps per case (>= 50 for "
                 "reported figures)")
  p.add_argument("--steps_per_block", type=int, default=10,
                 help="steps per timed interval (one block_until_ready each)")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
  p.add_argument("--half_precision", type=cli.parse_bool_or_auto, default="auto",
                 help="auto (bf16 compute off CPU), true or false; params stay float32")
  p.add_argument("--peak_tflops", type=float, default=None,
                 help="the device's peak TFLOP/s, for %%peak, e.g. ~790 for an H200 in "
                 "bf16 (default: none)")
  p.add_argument("--data", choices=train_step.DATA, default="fixed",
                 help="fixed: the bare step on one pre-built batch; trainer: the trainer's "
                 "dispatch (steps_per_dispatch steps per call, augmentation inside; CIFAR "
                 "sizes)")
  p.add_argument("--steps_per_dispatch", type=int, default=0,
                 help="--data=trainer: steps per call; 0 = the trainer's default")
  cli.add_bool(p, "fold_teacher", True,
               "fold the frozen teacher's BatchNorm into its convs, as the trainer")
  p.add_argument("--init", choices=train_step.INIT, default="auto",
                 help="initial state: jax (the trainer's), numpy (fast on CPU), auto")
  p.add_argument("--json_out", default="", help="also write the JSON lines to this file "
                 "(default: none)")
  cli.add_bool(p, "zoo", False, "print the zoo's cost table (params, FLOPs per image, the "
               "published figures) instead of timing steps; --arch: comma-separated archs")
  return p


def parse_args(argv):
  """The flags, checked (each mistake one line naming its flag, exit status 2); arch,
  width and batch sizes not given stay None (`apply_defaults` fills them)."""
  from jointrd_jax import methods, models  # deferred: loads JAX, --help stays fast
  p = parser()
  args = p.parse_args(argv)
  if args.zoo:
    return _zoo_args(p, args, argv)
  for m in args.methods:
    if m not in methods.METHODS:
      p.error(f"--methods: unknown method {m!r}; choose from {', '.join(methods.METHODS)}")
  if not args.methods:
    p.error("--methods names no method, e.g. --methods=jointrd")
  if args.arch is not None and args.arch not in models.arch_names():
    p.error(f"--arch: unknown arch {args.arch!r}; choose one of "
            f"{', '.join(models.arch_names())}")
  if args.batch_sizes is not None and (not args.batch_sizes or min(args.batch_sizes) < 1):
    p.error("--batch_sizes must be positive integers, e.g. --batch_sizes=128,512")
  for name in ("width", "steps", "steps_per_block", "warmup"):
    if getattr(args, name) is not None and getattr(args, name) < 1:
      p.error(f"--{name}={getattr(args, name)} must be >= 1")
  for name in ("num_classes", "steps_per_dispatch"):
    if getattr(args, name) < 0:
      p.error(f"--{name}={getattr(args, name)} must be >= 0 (0: the default)")
  if args.data == "trainer" and models.ARCHS.get(args.arch, ("cifar",))[0] != "cifar":
    p.error("--data=trainer times the device-resident (CIFAR-size) input; use --data=fixed "
            "for ImageNet archs")
  return args


def _zoo_args(p, args, argv):
  """--zoo's flags: --arch (comma-separated, checked), --width, --num_classes, --json_out;
  a flag that times steps is refused (it would change nothing)."""
  from jointrd_jax import models  # deferred: loads JAX, --help stays fast
  from jointrd_jax.benchmarking import zoo_cost  # deferred: loads JAX, --help stays fast
  given = [a[2:].split("=")[0] for a in argv if a.startswith("--")]
  unused = [g for g in given if g not in ZOO_FLAGS]
  if unused:
    p.error(f"--{unused[0]} does not apply with --zoo (it times no step); --zoo takes "
            f"{', '.join('--' + f for f in ZOO_FLAGS if f != 'zoo')}")
  if args.width is None:
    args.width = zoo_cost.zoo.REFERENCE_WIDTH
  if args.width < 1:
    p.error(f"--width={args.width} must be >= 1")
  args.archs = cli.csv(args.arch) if args.arch else list(zoo_cost.zoo_archs(args.width))
  for a in args.archs:
    if a not in models.arch_names():
      p.error(f"--arch: unknown arch {a!r}; choose from {', '.join(models.arch_names())}")
  if args.num_classes < 0:
    p.error(f"--num_classes={args.num_classes} must be >= 0 (0: the default)")
  return args


def check_methods_build(args) -> None:
  """`train_step.check_builds` for every method, naming this tool's flags, before any case."""
  from jointrd_jax.benchmarking import train_step  # deferred: loads JAX, --help stays fast
  for m in args.methods:
    try:
      train_step.check_builds(m, args.arch, args.width, args.num_classes or 100)
    except UserError as e:
      raise UserError(f"--methods={m} --arch={args.arch} --width={args.width}: "
                      f"{str(e).split(': ', 1)[1]}") from None


def apply_defaults(args, platform: str):
  """Fills --arch, --width and --batch_sizes not given: the accelerator defaults, or on a
  CPU the small case. Returns the line saying what a CPU run chose, or None."""
  defaults = CPU_DEFAULTS if platform == "cpu" else ACCELERATOR_DEFAULTS
  chosen = [k for k in defaults if getattr(args, k) is None]
  for k in chosen:
    setattr(args, k, defaults[k])
  if platform != "cpu" or not chosen:
    return None
  shown = lambda d: ", ".join(f"--{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                              for k, v in d.items() if k in chosen)
  return (f"# on a CPU: {shown(CPU_DEFAULTS)} (about a minute) instead of the accelerator "
          f"defaults {shown(ACCELERATOR_DEFAULTS)} (hours on a CPU); give those flags to "
          "time other cases")


def options(args):
  from jointrd_jax.benchmarking import train_step  # deferred: loads JAX, --help stays fast
  return train_step.Options(
      arch=args.arch, width=args.width, num_classes=args.num_classes,
      half_precision=args.half_precision, steps=args.steps, steps_per_block=args.steps_per_block,
      warmup=args.warmup, data=args.data, steps_per_dispatch=args.steps_per_dispatch,
      fold_teacher=args.fold_teacher, init=args.init, peak_tflops=args.peak_tflops)


def check_batch_sizes(flag: str, batch_sizes, num_devices: int) -> None:
  """A UserError naming `flag` for a batch size that does not split over the devices."""
  for b in batch_sizes:
    if b % num_devices:
      raise UserError(f"{flag}: {b} does not divide over {num_devices} devices; use a "
                      f"multiple of {num_devices}, e.g. {b // num_devices * num_devices or num_devices}.")


def _open_sink(path):
  try:
    return open(path, "w") if path else None  # pylint: disable=consider-using-with
  except OSError as e:
    raise UserError(f"--json_out={path}: cannot write it ({e.strerror}); give a file in an "
                    "existing, writable directory.") from None


def main(argv=None, out=None) -> list:
  """Runs every case; prints JSON lines, estimates and the table to `out` (stdout);
  returns the records. A user error (bad flag value) exits with status 2."""
  return cli.guarded(_main, argv, out or sys.stdout)


def _main(argv, out) -> list:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  if args.zoo:
    return _zoo(args, out)
  import jax  # deferred: loads JAX, --help stays fast
  from jointrd_jax import sharding  # deferred: loads JAX, --help stays fast
  from jointrd_jax.benchmarking import tables, train_step  # deferred: loads JAX, --help stays fast
  d = jax.devices()[0]
  note = apply_defaults(args, d.platform)
  check_batch_sizes("--batch_sizes", args.batch_sizes, jax.device_count())
  check_methods_build(args)
  sink = _open_sink(args.json_out)
  if note:
    print(note, file=out, flush=True)
  if d.platform == "cpu" and args.half_precision:
    cli.warn("--half_precision=true on a CPU: XLA:CPU emulates bfloat16 (converting to "
             "float32 around most operations), so these timings say nothing about bf16 on a "
             "GPU or TPU; use auto or false for CPU figures.")
  mesh = sharding.make_mesh()
  print(f"# machine: {d.platform} {d.device_kind} x{jax.device_count()}, jax "
        f"{jax.__version__}, {os.cpu_count()} CPUs; {args.arch} width {args.width}, "
        f"data={args.data}", file=out)
  if args.steps < 50:
    print(f"# note: --steps={args.steps} < 50 timed steps: a smoke run, not a measurement",
          file=out)
  results = []
  try:
    for m in args.methods:
      for b in args.batch_sizes:
        r = train_step.run_case(m, b, options(args), mesh)
        results.append(r)
        line = tables.json_line(r)
        print(line, file=out, flush=True)
        if sink:
          sink.write(line + "\n")
          sink.flush()
  finally:
    if sink:
      sink.close()
  print(tables.estimates(results), file=out)
  print(tables.train_step_table(results), file=out)
  if any(r["ref_gflop_per_image"] for r in results):
    print(f"# ref_GF/img: the issue's GFLOP per image per step ({train_step.REFERENCE}); "
          "xla_GF/img: XLA's cost analysis of the compiled step", file=out)
  return results


def _zoo(args, out) -> list:
  """The zoo's cost table (`zoo_cost`): one JSON line per arch, then the table."""
  from jointrd_jax.benchmarking import tables, zoo_cost  # deferred: loads JAX, --help stays fast
  sink = _open_sink(args.json_out)
  rows = []
  print(f"# the zoo's forward cost per 32x32 image, folded, batch 1, width {args.width}, "
        f"{args.num_classes or zoo_cost.NUM_CLASSES} classes", file=out, flush=True)
  if args.width != zoo_cost.zoo.REFERENCE_WIDTH and not args.arch:
    print(f"# at width {args.width}: {', '.join(zoo_cost.FIXED_WIDTH)} left out (width 64 "
          "only)", file=out)
  try:
    for a in args.archs:
      r = zoo_cost.cost(a, args.width, args.num_classes or zoo_cost.NUM_CLASSES)
      rows.append(r)
      line = tables.json_line(r)
      print(line, file=out, flush=True)
      if sink:
        sink.write(line + "\n")
  finally:
    if sink:
      sink.close()
  print(zoo_cost.table(rows), file=out)
  print("# XLA MFLOP/img: XLA's cost analysis (2 flops per multiply-add, kernel taps inside "
        "the unpadded input, elementwise ops included); MMAC/img: conv + dense "
        "multiply-accumulates as thop / ptflops count them (padding included); published: "
        "in MACs (a source's 'FLOPs' converted by its own convention), with its source",
        file=out)
  return rows


if __name__ == "__main__":
  main()
