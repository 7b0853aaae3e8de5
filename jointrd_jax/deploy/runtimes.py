"""Running an exported model file: the runtimes behind `predict` and the export's checks.

Every runtime is a callable uint8 [N, H, W, C] -> float32 logits [N, num_classes] with
`input_signature` ([-1, H, W, C]) and `input_dtype`. TensorFlow is imported on first use,
quietly and off the GPUs.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.deploy.files import INPUT_NAME, OUTPUT_NAME
from jointrd_jax.errors import UserError

BATCH_PIXELS = 32 * 224 * 224  # images per model call: 32 at 224x224, 250 (the cap) at 32x32
MAX_BATCH = 250


def tf_quiet():
  """TensorFlow (imported quietly, GPUs hidden), or a UserError saying how to install it."""
  try:
    return tensorflow_support.import_tensorflow()
  except ImportError as e:
    raise UserError("running an exported model needs TensorFlow: pip install tensorflow-cpu "
                    f"(import failed: {e}).") from None


def batch_size(image_shape) -> int:
  """Images per model call for images of `image_shape` (H, W, C): a pixel budget."""
  h, w = int(image_shape[0]), int(image_shape[1])
  return max(1, min(MAX_BATCH, BATCH_PIXELS // max(h * w, 1)))


class TFLiteModel:
  """A TFLite file run by `tf.lite.Interpreter`: uint8 [N, H, W, C] -> float32 logits.

  The input is resized per batch shape (the export keeps a dynamic batch). The
  interpreter's and XNNPACK's start-up lines ("INFO: Created TensorFlow Lite XNNPACK
  delegate for CPU.") are silenced.
  """

  def __init__(self, path: str):
    tf = tf_quiet()
    with warnings.catch_warnings(), tensorflow_support.stderr_silenced():
      warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
      self.interpreter = tf.lite.Interpreter(model_path=path)
    self._input = self.interpreter.get_input_details()[0]
    self._output = self.interpreter.get_output_details()[0]
    self._shape = None
    self.input_signature = [int(d) for d in self._input["shape_signature"]]
    self.input_dtype = np.dtype(self._input["dtype"])

  def __call__(self, images: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(images, dtype=self.input_dtype)
    if self._shape != x.shape:
      self.interpreter.resize_tensor_input(self._input["index"], x.shape)
      with tensorflow_support.stderr_silenced():  # XNNPACK's INFO line comes here
        self.interpreter.allocate_tensors()
      self._shape = x.shape
    self.interpreter.set_tensor(self._input["index"], x)
    self.interpreter.invoke()
    return np.array(self.interpreter.get_tensor(self._output["index"]))


class SavedModel:
  """The SavedModel's `serving_default` signature: uint8 `images` -> float32 `logits`."""

  def __init__(self, path: str):
    tf = tf_quiet()
    with tensorflow_support.stderr_silenced():
      self._fn = tf.saved_model.load(path).signatures["serving_default"]
    self._tf = tf
    spec = self._fn.structured_input_signature[1][INPUT_NAME]
    self.input_signature = [-1 if d is None else int(d) for d in spec.shape.as_list()]
    self.input_dtype = np.dtype(spec.dtype.as_numpy_dtype)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    x = self._tf.constant(np.asarray(images, self.input_dtype))
    return self._fn(**{INPUT_NAME: x})[OUTPUT_NAME].numpy()


def run_in_batches(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                   batch: int) -> np.ndarray:
  return np.concatenate([np.asarray(fn(images[i:i + batch]), np.float32)
                         for i in range(0, len(images), batch)], axis=0)


# ------------------------------------------------------------------ the export directory


