r"""Export a run's network for deployment: folded npz, TF SavedModel and TFLite, all checked.

  python -m experiments.export --workdir=RUN --out=DIR [--num_images=1000] \
      [--check_images=test|random] [--which=student] [--overwrite]

Loads the newest checkpoint of RUN, folds Dirac + BatchNorm into biased convs, checks the
folded network against the trained one (inference mode) on the check images, then writes
DIR/params.npz, DIR/saved_model/, DIR/model.tflite, DIR/labels.txt and DIR/export.json and
checks the SavedModel and the TFLite file on the same images. Check images: the first
--num_images test images of the run's dataset (an ImageNet run's validation images,
resized and centre-cropped as in evaluation; never downloads: prepare CIFAR first), or
with --check_images=random deterministic random images, when the data is not on this
machine. Any trained image size works (32x32 CIFAR, 224x224 ImageNet). The exported
models take raw uint8 NHWC images and normalise them inside;
`python -m experiments.predict --model=DIR IMAGE...` classifies image files with them. See `jointrd_jax/export.py` for the details.
Exit status 0 when every check passed; 2 with `error: ...` on stderr otherwise.

Flags use argparse (not absl), so this tool can be imported next to the trainer in tests.
"""
import sys

from experiments import cli


def parser() -> cli.OneLineErrorParser:
  p = cli.OneLineErrorParser(
      prog="python -m experiments.export",
      description="Fold a run's network, check it, and export it as params.npz, a "
                  "SavedModel and a TFLite file (uint8 images in, logits out).")
  p.add_argument("--workdir", required=True,
                 metavar="RUN", help="The run's workdir (config.json + checkpoints/). Required.")
  p.add_argument("--out", required=True, metavar="DIR",
                 help="Output directory, new or empty. Required.")
  p.add_argument("--num_images", type=int, default=1000, metavar="N",
                 help="Images the checks run on (default: 1000).")
  p.add_argument("--check_images", default="test", choices=["test", "random"],
                 help="test: the first --num_images test (ImageNet: validation) images of "
                      "the run's dataset; random: seeded random images, for data not on "
                      "this machine (default: test).")
  p.add_argument("--which", default="student", metavar="NET",
                 help="Network of the checkpoint: student or teacher (default: student).")
  cli.add_bool(p, "overwrite", False, "Replace an export already in --out (default: refuse).")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jointrd_jax.deploy import export  # pylint: disable=g-import-not-at-top
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  cli.setup_logging()
  try:
    with cli.private_tempdir("export"):
      export.export(args.workdir, args.out, num_images=args.num_images, which=args.which,
                    check=args.check_images, overwrite=args.overwrite)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
