"""INT8: full-integer post-training quantization of the folded network, and how far the
int8 models are from the fp32 network.

- LiteRT (`write_tflite_int8`): the TFLite converter's full-integer quantization of the
  SavedModel (the batch-1 one the fp32 TFLite model comes from, see `formats`): weights
  int8 per output channel, activations int8 per tensor, ranges calibrated (min/max) on
  `calibration_images` (uint8 [N, H, W, C], taken as evaluation preprocesses them); the
  model keeps the fp32 model's interface: raw uint8 images in, float32 logits out (the
  normalisation runs inside, in int8 after one QUANTIZE).
- ONNX (`write_onnx_int8`): ONNX Runtime's static quantization (QDQ format, int8
  weights per channel, int8 activations, MinMax calibration) of the fp32 ONNX model,
  calibrated on the same images. (`quant_pre_process` is not run: on these graphs it
  changes nothing measurable and costs ~8 s.) Weights are 7-bit (`reduce_range`, integers
  in [-64, 64]): on x86 CPUs without VNNI (AVX2, e.g. AMD Zen 2/3) ONNX Runtime runs the
  int8 Conv/Gemm as uint8 x int8 with VPMADDUBSW, which adds two products into a SATURATING
  int16; 2 * 255 * 127 overflows it, 2 * 255 * 64 = 32640 does not. With 8-bit weights
  the tiny test network's logits were off by 0.20 there (0.009 when the same model runs
  without the int8 kernels); with 7-bit weights by 0.019 on every CPU (ORT's own
  `quantize_static` guidance: reduce_range=True for x86 without VNNI).
- `int8_report`: export.json's record of one int8 model against the fp32 network.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.deploy import formats, runtimes
from jointrd_jax.deploy.files import INPUT_NAME
from jointrd_jax.errors import UserError

CALIBRATION_BATCH = 8  # images per calibration call of a model with a dynamic batch
# Fewer calibration images than this are refused: min/max calibration sets each tensor's
# range from the extremes it sees, so a handful of images miss the tails of other images.
# Measured on a trained resnet10 (width 8, README "INT8"): the largest logit error on
# the test images is 2.3-6.8 with 8-32 images, 2.0-2.6 with 64-128 and 1.1-1.7 with 512
# (three seeds each; max |logit| 17.6), top-1 agreement 98-99 % throughout. 32 is a
# floor against accidental tiny sets; the default is 512.
MIN_CALIBRATION_IMAGES = 32
DROP_WARNING_POINTS = 1.0  # a larger top-1 drop (or share of changed predictions) warns


def _batches(images: np.ndarray, batch: int = CALIBRATION_BATCH):
  for i in range(0, len(images), batch):
    yield np.ascontiguousarray(images[i:i + batch], np.uint8)


def _saved_model_batch(saved_model_dir: str) -> int | None:
  """The static batch size of the SavedModel's `serving_default` input (None: dynamic)."""
  tf = runtimes.tf_quiet()
  with tensorflow_support.stderr_silenced():
    fn = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
  return fn.structured_input_signature[1][INPUT_NAME].shape.as_list()[0]


def write_tflite_int8(saved_model_dir: str, path: str, calibration_images: np.ndarray,
                      batch: int | None = None) -> int:
  """Full-integer int8 TFLite of the SavedModel; returns the file size in bytes.
  `batch`: the SavedModel's static batch size (None: read from its signature)."""
  tf = runtimes.tf_quiet()
  if batch is None:
    batch = _saved_model_batch(saved_model_dir) or CALIBRATION_BATCH
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = lambda: ([x] for x in _batches(calibration_images,
                                                                     int(batch)))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.uint8  # raw images, as the fp32 model takes them
  converter.inference_output_type = tf.float32
  try:
    with tensorflow_support.stderr_silenced():
      blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise formats.conversion_error("int8 TFLite conversion", e) from None
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def write_onnx_int8(onnx_path: str, path: str, calibration_images: np.ndarray) -> int:
  """ONNX Runtime static int8 quantization (QDQ) of `onnx_path`; returns the file size."""
  try:
    from onnxruntime import quantization as q  # onnxruntime: imported where needed
  except ImportError as e:
    raise UserError("the int8 ONNX export needs ONNX Runtime: pip install onnxruntime "
                    f"(import failed: {e}).") from None

  class Reader(q.CalibrationDataReader):
    def __init__(self):
      self._it = iter({INPUT_NAME: x} for x in _batches(calibration_images))

    def get_next(self):
      return next(self._it, None)

  logging.disable(logging.WARNING)  # its "consider pre-processing" lines
  try:
    # reduce_range: 7-bit weights, which ORT's int8 kernels cannot saturate (module doc).
    q.quantize_static(onnx_path, path, Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, reduce_range=True, activation_type=q.QuantType.QInt8,
                      weight_type=q.QuantType.QInt8)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"int8 ONNX quantization of {onnx_path} failed: "
                    f"{' '.join(str(e).split())[:300]}") from None
  finally:
    logging.disable(logging.NOTSET)
  return os.path.getsize(path)


def int8_report(file: str, nbytes: int, seconds: float, reference: np.ndarray,
                logits: np.ndarray, labels: np.ndarray | None) -> dict:
  """export.json's record of an int8 model: its logits on the check images against the
  trained network's fp32 `reference` logits (and the labels, when there are labels)."""
  reference = np.asarray(reference, np.float32)
  logits = np.asarray(logits, np.float32)
  fp32_top1, int8_top1 = reference.argmax(-1), logits.argmax(-1)
  agreement = float(np.mean(fp32_top1 == int8_top1))
  r = {"file": file, "bytes": int(nbytes), "num_images": int(len(reference)),
       "top1_fp32": None, "top1_int8": None, "top1_drop_points": None,
       "agreement": agreement,
       "max_abs_logit_error": float(np.max(np.abs(logits - reference))),
       "max_abs_logit": float(np.max(np.abs(reference))),
       "seconds": float(seconds), "warning": None}
  if labels is not None:
    r["top1_fp32"] = float(np.mean(fp32_top1 == labels))
    r["top1_int8"] = float(np.mean(int8_top1 == labels))
    r["top1_drop_points"] = 100.0 * (r["top1_fp32"] - r["top1_int8"])
    if r["top1_drop_points"] > DROP_WARNING_POINTS:
      r["warning"] = (f"{file} top-1 drops by {r['top1_drop_points']:.2f} points "
                      f"({100 * r['top1_fp32']:.2f}% fp32 -> {100 * r['top1_int8']:.2f}% "
                      f"int8)")
  elif 100.0 * (1.0 - agreement) > DROP_WARNING_POINTS:
    r["warning"] = (f"{file} changes the top-1 prediction of {100 * (1 - agreement):.2f}% "
                    "of the (unlabelled) check images")
  return r
