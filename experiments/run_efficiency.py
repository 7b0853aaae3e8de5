r"""Whole-run efficiency: a short real run of the trainer against its bare step.

  python -m experiments.run_efficiency [--method=jointrd] [--arch=resnet10] [--width=16] \
      [--batch_size=128] [--num_epochs=3] [--train_size=10240] [--test_size=2000] \
      [--workdir=DIR [--overwrite]]

Runs `train.train_and_evaluate` as a user would (synthetic data, the default evaluation
every epoch, checkpoints and metrics as configured; a distillation method gets a random
frozen teacher written as a run beforehand, so no teacher is trained), then times the bare
train step of the same method, network and batch (`experiments.benchmark`'s `--data=fixed`:
the jitted step on one device-resident batch) and the trainer's own dispatch of it
(`--data=trainer`: the augmented batch computed inside the step, `steps_per_dispatch` steps
per call), each before and after the run, averaged, and reports

  efficiency = steps x bare step time / (run wall time - compilation),

i.e. the run's training rate as a fraction of the bare step's, and where the rest went:
the input and dispatch (the two benchmarks' difference), the training loop's time beyond
that (host work between steps, and the machine's drift between the measurements: on a
shared machine the speed changes by several percent from minute to minute), and the run's
`summary.json` `time_s` (evaluation, the frozen teacher's one evaluation, checkpoint saves;
metric records and log lines happen inside the loop), and the remainder (each epoch's
start, the summary). Prints one JSON line and a small table.

The run goes to a temporary directory, removed at the end (also when the run fails), or
to `--workdir` (DIR/run, DIR/random_teacher), kept. The measurement is library code
(`jointrd_jax/benchmarking/run_efficiency.py`).
"""
import os
import shutil
import sys
import tempfile

from experiments import cli
from jointrd_jax.errors import UserError

PROG = "python -m experiments.run_efficiency"


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(PROG, __doc__)
  p.add_argument("--method", default="jointrd", help="the method to run")
  p.add_argument("--arch", default="resnet10", help="network, a CIFAR ResNet or a zoo arch "
                 "(the data are 32x32)")
  p.add_argument("--width", type=int, default=16, help="stem width")
  p.add_argument("--batch_size", type=int, default=128, help="global batch size")
  p.add_argument("--num_epochs", type=int, default=3, help="epochs of the run")
  cli.add_deprecated(p, "--epochs", "--num_epochs", "num_epochs", int)
  p.add_argument("--train_size", type=int, default=10240, help="synthetic training images")
  p.add_argument("--test_size", type=int, default=2000, help="synthetic test images")
  p.add_argument("--num_classes", type=int, default=100, help="classes")
  p.add_argument("--steps_per_dispatch", type=int, default=0, help="the trainer's "
                 "steps_per_dispatch (0 = automatic)")
  p.add_argument("--bench_steps", type=int, default=60, help="timed steps of the bare step")
  p.add_argument("--workdir", default="", help="where the run goes, kept (default: a "
                 "temporary directory, removed at the end)")
  cli.add_bool(p, "overwrite", False, "replace the run and teacher an earlier "
               "run_efficiency left in --workdir (default: refuse)")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def check_args(args) -> None:
  """Every flag, before any work: a UserError naming this tool's flag."""
  import jax  # deferred: loads JAX, --help stays fast
  from jointrd_jax import methods, models  # deferred: loads JAX, --help stays fast
  if args.method not in methods.METHODS:
    raise UserError(f"--method: unknown method {args.method!r}; choose one of "
                    f"{', '.join(methods.METHODS)}.")
  cifar = [a for a in models.arch_names() if models.ARCHS.get(a, ("cifar",))[0] == "cifar"]
  if args.arch not in cifar:
    what = "an ImageNet arch" if args.arch in models.ARCHS else "not an arch"
    raise UserError(f"--arch={args.arch} is {what}; this tool trains on 32x32 synthetic "
                    f"data: choose one of {', '.join(cifar)}.")
  for flag, value, least in (("--width", args.width, 1), ("--batch_size", args.batch_size, 1),
                             ("--num_epochs", args.num_epochs, 1),
                             ("--test_size", args.test_size, 1),
                             ("--num_classes", args.num_classes, 2),
                             ("--steps_per_dispatch", args.steps_per_dispatch, 0),
                             ("--bench_steps", args.bench_steps, 1)):
    if value < least:
      raise UserError(f"{flag}={value} must be at least {least}.")
  n = jax.device_count()
  if args.batch_size % n:
    raise UserError(f"--batch_size={args.batch_size} does not divide over {n} devices; use a "
                    f"multiple of {n}, e.g. --batch_size={args.batch_size // n * n or n}.")
  if args.train_size < args.batch_size:
    raise UserError(f"--train_size={args.train_size} is less than one batch "
                    f"(--batch_size={args.batch_size}); give at least that many images.")
  from jointrd_jax.benchmarking import train_step  # deferred: loads JAX, --help stays fast
  try:  # a zoo arch's own rules (a fixed network takes no plain student)
    train_step.check_builds(args.method, args.arch, args.width, args.num_classes)
  except UserError as e:
    raise UserError(f"--method={args.method} --arch={args.arch} --width={args.width}: "
                    f"{str(e).split(': ', 1)[1]}") from None
  _check_workdir(args.workdir, args.overwrite)


