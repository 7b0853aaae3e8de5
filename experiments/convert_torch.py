r"""Convert a PyTorch checkpoint (a torchvision or JointRD release ResNet, or a CIFAR-100 zoo
teacher of RepDistiller / mdistiller) into a run workdir.

  python -m experiments.convert_torch --checkpoint=FILE --out=RUN_DIR --arch=resnet50 \
      [--num_classes=0] [--format=auto|torchvision|release] [--which=teacher|student] \
      [--shortcuts=all|projection|none] [--width=0] [--dataset=DATASET] [--overwrite]
  python -m experiments.convert_torch --from=mdistiller|repdistiller --arch=ZOO_ARCH \
      --checkpoint=FILE --out=RUN_DIR [--num_classes=0] [--which=teacher|student] \
      [--dataset=DATASET] [--overwrite]

  # torchvision's ImageNet ResNet-50 weights as a frozen teacher:
  python -m experiments.convert_torch --checkpoint=resnet50-0676ba61.pth \
      --arch=imagenet_resnet50 --out=runs/tv_r50
  # mdistiller's published resnet32x4 teacher (cifar_teachers.tar) as a frozen teacher:
  python -m experiments.convert_torch --from=mdistiller --arch=resnet32x4 \
      --checkpoint=cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth --out=runs/t_r32x4

Reads a torchvision-style ResNet state_dict or an official JointRD release checkpoint
(`{'model_state_dict': {'module.teacher.*' / 'module.student.*'}}`), see
`jointrd_jax/deploy/torch_import.py`, and writes RUN_DIR/config.json + one checkpoint: a run
that `--config.teacher.checkpoint=RUN_DIR` of the trainer and `experiments.export` accept.
The config is configs/resnet.py's (method 'resnet') with --dataset and the imported
model's arch / width / shortcuts / Dirac mode; the checkpoint records the arch's image
shape (32x32x3 for the CIFAR archs, 224x224x3 for the `imagenet_*` archs).

--from reads a zoo arch's file in its toolkit's layout (`jointrd_jax/deploy/zoo_import.py`:
`{'model': state_dict, ...}` or a bare state_dict, `module.` prefixes, a distiller's
`student.` / `teacher.` networks by --which) into the zoo arch (reference width, its own
shortcuts, plain convs); their resnetv2.py ResNet18/34/50 (e.g. mdistiller's ResNet50
teacher) into our CIFAR resnet18/34/50. --format, --width and --shortcuts are the ResNet
layouts' and are refused with it. A file of another family, or whose tensors do not fit
--arch, stops with one line naming what the file holds or the first tensor that does not fit.

--dataset (recorded in the run's config; default: cifar100 for a CIFAR arch,
imagenet2012 for an ImageNet arch): cifar100, cifar10, npz:PATH or synthetic for the
CIFAR archs; imagenet2012 or imagefolder:PATH for the ImageNet archs. The head's class
count must fit a known dataset (100, 10, 1000 for imagenet2012).

The file's structure (stem 3x3 or 7x7, block kind, blocks per stage) must be the arch's:
a torchvision ResNet-18 file with --arch=imagenet_resnet50 (or a ResNet-101 file) stops
with one line naming what the file holds, and nothing is written.

Needs PyTorch (optional): pip install torch. Files are loaded with weights_only=True; a
checkpoint that would run code when unpickled is refused.
"""
import argparse
import sys

from experiments import cli
from jointrd_jax.errors import UserError

# The datasets a converted run may record, per model variant: the data sources
# (jointrd_jax/datasets/sources/) held in memory for a CIFAR arch (32x32 images), those
# streamed for an ImageNet arch (224x224).
_DEFAULT_DATASET = {"cifar": "cifar100", "imagenet": "imagenet2012"}
_VARIANT_NAME = {"cifar": "CIFAR", "imagenet": "ImageNet"}


