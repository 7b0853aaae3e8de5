r"""The training step on the CPU, JAX next to the JointRD release's PyTorch modules.

  python -m experiments.cpu_step_compare [--arch=resnet50] [--width=8] [--batch=64] \
      [--methods=plain_dirac,jointrd] [--blocks=7] [--steps_per_block=2] [--warmup=1] \
      [--torch_layouts=nchw] [--torch_threads=0] \
      [--xla_variant=xla_cpu_use_xnnpack=true ...]

Per method, in ONE process: the trainer's jitted, donated float32 step
(`jointrd_jax.benchmarking.train_step`, one fixed batch, as `experiments.benchmark
--data=fixed`) and the same step written with the release's PyTorch modules
(`jointrd_jax.benchmarking.torch_nets`: the release's ResNet / plain + Dirac networks, the
JointRD loss through a frozen BN-folded teacher, SGD with Nesterov momentum). The cases take
turns block by block (`--steps_per_block` steps, then a device sync), `--blocks` times
after `--warmup` untimed blocks, so the machine's load hits them alike; images/s is the
median over blocks (p10-p90 beside it) and `jax/torch` is the ratio of the medians.

`--xla_variant` (repeatable) adds a JAX case compiled with those XLA options
(`key=value`, several joined by `+`), e.g. `--xla_variant=xla_cpu_use_xnnpack=true`:
flags compared in the same run. `--torch_layouts=nchw,nhwc` times PyTorch in its default
layout and in channels_last; `--torch_threads=1,2` times PyTorch with 1 and with 2
intra-op threads (0: its default, the cores). Needs PyTorch (`pip install torch`, the CPU
wheel); without it the script stops with one line. The first line names the machine, its load and
OMP_WAIT_POLICY: PyTorch's OpenMP threads spin at each barrier by default, and on a machine
that other processes load, a descheduled thread stalls the rest (2 threads then ran 5-10x
slower than 1 on the shared 2-core VM); OMP_WAIT_POLICY=PASSIVE avoids that.
"""
import os
import sys

from experiments import cli

LAYOUTS = ("nchw", "nhwc")


def parser() -> cli.ArgumentParser:
  from jointrd_jax.benchmarking import cpu_compare  # deferred: loads JAX, --help stays fast
  p = cli.ArgumentParser("python -m experiments.cpu_step_compare", __doc__)
  p.add_argument("--arch", default="resnet50", help="CIFAR network")
  p.add_argument("--width", type=int, default=8, help="stem width")
  p.add_argument("--batch", type=int, default=64, help="images per step")
  p.add_argument("--methods", type=cli.csv, default=["plain_dirac", "jointrd"],
                 help=f"comma-separated, from {','.join(cpu_compare.METHODS)}")
  p.add_argument("--blocks", type=int, default=7, help="timed blocks per case")
  p.add_argument("--steps_per_block", type=int, default=2, help="steps per timed block")
  p.add_argument("--warmup", type=int, default=1, help="untimed blocks per case")
  p.add_argument("--torch_layouts", type=cli.csv, default=["nchw"],
                 help="PyTorch memory formats timed: nchw (default), nhwc (channels_last)")
  p.add_argument("--torch_threads", type=cli.int_csv, default=[0],
                 help="comma-separated torch.set_num_threads values, one PyTorch case each; "
                 "0 = PyTorch's default (the cores)")
  p.add_argument("--xla_variant", action="append", default=[],
                 help="an extra JAX case compiled with these XLA options, key=value joined "
                 "by +; repeatable")
  return p


