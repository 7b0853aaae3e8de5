"""The exported formats: writing each file and running it on images.

- `params.npz`: the folded parameters, flat keys (`save_npz` / `load_npz`);
- `saved_model/`: jax2tf (native serialization) of uint8 images -> logits, the
  normalisation inside (`write_saved_model`);
- `model.tflite`: the TFLite converter's builtin ops (`write_tflite`) of the network
  lowered at a static batch of 1 (`write_saved_model(..., batch=1)`, see "Why a static
  batch" below); LiteRT resizes it to any batch at run time;
- `model.onnx`: tf2onnx of that TFLite model, its batch dimension made symbolic
  (`write_onnx`).

Why a static batch: with jax2tf's symbolic batch ("b") every bias, ReLU zero and
normalisation constant is broadcast to the dynamic shape in StableHLO, which the TFLite
converter lowers to SHAPE / CONCATENATION / BROADCAST_TO + a separate ADD / MAXIMUM per
layer: the bias and ReLU are not fused into CONV_2D, the graph has ~4x the ops, and the
ops XNNPACK does not take split its delegated graph (14 partitions for int8 resnet10).
Lowered at batch 1 the converter fuses bias + ReLU into CONV_2D, folds the mean's 1/HW
into the dense layer, and the whole int8 network is one XNNPACK partition; the model has
no op that depends on the batch size, so the interpreter resizes its input to any batch.
The SavedModel keeps the symbolic batch (TensorFlow runs it as one XLA computation).
"""
from __future__ import annotations

import re

import numpy as np

from jointrd_jax import datasets, models, tensorflow_support
from jointrd_jax.deploy import runtimes
from jointrd_jax.deploy.checks import in_batches
from jointrd_jax.deploy.files import INPUT_NAME, OUTPUT_NAME
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold


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
                      image_shape, batch: int | None = None) -> None:
  """SavedModel: uint8 `images` [b, H, W, C] -> float32 `logits` [b, C] (see module doc);
  `batch`: None for a symbolic batch dimension, else that static batch size (the TFLite
  models are converted from a batch-1 SavedModel)."""
  tf = runtimes.tf_quiet()
  from jax.experimental import jax2tf  # jax2tf imports TensorFlow
  mean = np.asarray(mean, np.float32)
  std = np.asarray(std, np.float32)
  h, w, c = (int(d) for d in image_shape)

  def infer(params, images):
    x = datasets.normalize(images, mean, std)
    logits, _ = folded_net.apply({"params": params}, x, train=False)
    return logits

  shapes = [None, f"(b, {h}, {w}, {c})"] if batch is None else None
  tf_fn = jax2tf.convert(infer, polymorphic_shapes=shapes,
                         with_gradient=False, native_serialization_platforms=("cpu",))
  module = tf.Module()
  module.params = tf.nest.map_structure(
      lambda p: tf.Variable(np.asarray(p, np.float32), trainable=False), _plain(params))

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None if batch is None else int(batch), h, w, c], tf.uint8,
                    name=INPUT_NAME)])
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
  return in_batches(runtimes.SavedModel(path), images)


def conversion_error(what: str, e: Exception) -> UserError:
  """One line for a failed conversion, naming the ops the converter could not take."""
  text = " ".join(str(e).split())
  ops = sorted(set(re.findall(r"'((?:tfl|tf|stablehlo|mhlo|chlo|vhlo)\.[\w.]+)' op", text)))
  detail = f"unsupported op(s) {', '.join(ops)}" if ops else text[:300]
  return UserError(f"{what} failed: {detail}; the network holds an op LiteRT/ONNX cannot "
                   "express as a builtin (see jointrd_jax/deploy/formats.py).")


def write_tflite(saved_model_dir: str, path: str) -> int:
  """Converts the SavedModel to TFLite builtins; returns the file size in bytes."""
  tf = runtimes.tf_quiet()
  converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
  converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
  try:
    with tensorflow_support.stderr_silenced():  # the converter's C++ log lines
      blob = converter.convert()
  except Exception as e:  # pylint: disable=broad-except
    raise conversion_error("TFLite conversion", e) from None
  with open(path, "wb") as f:
    f.write(blob)
  return len(blob)