def parser() -> argparse.ArgumentParser:
  p = cli.OneLineErrorParser(
      prog="python -m experiments.convert_torch",
      description="Convert a PyTorch checkpoint (a torchvision or JointRD release ResNet, a "
                  "RepDistiller / mdistiller zoo arch) into a run workdir. Details: the module "
                  "docstring (pydoc experiments.convert_torch).")
  p.add_argument("--checkpoint", required=True,
                 help="The PyTorch file (.pt, .pth, .pth.tar). Required.")
  p.add_argument("--out", required=True, help="The run workdir to write (new or empty). Required.")
  p.add_argument("--arch", required=True,
                 help="A ResNet arch (resnet18, imagenet_resnet50, ...); with --from a zoo "
                      "arch (vgg13, ...). Required.")
  p.add_argument("--from", dest="source", default="",
                 help="mdistiller or repdistiller: a zoo arch's file (default: a ResNet file).")
  p.add_argument("--num_classes", type=int, default=0,
                 help="Classes of the head (default 0: read from the head's weight).")
  p.add_argument("--width", type=int, default=0,
                 help="Stem width, for a ResNet file (default 0: read from the stem).")
  p.add_argument("--format", default="",
                 help="auto, torchvision or release, for a ResNet file (default: auto).")
  p.add_argument("--which", default="teacher",
                 help="teacher or student, of a distiller's file (release, mdistiller) (default "
                      "teacher).")
  p.add_argument("--shortcuts", default="",
                 help="all, projection or none (default: all; projection for a release "
                      "student).")
  p.add_argument("--dataset", default="",
                 help="The dataset recorded in the run (default: cifar100 for a CIFAR arch, "
                      "imagenet2012 for an ImageNet arch).")
  cli.add_bool(p, "overwrite", False, "Replace the run --out holds (default: refuse).")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def check_args(args) -> str:
  """Validates --out, --arch, --shortcuts and --dataset before the file is read (UserError
  naming the flag); returns the dataset to record."""
  from jointrd_jax import models  # deferred: loads JAX, --help stays fast
  from jointrd_jax.datasets import sources  # deferred: loads JAX, --help stays fast
  from jointrd_jax.training import workdir  # deferred: loads JAX, --help stays fast
  problem = workdir.writable_problem(args.out)
  if problem:
    raise UserError(f"cannot write to --out={args.out} ({problem}); choose a writable "
                    "directory.")
  check_source(args)
  checks = [("--arch", "arch", args.arch, models.ARCHS)] if not args.source else []
  if args.shortcuts:
    checks.append(("--shortcuts", "shortcut policy", args.shortcuts, models.SHORTCUTS))
  for flag, what, value, choices in checks:
    try:
      models.check_choice(what, value, choices)
    except UserError as e:
      raise UserError(f"{flag}: {e}") from None
  variant = models.ARCHS.get(args.arch, ("cifar",))[0]  # a zoo arch: CIFAR
  dataset = args.dataset or _DEFAULT_DATASET[variant]
  try:
    ds = sources.get(dataset)
  except UserError as e:
    raise UserError(f"--dataset: {e}") from None
  fits = {v: [s.spelling for s in sources.SOURCES.values() if s.streamed(v) == (v == "imagenet")]
          for v in _VARIANT_NAME}
  if ds.source.spelling not in fits[variant] or (ds.source.placeholder and not ds.path):
    other = [v for v in fits if ds.source.spelling in fits[v] and v != variant]
    hint = f"; {ds.source.name} is for the {_VARIANT_NAME[other[0]]} archs" if other else ""
    raise UserError(f"--dataset={dataset} does not fit --arch={args.arch} "
                    f"({_VARIANT_NAME[variant]}{hint}); pass one of "
                    f"{', '.join(fits[variant])}.")
  return dataset


