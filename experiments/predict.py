r"""Classify image files with an exported plain network: top-5 classes and probabilities.

  python -m experiments.predict --model=EXPORT_DIR \
      [--format=tflite|saved_model|tflite_int8|onnx|onnx_int8] \
      [--top=5] [--json] [--noverify] IMAGE [IMAGE ...]

EXPORT_DIR is what `python -m experiments.export --out=EXPORT_DIR` wrote. Each image
(JPEG, PNG, BMP, GIF, WebP, TIFF; any size; grayscale, palette and RGBA too) is resized
to the model's input as evaluation did (ImageNet-style networks: shorter side to 256,
centre crop 224; CIFAR-style: a plain resize to 32x32) and fed as uint8 to the TFLite
file (default), the SavedModel, the ONNX file or an int8 model (--quantize=int8 exports),
which normalise inside. Every file of EXPORT_DIR is first checked against its SHA256SUMS
(a modified file is refused; --noverify skips that) and every image is decoded before the
model runs, so a bad file stops the command before any output. Details:
`jointrd_jax/deploy/predict.py`. Exit status 0, or 2 with one line `error: ...` on stderr.
"""
import argparse
import json
import sys

import numpy as np

from experiments import cli
from jointrd_jax.deploy import predict
from jointrd_jax.errors import UserError


def parser() -> argparse.ArgumentParser:
  p = cli.OneLineErrorParser(
      prog="python -m experiments.predict",
      description="Classify image files with an exported model (experiments.export's "
                  "directory): the top classes of each image with their probabilities.")
  p.add_argument("images", nargs="+", metavar="IMAGE",
                 help="Image files (JPEG, PNG, ...; any size, RGB, grayscale or RGBA).")
  p.add_argument("--model", required=True, metavar="EXPORT_DIR",
                 help="The directory written by experiments.export --out. Required.")
  p.add_argument("--format", default="tflite",
                 choices=["tflite", "saved_model", "tflite_int8", "onnx", "onnx_int8"],
                 help="Which exported model runs: model.tflite, saved_model/, "
                      "model_int8.tflite, model.onnx or model_int8.onnx (default: tflite).")
  p.add_argument("--top", type=int, default=5, metavar="K",
                 help="Classes shown per image, most probable first (default: 5).")
  cli.add_bool(p, "json", False,
               "One JSON object per image and line instead of text (default: off).")
  cli.add_bool(p, "verify", True,
               "Check every file against EXPORT_DIR/SHA256SUMS first; --noverify for an "
               "export made before checksums (default: on).")
  return p


def format_text(path: str, predictions: list) -> str:
  lines = [f"{path}:"]
  for p in predictions:
    label = p["name"] if p["name"] == f"class_{p['class']}" else f"{p['name']} ({p['class']})"
    lines.append(f"  {100 * p['probability']:6.2f}%  {label}")
  return "\n".join(lines)


def main(argv=None) -> int:
  args = parser().parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  try:
    if args.top < 1:
      raise UserError(f"--top={args.top} must be at least 1.")
    model = predict.open_export(args.model, args.format, load=False,  # no TF yet: fast
                                 verify=args.verify, arg="--model")
    images = np.stack([predict.load_image(path, model.input_shape, model.preprocessing)
                       for path in args.images])
    model.load()
    results = predict.classify(model, images, top=args.top)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 2
  if not args.json:
    h, w, c = model.input_shape
    print(f"{model.path}: {model.num_classes} classes ({model.class_source}), "
          f"input {h}x{w}x{c} uint8")
  for path, predictions in zip(args.images, results):
    if args.json:
      print(json.dumps({"image": path, "model": model.path, "format": args.format,
                        "predictions": predictions}))
    else:
      print(format_text(path, predictions))
  sys.stdout.flush()
  return 0


if __name__ == "__main__":
  sys.exit(main())