def _check_workdir(workdir: str, overwrite: bool) -> None:
  from jointrd_jax.benchmarking import run_efficiency  # deferred: loads JAX, --help stays fast
  if not workdir or not os.path.lexists(workdir):
    return
  if not os.path.isdir(workdir):
    raise UserError(f"--workdir={workdir} is a file; give a new or empty directory.")
  ours = {run_efficiency.RUN_SUBDIR, run_efficiency.TEACHER_SUBDIR}
  if ours & set(os.listdir(workdir)) and not overwrite:
    raise UserError(f"--workdir={workdir} holds an earlier run_efficiency run; give a new or "
                    "empty directory, or --overwrite to replace it.")


def config(args):
  """The training config of the run: the method's preset config (configs/<method>.py) with
  this tool's flags."""
  from jointrd_jax.training import identity  # deferred: loads JAX, --help stays fast
  c = identity.preset_config(args.method, imagenet=False)
  c.dataset = "synthetic"
  c.synthetic.update(dict(train_size=args.train_size, test_size=args.test_size,
                          num_classes=args.num_classes))
  c.model.update(dict(arch=args.arch, width=args.width))
  c.num_epochs = args.num_epochs
  c.batch_size = args.batch_size
  c.steps_per_dispatch = args.steps_per_dispatch
  return c


def main(argv=None) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  return cli.guarded(_main, args)


def _main(args) -> dict:
  cli.setup_logging()  # the trainer's lines as experiments.main prints them
  check_args(args)
  from jointrd_jax.training import run_setup  # deferred: loads JAX, --help stays fast
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import run_efficiency, tables
  c = config(args)
  run_setup.validate(c)
  if args.workdir:
    if args.overwrite:
      for sub in (run_efficiency.RUN_SUBDIR, run_efficiency.TEACHER_SUBDIR):
        shutil.rmtree(os.path.join(args.workdir, sub), ignore_errors=True)
    try:
      os.makedirs(args.workdir, exist_ok=True)
    except OSError as e:
      raise UserError(f"--workdir={args.workdir}: cannot create it ({e.strerror}); give a "
                      "writable directory.") from None
    record = run_efficiency.measure(c, args.workdir, args.bench_steps)
  else:
    with tempfile.TemporaryDirectory(prefix="run_efficiency_") as root:
      record = run_efficiency.measure(c, root, args.bench_steps)
  print(tables.json_line(record))
  print("\n".join(run_efficiency.report(record)))
  return record


if __name__ == "__main__":
  main()
