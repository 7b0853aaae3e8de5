r"""Export a run's network for deployment: folded npz, SavedModel, TFLite, ONNX (and int8).

  python -m experiments.export --workdir=RUN --out=DIR [--num_images=N] \
      [--check_images=test|random] [--which=student] [--overwrite] \
      [--quantize=none|int8] [--calibration_images=512] [--calibration_dir=IMAGES] \
      [--qat_epochs=N]

Loads the newest checkpoint of RUN, folds Dirac + BatchNorm into biased convs, checks the
folded network against the trained one (inference mode) on the check images, then writes
DIR/params.npz, DIR/saved_model/, DIR/model.tflite, DIR/model.onnx, DIR/labels.txt and
DIR/export.json and checks the SavedModel, the TFLite and the ONNX file on the same images.
With --quantize=int8 also DIR/model_int8.tflite and DIR/model_int8.onnx (full-integer
post-training quantization calibrated on --calibration_images training images, or on the
image files under --calibration_dir when the run's data is not here), whose top-1,
agreement with fp32 and largest logit error on the check images export.json records.
With --qat_epochs=N the int8 models come from the folded weights fine-tuned for N epochs
with int8 simulated (quantization-aware; `jointrd_jax/deploy/qat.py`), for students that
lose more than a point under plain post-training quantization.
The export is built in a staging folder and moved to DIR only when everything passed.
Check images: the first --num_images test images of the run's dataset (default: all of
in-memory CIFAR-sized data, 1000 of an ImageNet run's validation images, resized and
centre-cropped as in evaluation; never downloads: prepare CIFAR first), or with
--check_images=random deterministic random images, when the data is not on this
machine. Any trained image size works (32x32 CIFAR, 224x224 ImageNet). The exported
models take raw uint8 NHWC images and normalise them inside;
`python -m experiments.predict --model=DIR IMAGE...` classifies image files with them.
See `jointrd_jax/deploy/export.py` for the details.
Exit status 0 when every check passed; 2 with `error: ...` on stderr otherwise.

Flags use argparse (not absl), so this tool can be imported next to the trainer in tests.
"""
import sys

from experiments import cli
from jointrd_jax.errors import UserError


def parser() -> cli.OneLineErrorParser:
  p = cli.OneLineErrorParser(
      prog="python -m experiments.export",
      description="Fold a run's network, check it, and export it as params.npz, a "
                  "SavedModel, TFLite and ONNX files, optionally int8 (uint8 images in, "
                  "logits out).")
  p.add_argument("--workdir", required=True,
                 metavar="RUN", help="The run's workdir (config.json + checkpoints/). Required.")
  p.add_argument("--out", required=True, metavar="DIR",
                 help="Output directory, new or empty. Required.")
  p.add_argument("--num_images", type=int, default=None, metavar="N",
                 help="Images the checks run on (default: all test images of in-memory "
                      "data, 1000 of streamed data or random images).")
  p.add_argument("--check_images", default="test", choices=["test", "random"],
                 help="test: the first --num_images test (ImageNet: validation) images of "
                      "the run's dataset; random: seeded random images, for data not on "
                      "this machine (default: test).")
  p.add_argument("--which", default="student", metavar="NET",
                 help="Network of the checkpoint: student or teacher (default: student).")
  p.add_argument("--quantize", default="none", metavar="none|int8",
                 help="int8: also model_int8.tflite and model_int8.onnx, full-integer "
                      "post-training quantized (default: none).")
  p.add_argument("--calibration_images", type=int, default=512, metavar="N",
                 help="int8 calibration images: a seeded sample of the run's training "
                      "images (at least 32) (default: 512).")
  p.add_argument("--calibration_dir", default="", metavar="DIR",
                 help="Calibrate on the image files under DIR instead, e.g. when the run's "
                      "data is not on this machine (default: the training images).")
  p.add_argument("--qat_epochs", type=int, default=0, metavar="N",
                 help="With --quantize=int8: first fine-tune the folded network N epochs "
                      "with int8 simulated (quantization-aware); fp32 files stay as trained "
                      "(default: 0).")
  cli.add_bool(p, "overwrite", False, "Replace an export already in --out (default: refuse).")
  return p


def parse_args(argv):
  return parser().parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  from jointrd_jax.deploy import export  # deferred: loads JAX, --help stays fast
  cli.setup_logging()
  try:
    with cli.private_tempdir("export"):
      export.export(args.workdir, args.out, num_images=args.num_images, which=args.which,
                    check=args.check_images, overwrite=args.overwrite,
                    quantize=args.quantize, calibration_images=args.calibration_images,
                    calibration_dir=args.calibration_dir or None,
                    qat_epochs=args.qat_epochs)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