def check_source(args) -> None:
  """--from, --arch and the ResNet layouts' flags agree (UserError naming the flag)."""
  from jointrd_jax import models  # deferred: loads JAX, --help stays fast
  from jointrd_jax.deploy import zoo_import  # deferred: loads JAX, --help stays fast
  sources = " or ".join(f"--from={s}" for s in zoo_import.SOURCES)
  if not args.source:
    if args.arch in models.zoo.ZOO:
      raise UserError(f"--arch={args.arch} is a zoo arch: pass {sources} (the toolkit whose "
                      "checkpoint layout the file has).")
    return
  if args.arch in models.ARCHS and args.arch not in zoo_import.archs():
    raise UserError(f"--arch={args.arch} is an ImageNet ResNet and --from reads the CIFAR "
                    "archs' files: drop --from for a torchvision / JointRD release file, or pass "
                    "a CIFAR arch (e.g. resnet32x4).")
  for flag, what, value, choices in (("--from", "source", args.source, zoo_import.SOURCES),
                                     ("--arch", "arch", args.arch, zoo_import.archs())):
    try:
      models.check_choice(what, value, choices)
    except UserError as e:
      raise UserError(f"{flag}: {e}") from None
  for flag, value in (("--format", args.format), ("--width", args.width),
                      ("--shortcuts", args.shortcuts)):
    if value:
      raise UserError(f"{flag}={value} is for a ResNet file; --from={args.source} reads "
                      f"{args.arch} in its toolkit's layout at its reference width, with its "
                      f"own shortcuts: drop {flag}.")


def config_dict(dataset: str, num_classes: int) -> dict:
  """configs/resnet.py's config as a dict, with the dataset (and synthetic classes) set."""
  from configs import resnet  # deferred: loads JAX, --help stays fast
  from jointrd_jax.datasets import sources  # deferred: loads JAX, --help stays fast
  from jointrd_jax.training import workdir  # deferred: loads JAX, --help stays fast
  c = resnet.get_config()
  c.dataset = dataset
  if sources.get(dataset).source.name == "synthetic":
    c.synthetic.num_classes = num_classes
  return workdir.config_to_dict(c)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jointrd_jax.datasets import sources  # deferred: loads JAX, --help stays fast
  from jointrd_jax.deploy import torch_import, zoo_import  # deferred: loads JAX, --help fast
  cli.setup_logging()
  try:
    dataset = check_args(args)
    if args.source:
      net, variables, info = zoo_import.convert(
          args.checkpoint, arch=args.arch, source=args.source, which=args.which,
          num_classes=args.num_classes)
    else:
      try:
        net, variables, info = torch_import.convert(
            args.checkpoint, arch=args.arch, num_classes=args.num_classes, width=args.width,
            fmt=args.format or "auto", which=args.which, shortcuts=args.shortcuts)
      except UserError as e:  # a toolkit's file given without --from says so
        raise UserError(f"{e}{zoo_import.source_hint(args.checkpoint)}") from None
    ds = sources.get(dataset)
    names, _ = ds.source.class_names(ds.path, dataset)  # None where it names no classes
    want = len(names) if names else None
    if want is not None and info["num_classes"] != want:
      raise UserError(f"the checkpoint's head has {info['num_classes']} classes but "
                      f"--dataset={dataset} has {want}; pass the dataset it was trained on.")
    torch_import.write_run(args.out, net, variables, info,
                           config_dict=config_dict(dataset, info["num_classes"]),
                           overwrite=args.overwrite)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  ignored = f"; ignored {len(info['ignored'])} unused tensor(s)" if info["ignored"] else ""
  which = f" {info['which']}" if info["format"] == "release" else ""
  h, w, c = net.default_image_shape
  print(f"converted {info['format']}{which} {info['arch']} (width {info['width']}, "
        f"{info['num_classes']} classes, shortcuts {info['shortcuts']}, conv {info['conv']}, "
        f"images {h}x{w}x{c}, dataset {dataset}): {info['num_tensors']} tensors -> "
        f"{args.out}{ignored}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