def parse_args(argv):
  """The flags, checked: each mistake one line naming its flag, exit status 2."""
  from jointrd_jax import models  # deferred: loads JAX, --help stays fast
  from jointrd_jax.benchmarking import cpu_compare  # deferred: loads JAX, --help stays fast
  p = parser()
  args = p.parse_args(argv)
  if args.arch not in models.ARCHS or models.ARCHS[args.arch][0] != "cifar":
    why = ("a zoo arch: this tool times the release's PyTorch ResNet step, which has no zoo "
           "networks" if args.arch in models.arch_names() else "not a CIFAR ResNet")
    p.error(f"--arch: {args.arch!r} is {why}; choose one of "
            f"{', '.join(a for a, v in models.ARCHS.items() if v[0] == 'cifar')}")
  bad = [m for m in args.methods if m not in cpu_compare.METHODS] or not args.methods
  if bad:
    p.error(f"--methods: {bad if bad is not True else 'none given'}; choose from "
            f"{','.join(cpu_compare.METHODS)}")
  bad = [x for x in args.torch_layouts if x not in LAYOUTS] or not args.torch_layouts
  if bad:
    p.error(f"--torch_layouts: {bad if bad is not True else 'none given'}; choose from "
            f"{','.join(LAYOUTS)}")
  for name in ("width", "batch", "blocks", "steps_per_block"):
    if getattr(args, name) < 1:
      p.error(f"--{name}={getattr(args, name)} must be >= 1")
  if args.warmup < 0:
    p.error(f"--warmup={args.warmup} must be >= 0")
  if not args.torch_threads or min(args.torch_threads) < 0:
    p.error("--torch_threads must be integers >= 0 (0: PyTorch's default), e.g. 1,2")
  args.variants = [parse_variant(p, v) for v in args.xla_variant]
  return args


def parse_variant(p, text: str) -> dict:
  """`key=value+key=value` -> {key: value}; a malformed one is a one-line error."""
  from jointrd_jax.benchmarking import cpu_compare  # deferred: loads JAX, --help stays fast
  out = {}
  for item in text.split("+"):
    key, sep, value = item.partition("=")
    if not sep or not key.startswith("xla_") or not value:
      p.error(f"--xla_variant={text}: {item!r} is not key=value with an XLA option key, "
              "e.g. --xla_variant=xla_cpu_use_xnnpack=true")
    out[key] = cpu_compare.parse_value(value)
  return out


def main(argv=None, out=None) -> dict:
  """Runs the comparison; prints the table to `out` (stdout); returns {method: rows}."""
  return cli.guarded(_main, argv, out or sys.stdout)


def _main(argv, out) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import  # optional dependency
  except ImportError:
    cli.fail("PyTorch is not installed: the comparison times the release's PyTorch modules; "
             "pip install torch (the CPU wheel) and run again.")
  cli.setup_logging()
  from jointrd_jax import sharding  # deferred: loads JAX, --help stays fast
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import cpu_compare, machine
  default_threads = torch.get_num_threads()
  mesh = sharding.make_mesh()
  print(f"# machine: {machine.describe_line(machine.describe())}; torch {torch.__version__} "
        f"({default_threads} threads by default, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}); load at start {machine.load_average()}; "
        f"{args.arch} width {args.width} batch {args.batch}", file=out, flush=True)
  results = {}
  for method in args.methods:
    cases = {}
    for i, options in enumerate([{}] + args.variants):
      name = "jax" + (f"[{'+'.join(f'{k}={v}' for k, v in options.items())}]" if i else "")
      cases[name] = cpu_compare.jax_case(method, args.arch, args.width, args.batch, mesh,
                                         options)
    for layout in args.torch_layouts:
      for threads in args.torch_threads:
        cases[f"torch[{layout},{threads or default_threads}t]"] = cpu_compare.torch_case(
            method, args.arch, args.width, args.batch, layout == "nhwc",
            threads or default_threads)
    times = cpu_compare.interleaved(cases, steps_per_block=args.steps_per_block,
                                    blocks=args.blocks, warmup=args.warmup)
    rows = {n: cpu_compare.summary(t, args.steps_per_block, args.batch) for n, t in times.items()}
    ref_name = next(n for n in rows if n.startswith("torch["))
    ref = rows[ref_name]["images_per_s"]
    print(f"# {method}: load now {machine.load_average()}", file=out)
    for n, r in rows.items():
      print(f"{method:12s} {n:48s} {r['images_per_s']:8.1f} img/s (p10 {r['p10']:.1f}, p90 "
            f"{r['p90']:.1f}; {r['blocks']} blocks)  x{r['images_per_s'] / ref:.2f} of "
            f"{ref_name}  first loss {cases[n][2]:.4f}  "
            f"build/compile {cases[n][3]:.1f}s", file=out, flush=True)
    results[method] = rows
  return results


if __name__ == "__main__":
  main()
