"""INT8: full-integer post-training quantization of the folded network.

- LiteRT (`write_tflite_int8`): the TFLite converter's full-integer quantization of the
  SavedModel, weights int8 per output channel, activations int8 per tensor calibrated on
  `calibration_images` (uint8 [N, H, W, C], taken as evaluation preprocesses them); the
  model keeps the fp32 model's interface: raw uint8 images in, float32 logits out.
- ONNX (`write_onnx_int8`): ONNX Runtime's static quantization (QDQ format, int8 weights
  per channel, int8 activations) of the fp32 ONNX model, calibrated on the same images.
"""
from __future__ import annotations

import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.deploy.checks import _tf
from jointrd_jax.deploy.files import INPUT_NAME
from jointrd_jax.errors import UserError

CALIBRATION_BATCH = 8  # images per calibration call


def _batches(images: np.ndarray, batch: int = CALIBRATION_BATCH):
  for i in range(0, len(images), batch):
    yield np.ascontiguousarray(images[i:i + batch], np.uint8)


def write_tflite_int8(saved_model_dir: str, path: str, calibration_images: np.ndarray) -> int:
  """Full-integer int8 TFLite of the SavedModel; returns the file size in bytes."""
  tf = _tf()
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.optimizations = [tf.lite.Optimize.DEFAULT]
  converter.representative_dataset = lambda: ([x] for x in _batches(calibration_images))
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  converter.inference_input_type = tf.uint8  # raw images, as the fp32 model takes them
  converter.inference_output_type = tf.float32
  try:
    with tensorflow_support.stderr_silenced():
      blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"int8 TFLite conversion of {saved_model_dir} failed: "
                    f"{' '.join(str(e).split())[:300]}") from None
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def write_onnx_int8(onnx_path: str, path: str, calibration_images: np.ndarray) -> int:
  """ONNX Runtime static int8 quantization (QDQ) of `onnx_path`; returns the file size."""
  import os  # pylint: disable=g-import-not-at-top
  try:
    from onnxruntime import quantization as q  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError("the int8 ONNX export needs ONNX Runtime: pip install onnxruntime "
                    f"(import failed: {e}).") from None

  class Reader(q.CalibrationDataReader):
    def __init__(self):
      self._it = iter({INPUT_NAME: x} for x in _batches(calibration_images))

    def get_next(self):
      return next(self._it, None)

  try:
    q.quantize_static(onnx_path, path, Reader(), quant_format=q.QuantFormat.QDQ,
                      per_channel=True, activation_type=q.QuantType.QInt8,
                      weight_type=q.QuantType.QInt8)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"int8 ONNX quantization of {onnx_path} failed: "
                    f"{' '.join(str(e).split())[:300]}") from None
  return os.path.getsize(path)
