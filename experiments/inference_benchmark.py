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

The measurement and the model are library code (`jointrd_jax/benchmarking/inference.py`);
this script parses the flags and prints. Must not import TensorFlow (it measures JAX/XLA
only).
"""
import sys

from experiments import cli


def parser() -> cli.OneLineErrorParser:
  from jointrd_jax.benchmarking.inference import CASES  # pylint: disable=g-import-not-at-top
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
  from jointrd_jax.benchmarking.inference import CASES  # pylint: disable=g-import-not-at-top
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
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return cli.guarded(_main, args, out or sys.stdout)


def _main(args, out):
  from jointrd_jax.benchmarking import inference, machine, tables  # pylint: disable=g-import-not-at-top
  batches, policies, image_size, num_classes = check_args(args)
  cli.setup_logging()
  mach = machine.describe()
  print(f"# machine: {mach['platform']} / {mach['device_kind']} / {mach['cpu']} / "
        f"{mach['cpu_count']} CPUs ({mach['cpus_usable']} usable) / jax {mach['jax']}",
        file=out, flush=True)
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


if __name__ == "__main__":
  main()
