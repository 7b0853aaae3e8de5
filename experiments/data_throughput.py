r"""Throughput of the input pipelines on this machine (images/s; a script, not a test).

  python -m experiments.data_throughput [--batch_sizes=128,512] [--dataset=synthetic]
  python -m experiments.data_throughput --pipeline=imagenet [--cores=1,all] [--folder=PATH]

What is measured (library code: `jointrd_jax/benchmarking/input_throughput.py`):

`--pipeline=in_memory` (default; CIFAR-sized data on the devices): for each batch size,
builds the pipeline over all local devices, runs `--warmup` steps (compilation
included), then times `--steps` batches, blocking on each one, and prints the median
images/s.

`--pipeline=imagenet`: the streamed ImageNet pipeline (`datasets.streamed`), decode
included, on generated ImageNet-sized JPEGs (`--image_shape`, default 375x500, ~110 KB;
made once in ~/.cache/jointrd_jax/generated/ ($XDG_CACHE_HOME if set), kept and reused by
the next run with the same --num_images and --image_shape, said in one log line; delete
the folder to free the space) or a real `--folder=PATH` in imagefolder layout. For each
`--cores` setting it runs a child process pinned to that many cores (`1`: one core,
tf.data private threadpool of 1 and intra-op parallelism 1; `all`: every core) and
reports images/s and images/s per core for: training augmentation (host batches; and to
the devices), evaluation, and, to show what limits them, the stages alone: reading the
files, JPEG decode of the crop window (fused decode-and-crop), full decode, and the resize
of a crop. One core also runs PIL (torchvision's default loader: decode the whole image)
and PIL with draft decoding (JPEG DCT scaling, as fast PyTorch loaders do) for
comparison. Two figures per row, each the best of `--repeats` timed passes over
`--seconds` or more: images per wall-clock second, and images per CPU-second of the
measuring process (all its threads): the rate of one fully used core, which other jobs on
a shared machine do not lower (they only steal wall-clock time).
"""
import os
import subprocess
import sys

from experiments import cli
from jointrd_jax.errors import UserError

PROG = "python -m experiments.data_throughput"
# Set (to the --cores value) in the measuring child processes of --pipeline=imagenet.
_CHILD_ENV = "JOINTRD_DATA_THROUGHPUT_CHILD"


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser(PROG, __doc__)
  p.add_argument("--pipeline", choices=("in_memory", "imagenet"), default="in_memory",
                 help="in_memory: CIFAR-sized data on the devices; imagenet: streamed")
  p.add_argument("--batch_sizes", type=cli.int_csv, default="128,512",
                 help="in_memory: global batch sizes to time")
  p.add_argument("--dataset", default="synthetic",
                 help="in_memory: cifar100, cifar10, npz:PATH or synthetic")
  p.add_argument("--data_dir", default="", help="in_memory: TFDS data dir, CIFAR only "
                 "(default: TFDS's)")
  p.add_argument("--steps", type=int, default=30, help="in_memory: timed steps per batch size")
  p.add_argument("--warmup", type=int, default=3, help="in_memory: untimed steps first "
                 "(compilation)")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="in_memory: image dtype")
  p.add_argument("--cores", type=cli.csv, default="1,all",
                 help="imagenet: core counts to measure ('all': every core)")
  p.add_argument("--folder", default="", help="imagenet: an imagefolder PATH (default: "
                 "generated images, kept in ~/.cache/jointrd_jax/generated/)")
  p.add_argument("--num_images", type=int, default=768,
                 help="imagenet: generated training images (1/3 as many more for eval)")
  cli.add_deprecated(p, "--images", "--num_images", "num_images", int)
  p.add_argument("--image_shape", type=cli.int_csv, default="375,500",
                 help="imagenet: generated images' H,W")
  p.add_argument("--batch_size", type=int, default=32, help="imagenet: batch size")
  cli.add_deprecated(p, "--batch", "--batch_size", "batch_size", int)
  p.add_argument("--repeats", type=int, default=3,
                 help="imagenet: timed passes per figure (the best counts)")
  p.add_argument("--seconds", type=float, default=3.0,
                 help="imagenet: minimum length of a timed pass")
  return p


