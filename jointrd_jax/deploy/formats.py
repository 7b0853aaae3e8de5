"""The exported formats: writing each file and running it on images.

- `params.npz`: the folded parameters, flat keys (`save_npz` / `load_npz`);
- `saved_model/`: jax2tf (native serialization) of uint8 images -> logits, the
  normalisation inside (`write_saved_model`);
- `model.tflite`: the SavedModel through the TFLite converter, builtin ops only
  (`write_tflite`).
"""
from __future__ import annotations

import numpy as np

from jointrd_jax import models, tensorflow_support
from jointrd_jax.deploy import runtimes
from jointrd_jax.deploy.checks import _in_batches, _tf
from jointrd_jax.deploy.files import INPUT_NAME, OUTPUT_NAME
from jointrd_jax.models import fold
from jointrd_jax.errors import UserError


# ------------------------------------------------------------------ npz


def save_npz(path: str, params) -> None:
  np.savez(path, **fold.to_numpy(params))


def load_npz(path: str) -> dict:
  """The nested params tree of a `params.npz` written by `save_npz`."""
  tree: dict = {}
  with np.load(path, allow_pickle=False) as f:
    for key in f.files:
      node = tree
      *parents, leaf = key.split("/")
      for p in parents:
        node = node.setdefault(p, {})
      node[leaf] = f[key]
  return tree


# ------------------------------------------------------------------ TF exports


def write_saved_model(path: str, folded_net: models.ResNet, params, mean, std,
                      image_shape) -> None:
  """SavedModel: uint8 `images` [b, H, W, C] -> float32 `logits` [b, C] (see module doc)."""
  tf = _tf()
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  from jointrd_jax import datasets  # pylint: disable=g-import-not-at-top
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  h, w, c = (int(d) for d in image_shape)

  def infer(params, images):
    x = datasets.normalize(images, mean, std)
    logits, _ = folded_net.apply({"params": params}, x, train=False)
    return logits

  tf_fn = jax2tf.convert(infer, polymorphic_shapes=[None, f"(b, {h}, {w}, {c})"],
                         with_gradient=False, native_serialization_platforms=("cpu",))
  module = tf.Module()
  module.params = tf.nest.map_structure(
      lambda p: tf.Variable(np.asarray(p, np.float32), trainable=False), _plain(params))

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, h, w, c], tf.uint8, name=INPUT_NAME)])
  def serve(images):
    return {OUTPUT_NAME: tf_fn(module.params, images)}

  module.serve = serve
  with tensorflow_support.stderr_silenced():
    tf.saved_model.save(module, path, signatures={"serving_default": serve})


def _plain(tree):
  if hasattr(tree, "items"):
    return {k: _plain(v) for k, v in tree.items()}
  return tree


def run_saved_model(path: str, images: np.ndarray) -> np.ndarray:
  """Logits of the SavedModel at `path` (its `serving_default` signature)."""
  return _in_batches(runtimes.SavedModel(path), images)


def write_tflite(saved_model_dir: str, path: str) -> int:
  """Converts the SavedModel to TFLite builtins; returns the file size in bytes."""
  tf = _tf()
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    with tensorflow_support.stderr_silenced():  # the converter's C++ log lines
      blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeError(f"TFLite conversion of {saved_model_dir} failed: {e}") from e
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def run_tflite(path: str, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """Logits of the TFLite model at `path` (tf.lite.Interpreter, resized per batch)."""
  return _in_batches(runtimes.TFLiteModel(path), images, batch)



# ------------------------------------------------------------------ ONNX


def _rename_io(model, input_name: str, output_name: str) -> None:
  """The graph's single input/output renamed (tf2onnx keeps TFLite's tensor names)."""
  renames = {model.graph.input[0].name: input_name, model.graph.output[0].name: output_name}
  for node in model.graph.node:
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]
  model.graph.input[0].name = input_name
  model.graph.output[0].name = output_name


def write_onnx(tflite_path: str, path: str, opset: int = 17) -> int:
  """ONNX of the fp32 TFLite model through tf2onnx (`from_tflite`): the same builtin-op
  graph, uint8 `images` [b, H, W, C] -> float32 `logits`; returns the file size."""
  try:
    import onnx  # pylint: disable=g-import-not-at-top
    from tf2onnx import convert  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise UserError(f"the ONNX export needs tf2onnx and onnx: pip install tf2onnx onnx "
                    f"(import failed: {e}).") from None
  try:
    with tensorflow_support.stderr_silenced():
      model, _ = convert.from_tflite(tflite_path, opset=opset)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"ONNX conversion of {tflite_path} failed: "
                    f"{' '.join(str(e).split())[:300]}") from None
  _rename_io(model, INPUT_NAME, OUTPUT_NAME)
  onnx.save(model, path)
  return len(model.SerializeToString())


def run_onnx(path: str, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """Logits of the ONNX model at `path` (ONNX Runtime, CPU)."""
  return _in_batches(runtimes.OnnxModel(path), images, batch)
