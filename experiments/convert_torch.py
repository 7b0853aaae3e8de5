r"""Convert a PyTorch CIFAR ResNet checkpoint into a run workdir.

  python -m experiments.convert_torch --checkpoint=FILE --out=RUN_DIR --arch=resnet50 \
      [--num_classes=100] [--format=auto|torchvision|release] [--which=teacher|student] \
      [--shortcuts=all|projection|none] [--width=0] [--dataset=cifar100] [--overwrite]

Reads a torchvision-style ResNet state_dict or an official JointRD release checkpoint
(`{'model_state_dict': {'module.teacher.*' / 'module.student.*'}}`), see
`jointrd_jax/torch_import.py`, and writes RUN_DIR/config.json + one checkpoint: a run
that `--config.teacher.checkpoint=RUN_DIR` of the trainer and `experiments.export` accept.
The config is configs/resnet.py's (method 'resnet') with --dataset and the imported
model's arch / width / shortcuts / Dirac mode.

Needs PyTorch (optional): pip install torch. Files are loaded with weights_only=True; a
checkpoint that would run code when unpickled is refused.
"""
import argparse
import sys

_CLASSES = {"cifar100": 100, "cifar10": 10}


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m experiments.convert_torch",
                              description=__doc__.split("\n")[0])
  p.add_argument("--checkpoint", required=True, help="The PyTorch file (.pt, .pth, .pth.tar).")
  p.add_argument("--out", required=True, help="The run workdir to write (new or empty).")
  p.add_argument("--arch", required=True, help="resnet18, resnet34, resnet50 (or resnet10/14).")
  p.add_argument("--num_classes", type=int, default=0,
                 help="Classes of the head; 0 = read it from fc.weight.")
  p.add_argument("--width", type=int, default=0, help="Stem width; 0 = read it from the stem.")
  p.add_argument("--format", default="auto", help="auto, torchvision or release.")
  p.add_argument("--which", default="teacher", help="release format: teacher or student.")
  p.add_argument("--shortcuts", default="",
                 help="all, projection or none; default: all (teacher, torchvision), "
                      "projection (release student).")
  p.add_argument("--dataset", default="cifar100",
                 help="The dataset recorded in the run's config (cifar100, cifar10, npz:PATH, "
                      "synthetic).")
  p.add_argument("--overwrite", action="store_true", help="Replace what --out holds.")
  return p.parse_args(argv)


def config_dict(dataset: str, num_classes: int) -> dict:
  """configs/resnet.py's config as a dict, with the dataset (and synthetic classes) set."""
  from configs import resnet  # pylint: disable=g-import-not-at-top
  from jointrd_jax import workdir  # pylint: disable=g-import-not-at-top
  c = resnet.get_config()
  c.dataset = dataset
  if dataset == "synthetic":
    c.synthetic.num_classes = num_classes
  return workdir.config_to_dict(c)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from absl import logging  # pylint: disable=g-import-not-at-top
  from jointrd_jax import torch_import  # pylint: disable=g-import-not-at-top
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  try:
    net, variables, info = torch_import.convert(
        args.checkpoint, arch=args.arch, num_classes=args.num_classes, width=args.width,
        fmt=args.format, which=args.which, shortcuts=args.shortcuts)
    want = _CLASSES.get(args.dataset.lower())
    if want is not None and info["num_classes"] != want:
      raise UserError(f"the checkpoint's head has {info['num_classes']} classes but "
                      f"--dataset={args.dataset} has {want}; pass the dataset it was trained on.")
    torch_import.write_run(args.out, net, variables, info,
                           config_dict=config_dict(args.dataset, info["num_classes"]),
                           overwrite=args.overwrite)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  ignored = f"; ignored {len(info['ignored'])} unused tensor(s)" if info["ignored"] else ""
  print(f"converted {info['format']} {info['which'] if info['format'] == 'release' else ''} "
        f"{info['arch']} (width {info['width']}, {info['num_classes']} classes, shortcuts "
        f"{info['shortcuts']}, dirac {info['dirac']}): {info['num_tensors']} tensors -> "
        f"{args.out}{ignored}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
