"""Running an exported model file: the runtimes behind `predict` and the export's checks.

Every runtime is a callable uint8 [N, H, W, C] -> float32 logits [N, num_classes] with
`input_signature` ([-1, H, W, C]) and `input_dtype`. TensorFlow is imported on first use,
quietly and off the GPUs.
"""
from __future__ import annotations

import sys
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


def _litert_interpreter(fallback: bool):
  """LiteRT's interpreter class (`ai-edge-litert`) and the name of its module; when that
  cannot be imported, the deprecated `tf.lite` one with `fallback` (saying so on stderr),
  else a UserError."""
  try:
    from ai_edge_litert import interpreter  # LiteRT: imported where needed
    return interpreter.Interpreter, "ai_edge_litert"
  except ImportError as e:
    why = (f"LiteRT's interpreter (ai_edge_litert) cannot be imported here "
           f"({type(e).__name__}: {' '.join(str(e).split())[:160]})")
    if not fallback:
      raise UserError(f"{why}: pip install ai-edge-litert (tf.lite's interpreter does not "
                      "stand in for it).") from None
    print(f"warning: {why}; running the TFLite model with tf.lite's deprecated interpreter "
          "instead (pip install ai-edge-litert to use LiteRT's).", file=sys.stderr, flush=True)
    tf = tf_quiet()
    return tf.lite.Interpreter, "tf.lite"


class TFLiteModel:
  """A TFLite (LiteRT) file: uint8 [N, H, W, C] -> float32 logits, run by the LiteRT
  interpreter (`ai_edge_litert`, XNNPACK CPU delegate; `tf.lite.Interpreter` when that
  cannot be imported and `fallback`, else a UserError naming the install); `runtime` names
  the module used. `threads`: the interpreter's thread count (None: its default).

  The input is resized per batch shape (the exported models are lowered at batch 1 and
  hold no batch-dependent op, see `formats`). An input or output the model declares
  quantized (int8/uint8 with a nonzero scale) is quantized/dequantized here with the
  model's own (scale, zero point): q = clip(round(pixel / scale) + zero_point); the
  exported models, int8 ones included, take raw uint8 images (no scale) and return
  float32 logits, so nothing is converted for them. The interpreter's and XNNPACK's
  start-up lines are silenced.
  """

  def __init__(self, path: str, threads: int | None = None, fallback: bool = True):
    cls, self.runtime = _litert_interpreter(fallback)
    self.path = path
    with warnings.catch_warnings(), tensorflow_support.stderr_silenced():
      warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
      self.interpreter = cls(model_path=path, num_threads=threads)
    self._input = self.interpreter.get_input_details()[0]
    self._output = self.interpreter.get_output_details()[0]
    self._shape = None
    self.input_signature = [int(d) for d in self._input["shape_signature"]]
    self.input_dtype = np.dtype(self._input["dtype"])

  def _quantized_input(self, images: np.ndarray) -> np.ndarray:
    scale, zero = self._input.get("quantization", (0.0, 0))
    if not scale or self.input_dtype.kind not in "iu":
      return np.ascontiguousarray(images, dtype=self.input_dtype)
    info = np.iinfo(self.input_dtype)  # e.g. an int8 input: q = round(x / scale) + zero
    q = np.round(np.asarray(images, np.float32) / scale) + zero
    return np.ascontiguousarray(np.clip(q, info.min, info.max), dtype=self.input_dtype)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    x = self._quantized_input(images)
    if self._shape != x.shape:
      self.interpreter.resize_tensor_input(self._input["index"], x.shape)
      try:
        with tensorflow_support.stderr_silenced():  # XNNPACK's INFO line comes here
          self.interpreter.allocate_tensors()
      except RuntimeError as e:  # e.g. XNNPACK refusing an op or a quantization
        raise UserError(f"LiteRT cannot prepare {self.path}: {' '.join(str(e).split())[:200]} "
                        "(an export made before 2026-12-03 of an ImageNet-variant int8 model: "
                        "export it again; else try the ONNX model).") from None
      self._shape = x.shape
    self.interpreter.set_tensor(self._input["index"], x)
    self.interpreter.invoke()
    y = np.array(self.interpreter.get_tensor(self._output["index"]))
    scale, zero = self._output.get("quantization", (0.0, 0))
    if y.dtype != np.float32 and scale:
      y = (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


class OnnxModel:
  """An ONNX file run by ONNX Runtime (CPU): uint8 [N, H, W, C] -> float32 logits.
  `threads`: intra-op threads (None: ONNX Runtime's default, all cores)."""

  def __init__(self, path: str, threads: int | None = None):
    try:
      import onnxruntime as ort  # onnxruntime: imported where needed
    except ImportError as e:
      raise UserError("running an ONNX model needs ONNX Runtime: pip install onnxruntime "
                      f"(import failed: {e}).") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    if threads:
      options.intra_op_num_threads = int(threads)
      options.inter_op_num_threads = 1
    self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    self.runtime = "onnxruntime"
    inp = self.session.get_inputs()[0]
    self._input_name = inp.name
    self.input_signature = [d if isinstance(d, int) else -1 for d in inp.shape]
    self.input_dtype = np.dtype({"tensor(uint8)": np.uint8, "tensor(float)": np.float32,
                                 "tensor(int8)": np.int8}.get(inp.type, np.float32))

  def __call__(self, images: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(images, dtype=self.input_dtype)
    return np.asarray(self.session.run(None, {self._input_name: x})[0], np.float32)


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


def check_images(images, input_shape) -> None:
  """A UserError saying what is wrong unless `images` is a non-empty uint8 array
  [N, H, W, C] of the model's `input_shape` (H, W, C)."""
  x = np.asarray(images)
  h, w, c = (int(d) for d in input_shape)
  want = f"expected uint8 images of shape (N, {h}, {w}, {c})"
  got = f"got {x.dtype} {tuple(x.shape)}"
  if x.dtype != np.uint8:
    raise UserError(f"{want} (raw 0..255 pixels; the model normalises inside), {got}.")
  if x.ndim != 4:
    fix = ("add the batch axis (images[None] for one image)" if x.ndim == 3
           else "stack the images into one array")
    raise UserError(f"{want}, {got}: {fix}.")
  if x.shape[-1] != c:
    raise UserError(f"{want}, {got}: the model takes {c}-channel images "
                    f"(predict.load_image converts any image file to them).")
  if tuple(x.shape[1:3]) != (h, w):
    raise UserError(f"{want}, {got}: resize them to {h}x{w} (predict.load_image).")
  if not len(x):
    raise UserError(f"{want}, {got}: no images.")


def run_in_batches(fn: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
                   batch: int) -> np.ndarray:
  return np.concatenate([np.asarray(fn(images[i:i + batch]), np.float32)
                         for i in range(0, len(images), batch)], axis=0)


# ------------------------------------------------------------------ the export directory