def run_tflite(path: str, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """Logits of the TFLite model at `path` (tf.lite.Interpreter, resized per batch)."""
  return in_batches(runtimes.TFLiteModel(path), images, batch)



# ------------------------------------------------------------------ ONNX


def _rename_io(model, input_name: str, output_name: str) -> None:
  """The graph's single input/output renamed (tf2onnx keeps TFLite's tensor names)."""
  renames = {model.graph.input[0].name: input_name, model.graph.output[0].name: output_name}
  for node in model.graph.node:
    node.input[:] = [renames.get(n, n) for n in node.input]
    node.output[:] = [renames.get(n, n) for n in node.output]
  model.graph.input[0].name = input_name
  model.graph.output[0].name = output_name


def _symbolic_batch(model) -> None:
  """The input's and output's batch dimension made symbolic ('batch'). A batch-1 TFLite
  model's graph depends on its batch in one way only: constant shapes and slice bounds
  that hold the batch (1) as their first entry (a channel shuffle's reshapes, a channel
  split's slices); `_any_batch` rewrites those (checked at any batch by the export)."""
  for value in (model.graph.input[0], model.graph.output[0]):
    dim = value.type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = "batch"
  del model.graph.value_info[:]  # intermediate shapes inferred for batch 1
  _any_batch(model)


def _any_batch(model) -> None:
  """A Reshape's target shape [1, ...] of a computed tensor becomes [0, ...] (ONNX: "the
  input's batch"); a Slice of a computed tensor from 0 to 1 on axis 0 (all of batch 1)
  ends at the largest int64 instead (all of any batch). Each rewritten constant is a new
  copy: tf2onnx shares one constant between ops."""
  from onnx import numpy_helper  # ONNX: imported where needed
  constants = {t.name: t for t in model.graph.initializer}

  def value(node, i):
    name = node.input[i] if len(node.input) > i else ""
    return numpy_helper.to_array(constants[name]) if name in constants else None

  def replace(node, i, array):
    name = f"{node.input[i]}__any_batch_{node.name}"
    model.graph.initializer.append(numpy_helper.from_array(array, name))
    node.input[i] = name

  for node in model.graph.node:
    if not node.input or node.input[0] in constants:
      continue
    if node.op_type == "Reshape":
      shape = value(node, 1)
      if shape is not None and shape.ndim == 1 and len(shape) > 1 and shape[0] == 1:
        replace(node, 1, np.concatenate([[0], shape[1:]]).astype(shape.dtype))
    elif node.op_type == "Slice":
      starts, ends, axes, steps = (value(node, i) for i in (1, 2, 3, 4))
      if starts is None or ends is None or (len(node.input) > 3 and node.input[3]
                                            and axes is None):
        continue
      axes = np.arange(len(starts)) if axes is None else axes
      k = np.flatnonzero(axes == 0)
      if k.size and starts[k[0]] == 0 and ends[k[0]] == 1 and (
          steps is None or steps[k[0]] == 1):
        ends = ends.copy()
        ends[k[0]] = np.iinfo(ends.dtype).max
        replace(node, 2, ends)


def _unknown_ops(model) -> list:
  import onnx  # ONNX: imported where needed
  return sorted({n.op_type for n in model.graph.node
                 if n.domain not in ("", "ai.onnx") or not onnx.defs.has(n.op_type)})


def write_onnx(tflite_path: str, path: str, opset: int = 17) -> int:
  """ONNX of the fp32 TFLite model through tf2onnx (`from_tflite`): the same builtin-op
  graph, uint8 `images` [batch, H, W, C] -> float32 `logits`; returns the file size.

  Why tf2onnx from the TFLite model: tf2onnx cannot read the SavedModel (jax2tf puts the
  whole network in one XlaCallModule op), and jax2onnx pins orbax-checkpoint below our
  checkpoint library's version; the TFLite model is the converter's clean builtin graph."""
  try:
    import onnx  # ONNX: imported where needed
    from tf2onnx import convert  # tf2onnx: imported where needed
  except ImportError as e:
    raise UserError(f"the ONNX export needs tf2onnx and onnx: pip install tf2onnx onnx "
                    f"(import failed: {e}).") from None
  try:
    with tensorflow_support.stderr_silenced():
      model, _ = convert.from_tflite(tflite_path, opset=opset)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"ONNX conversion of {tflite_path} failed: "
                    f"{' '.join(str(e).split())[:300]}") from None
  unknown = _unknown_ops(model)
  if unknown:
    raise UserError(f"ONNX conversion of {tflite_path} failed: tf2onnx left op(s) "
                    f"{', '.join(unknown)} that ONNX does not define.")
  _rename_io(model, INPUT_NAME, OUTPUT_NAME)
  dims = model.graph.input[0].type.tensor_type.shape.dim
  if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
    _symbolic_batch(model)
  onnx.save(model, path)
  return len(model.SerializeToString())


def run_onnx(path: str, images: np.ndarray, batch: int | None = None) -> np.ndarray:
  """Logits of the ONNX model at `path` (ONNX Runtime, CPU)."""
  return in_batches(runtimes.OnnxModel(path), images, batch)
