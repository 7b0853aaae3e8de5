r"""Export a run's network for deployment: folded npz, TF SavedModel and TFLite, all checked.

  python -m experiments.export --workdir=RUN --out=DIR [--num_images=1000] \
      [--which=student] [--overwrite]

Loads the newest checkpoint of RUN, folds Dirac + BatchNorm into biased convs, checks the
folded network against the trained one (inference mode) on the first --num_images test
images of the run's dataset (never downloads; prepare CIFAR first), then writes
DIR/params.npz, DIR/saved_model/, DIR/model.tflite and DIR/export.json and checks the
SavedModel and the TFLite file on the same images. The exported models take raw uint8
NHWC images and normalise them inside. See `jointrd_jax/export.py` for the details.
Exit status 0 when every check passed; 2 with `error: ...` on stderr otherwise.

Flags use argparse (not absl), so this tool can be imported next to the trainer in tests.
"""
import argparse
import sys


def parse_args(argv):
  p = argparse.ArgumentParser(prog="python -m experiments.export", description=__doc__.split("\n")[0])
  p.add_argument("--workdir", required=True, help="The run's workdir (config.json + checkpoints/).")
  p.add_argument("--out", required=True, help="Output directory (new or empty).")
  p.add_argument("--num_images", type=int, default=1000,
                 help="Test images for the checks (the first N of the test split).")
  p.add_argument("--which", default="student", help="Network of the checkpoint: student or teacher.")
  p.add_argument("--overwrite", action="store_true", help="Replace an export already in --out.")
  return p.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jointrd_jax import export  # pylint: disable=g-import-not-at-top
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.WARNING)
  try:
    export.export(args.workdir, args.out, num_images=args.num_images, which=args.which,
                  overwrite=args.overwrite)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