def check_args(args) -> None:
  """Every flag, before any work: a UserError naming it."""
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import input_throughput, machine
  if not args.batch_sizes or min(args.batch_sizes) < 1:
    raise UserError("--batch_sizes must be positive integers, e.g. --batch_sizes=128,512.")
  usable = machine.usable_cpus()
  for c in args.cores:
    if c != "all" and not (c.isdigit() and 1 <= int(c) <= usable):
      raise UserError(f"--cores: {c!r} is neither 'all' nor a core count from 1 to {usable}.")
  if not args.cores:
    raise UserError("--cores names no setting, e.g. --cores=1,all.")
  if len(args.image_shape) != 2 or min(args.image_shape) < 1:
    raise UserError("--image_shape must be two positive integers H,W, e.g. 375,500.")
  if args.folder and not os.path.isdir(args.folder):
    raise UserError(f"--folder={args.folder} is not a directory; give an imagefolder "
                    "(train/<class>/*, val/<class>/*).")
  for flag, value, least in (
      ("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
      ("--num_images", args.num_images, input_throughput.GENERATED_CLASSES),
      ("--batch_size", args.batch_size, 1), ("--repeats", args.repeats, 1)):
    if value < least:
      raise UserError(f"{flag}={value} must be at least {least}.")
  if not args.seconds > 0:
    raise UserError(f"--seconds={args.seconds} must be positive.")


def main_in_memory(args):
  import jax  # deferred: loads JAX, --help stays fast
  import jax.numpy as jnp  # deferred: loads JAX, --help stays fast
  from jointrd_jax import datasets  # deferred: loads JAX, --help stays fast
  from jointrd_jax.benchmarking import input_throughput  # deferred: loads JAX, --help stays fast
  from jointrd_jax.sharding import make_mesh  # deferred: loads JAX, --help stays fast
  mesh = make_mesh()
  data = datasets.load(args.dataset, mesh=mesh, data_dir=args.data_dir, download=False)
  print(f"dataset={data.name} train={data.num_train} image={data.image_shape} "
        f"devices={mesh.devices.size} ({jax.devices()[0].platform}) dtype={args.dtype}")
  for b in args.batch_sizes:
    ips = input_throughput.in_memory_rate(data, b, args.steps, args.warmup,
                                          jnp.dtype(args.dtype))
    print(f"batch_size={b:6d}  {ips:12,.0f} images/s  (median of {args.steps} steps)")


def main_imagenet(args):
  from jointrd_jax.training import reporting  # deferred: loads JAX, --help stays fast
  # deferred: loads JAX, --help stays fast:
  from jointrd_jax.benchmarking import input_throughput, machine
  folder = args.folder
  if not folder:
    h, w = args.image_shape
    folder, made_now = input_throughput.generated_folder(args.num_images, h, w)
    files, size = input_throughput.folder_size(folder)
    reporting.log("generated images: %d files (%.1f MB) %s %s; kept for the next run with "
                  "these --num_images and --image_shape (delete the folder to free the space)",
                  files, size / 1e6, "written to" if made_now else "reused from", folder)
  print(f"imagenet pipeline on {folder}: batch {args.batch_size}, 224x224 output; "
        f"{machine.cpu_name()}, {machine.usable_cpus()} cores; best of {args.repeats} passes; "
        f"load average {machine.load_average()}", flush=True)
  for cores in args.cores:
    cmd = [sys.executable, "-m", "experiments.data_throughput", "--pipeline=imagenet",
           f"--folder={folder}", f"--cores={cores}", f"--batch_size={args.batch_size}",
           f"--repeats={args.repeats}", f"--seconds={args.seconds}"]
    env = dict(os.environ, **{_CHILD_ENV: cores})
    if subprocess.run(cmd, check=False, env=env).returncode:
      raise UserError(f"the measurement with --cores={cores} failed (see above).")


def child_imagenet(args, cores: str):
  """Measures one `cores` setting in this (pinned) process and prints the rows."""
  from jointrd_jax.benchmarking import input_throughput  # deferred: loads JAX, --help stays fast
  n = input_throughput.pin_cores(cores)  # before TF or JAX start threads
  rows = input_throughput.streamed_rows(args.folder, cores, n, args.batch_size, args.repeats,
                                        args.seconds)
  for name, (wall, cpu) in rows.items():
    print(f"  cores={cores:>3}  {name:42s} {wall:8,.0f} images/s  {cpu:6,.0f} per CPU-second",
          flush=True)


def main(argv=None):
  args = parser().parse_args(sys.argv[1:] if argv is None else argv)
  cli.guarded(_main, args)


def _main(args):
  check_args(args)
  cli.setup_logging()
  if args.pipeline == "in_memory":
    main_in_memory(args)
  elif os.environ.get(_CHILD_ENV):
    child_imagenet(args, os.environ[_CHILD_ENV])
  else:
    main_imagenet(args)


if __name__ == "__main__":
  main()
