"""INT8 and ONNX exports: the int8 models agree with fp32 within a bound derived from their
own quantization parameters (tests/int8_bounds.py), the fp32 ONNX model within the
export's fp32 tolerance, export.json's int8 record matches the models run here, the
drop warning is one line, and every bad input is one line that leaves no output folder."""
import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import export as export_cli
from experiments import predict as predict_cli
from jointrd_jax import datasets
from jointrd_jax.deploy import calibration, checks, export, formats, package, quantize
from jointrd_jax.errors import UserError
from jointrd_jax.models.zoo import shufflenet
from tests import int8_bounds
from export_helpers import check_data, make_imagenet_run, make_run

TINY_SHAPE = (8, 8, 3)


class TinyNet(nn.Module):
  """Normalised images -> conv 3x3 (+bias, ReLU) -> global mean -> dense: the network the
  error bound is written for, with the export's calling convention."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)))(x))
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2))), ()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """The tiny network through the export's writers: batch-1 SavedModel, fp32 and int8
  TFLite, fp32 and int8 ONNX, calibrated on the images the bound is checked on."""
  base = tmp_path_factory.mktemp("tiny")
  net = TinyNet()
  params = net.init(jax.random.key(0), jnp.zeros((1, *TINY_SHAPE)))["params"]
  rng = np.random.default_rng(0)  # non-zero biases, so that their quantization counts
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: (rng.normal(0, 0.2, p.shape).astype(np.float32)
                       if path[-1].key == "bias" else np.asarray(p)), params)
  images = checks.random_images(64, TINY_SHAPE, seed=3)
  mean, std = np.float32([0.4, 0.5, 0.6]), np.float32([0.2, 0.25, 0.3])
  sm = str(base / "sm")
  formats.write_saved_model(sm, net, params, mean, std, TINY_SHAPE, batch=1)
  paths = {k: str(base / k) for k in ("fp32.tflite", "int8.tflite", "fp32.onnx", "int8.onnx")}
  formats.write_tflite(sm, paths["fp32.tflite"])
  quantize.write_tflite_int8(sm, paths["int8.tflite"], images, batch=1)
  formats.write_onnx(paths["fp32.tflite"], paths["fp32.onnx"])
  quantize.write_onnx_int8(paths["fp32.onnx"], paths["int8.onnx"], images)
  fp32 = np.asarray(net.apply({"params": params}, datasets.normalize(images, mean, std))[0])
  return dict(base=base, sm=sm, paths=paths, images=images, fp32=fp32, params=params,
              mean=mean, std=std)


def litert(path):
  from ai_edge_litert import interpreter  # pylint: disable=g-import-not-at-top
  return interpreter.Interpreter(model_path=path, num_threads=1)


def run_litert(path, images):
  """The LiteRT model run here image by image (its batch-1 input), int8 I/O handled."""
  it = litert(path)
  it.allocate_tensors()
  inp, out = it.get_input_details()[0], it.get_output_details()[0]
  assert inp["dtype"] == np.uint8 and out["dtype"] == np.float32  # raw images in, logits out
  rows = []
  for x in images:
    it.set_tensor(inp["index"], x[None])
    it.invoke()
    rows.append(np.array(it.get_tensor(out["index"])[0]))
  return np.stack(rows)


def run_ort(path, images, batch=None):
  import onnxruntime as ort  # pylint: disable=g-import-not-at-top
  session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
  batch = batch or len(images)
  return np.concatenate([session.run(None, {"images": images[i:i + batch]})[0]
                         for i in range(0, len(images), batch)])


def test_int8_models_agree_with_fp32_within_the_derived_bound(tiny):
  """|int8 - fp32| per image and logit within the first-order bound read from each
  model's scales (tests/int8_bounds.py). The bound, all rounding errors at their worst
  and aligned, is ~20x the typical error here, but below the logits' own size: an int8
  model that clips (calibrated on other images), mis-scales or drops a bias fails."""
  import onnx  # pylint: disable=g-import-not-at-top
  fp32 = tiny["fp32"]
  consts = int8_bounds.fp32_constants(tiny["params"], tiny["mean"], tiny["std"],
                                      TINY_SHAPE[0] * TINY_SHAPE[1])
  # The fp32 reference ran in fp32: within the export's fp32 tolerance of exact arithmetic.
  slack = checks.RTOL * np.abs(fp32).max()
  it = litert(tiny["paths"]["int8.tflite"])
  it.allocate_tensors()
  scales = {"int8.tflite": int8_bounds.tflite_scales(it),
            "int8.onnx": int8_bounds.onnx_scales(onnx.load(tiny["paths"]["int8.onnx"]))}
  got = {"int8.tflite": run_litert(tiny["paths"]["int8.tflite"], tiny["images"]),
         "int8.onnx": run_ort(tiny["paths"]["int8.onnx"], tiny["images"])}
  for name, logits in got.items():
    b = int8_bounds.bound(consts, TINY_SHAPE, *scales[name], tiny["images"])
    err = np.abs(logits - fp32)
    assert err.max() > 0 and (err <= b + slack).all(), (name, (err - b).max())
    assert b.max() < 0.5 * np.abs(fp32).max(), (name, b.max(), np.abs(fp32).max())


def test_int8_onnx_weights_cannot_saturate_the_int8_kernels(tiny):
  """ONNX Runtime runs an int8 Conv/Gemm on x86 without VNNI (AVX2) as uint8 activations
  x int8 weights with VPMADDUBSW, whose int16 sum of two products saturates beyond 32767:
  every weight integer of a Conv/Gemm is within [-64, 64] (2 * 255 * 64 = 32640), so the
  int8 kernels compute what the QDQ graph says on every CPU (with 8-bit weights the tiny
  network's logits were off by 0.20 on an AVX2 AMD EPYC, 0.009 without the int8 kernels)."""
  import onnx  # pylint: disable=g-import-not-at-top
  from onnx import numpy_helper  # pylint: disable=g-import-not-at-top
  model = onnx.load(tiny["paths"]["int8.onnx"])
  init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
  dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
  weights = [init[dq[n.input[1]]] for n in model.graph.node
             if n.op_type in ("Conv", "Gemm", "MatMul")]
  assert len(weights) == 2 and all(w.dtype == np.int8 for w in weights), weights
  assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) == 64


def test_int8_litert_model_of_the_imagenet_variant_runs(tmp_path):
  """The ImageNet stem's max pool: in the folded network a zero-padded pool of the ReLU's
  output (`models.relu_max_pool`), so no -inf pad constant enters the stem's int8 range
  (it did, scale ~1e36, and XNNPACK refused the model). Every activation scale stays
  below 1/8 of the fp32 activations' size (a step is 1/255 of a range), the model runs under LiteRT
  at batch 1 and 5, and its logits are those of the fp32 network up to int8 rounding."""
  from jointrd_jax import models  # pylint: disable=g-import-not-at-top
  from jointrd_jax.deploy import runtimes  # pylint: disable=g-import-not-at-top
  from jointrd_jax.models import fold  # pylint: disable=g-import-not-at-top
  net, variables = make_imagenet_run(tmp_path / "run", num_classes=10, image_size=64)
  folded_net, folded = fold.fold(net, variables)
  images = checks.random_images(40, (64, 64, 3), seed=5)
  mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
  sm, path = str(tmp_path / "sm"), str(tmp_path / "int8.tflite")
  formats.write_saved_model(sm, folded_net, folded["params"], mean, std, (64, 64, 3), batch=1)
  quantize.write_tflite_int8(sm, path, images[:32], batch=1)
  it = litert(path)
  it.allocate_tensors()
  ops = [o["op_name"] for o in it._get_ops_details()]  # pylint: disable=protected-access
  assert "PADV2" not in ops and "MAX_POOL_2D" in ops, ops
  scales = [float(np.max(t["quantization_parameters"]["scales"]))
            for t in it.get_tensor_details() if len(t["quantization_parameters"]["scales"])]
  logits, feats = folded_net.apply(folded, datasets.normalize(images, mean, std))
  fp32 = np.asarray(logits)
  # One int8 step is 1/255 of a tensor's range; the activations here reach ~this size:
  size = max(float(np.abs(f).max()) for f in (fp32, *feats))
  assert max(scales) < size / 8, (max(scales), size)
  model = runtimes.TFLiteModel(path)
  got = np.concatenate([model(images[:1]), model(images[1:6]), model(images[6:])])
  err = np.abs(got - fp32)
  assert got.shape == fp32.shape and err.max() > 0
  # 256 activation steps over the stem's range, ~10 layers: a broken model is off by the
  # logits' own size; int8 rounding stays well inside a quarter of it.
  assert err.max() < 0.25 * np.abs(fp32).max(), (err.max(), np.abs(fp32).max())


class ShuffleNetOps(nn.Module):
  """A ShuffleNet's batch-carrying ops: a channel split (slices), a pooling over zero
  padding and a channel shuffle (reshapes), the zoo's own functions."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(8, (3, 3), padding=((1, 1), (1, 1)))(x))
    x1, x2 = x[..., :4], x[..., 4:]
    x2 = nn.relu(nn.Conv(4, (1, 1))(shufflenet.avg_pool_3x3_s2(x2)))
    x = shufflenet.shuffle(jnp.concatenate([x1[:, ::2, ::2], x2], -1), 2)
    return nn.Dense(10)(jnp.mean(x, axis=(1, 2))), ()


def test_channel_shuffle_and_split_run_at_any_batch_in_onnx(tmp_path):
  """The batch-1 graph of a channel shuffle / split holds the batch in its reshape shapes
  and slice bounds; the ONNX model made from it still runs (and gives the network's
  logits) at any batch, and its int8 form calibrates on batches of 8."""
  net = ShuffleNetOps()
  params = net.init(jax.random.key(0), jnp.zeros((1, *TINY_SHAPE)))["params"]
  images = checks.random_images(19, TINY_SHAPE, seed=4)
  mean, std = np.float32([0.4, 0.5, 0.6]), np.float32([0.2, 0.25, 0.3])
  sm, lite, onnx_path = (str(tmp_path / k) for k in ("sm", "fp32.tflite", "fp32.onnx"))
  formats.write_saved_model(sm, net, params, mean, std, TINY_SHAPE, batch=1)
  formats.write_tflite(sm, lite)
  formats.write_onnx(lite, onnx_path)
  fp32 = np.asarray(net.apply({"params": params}, datasets.normalize(images, mean, std))[0])
  tol = checks.RTOL * np.abs(fp32).max()
  for batch in (1, 5, 19):
    np.testing.assert_allclose(run_ort(onnx_path, images, batch), fp32, rtol=0, atol=tol)
  int8 = str(tmp_path / "int8.onnx")
  quantize.write_onnx_int8(onnx_path, int8, images)
  assert run_ort(int8, images, 19).shape == fp32.shape


def test_fp32_onnx_matches_at_any_batch(tiny):
  fp32 = tiny["fp32"]
  tol = checks.RTOL * np.abs(fp32).max()
  for batch in (1, 7, 64):  # the batch-1 graph's symbolic batch dimension
    got = run_ort(tiny["paths"]["fp32.onnx"], tiny["images"], batch)
    np.testing.assert_allclose(got, fp32, rtol=0, atol=tol)
    assert (got.argmax(-1) == fp32.argmax(-1)).all()
  lite = run_litert(tiny["paths"]["fp32.tflite"], tiny["images"])
  np.testing.assert_allclose(lite, fp32, rtol=0, atol=tol)


# ------------------------------------------------------------------ the CLI export


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
  base = tmp_path_factory.mktemp("int8")
  net, variables = make_run(base / "run", arch="resnet10", shortcuts="none", dirac="reparam")
  out = base / "out"
  assert export_cli.main([f"--workdir={base / 'run'}", f"--out={out}", "--quantize=int8",
                          "--calibration_images=48"]) == 0
  report = json.loads((out / "export.json").read_text())
  return dict(base=base, out=out, report=report, net=net, variables=variables)


def test_int8_export_writes_and_records_both_models(int8_export):
  out, report = int8_export["out"], int8_export["report"]
  assert sorted(os.listdir(out)) == ["README.md", "SHA256SUMS", "export.json", "labels.txt",
                                     "model.onnx", "model.tflite", "model_int8.onnx",
                                     "model_int8.tflite", "params.npz", "saved_model",
                                     "training_config.json", "weights_folded.safetensors",
                                     "weights_trained.safetensors"]  # + the package
  assert report["passed"] and report["checks"]["onnx"]["passed"]
  cal = report["int8"]["calibration"]
  assert cal["num_images"] == 48 and "training images of synthetic" in cal["source"]
  assert cal["seconds"] >= 0
  for key, name in (("tflite_int8", "model_int8.tflite"), ("onnx_int8", "model_int8.onnx")):
    r = report["int8"][key]
    assert r["file"] == name and r["bytes"] == os.path.getsize(out / name)
    assert report["files"][name] == r["bytes"] and r["num_images"] == 32  # all test images
    assert r["seconds"] > 0
  assert report["files"]["model.onnx"] == os.path.getsize(out / "model.onnx")
  assert {"onnx", "onnxruntime", "tf2onnx", "ai_edge_litert"} <= set(report["versions"])


def test_int8_record_matches_the_models_run_here(int8_export):
  """top-1 of fp32 and int8, agreement and the largest logit error, recomputed from the
  files with LiteRT / ONNX Runtime directly and the trained network in JAX."""
  out, report = int8_export["out"], int8_export["report"]
  images, labels, mean, std = check_data()
  net, variables = int8_export["net"], int8_export["variables"]
  ref = np.asarray(net.apply(variables, datasets.normalize(images, mean, std), train=False)[0])
  # The export's reference ran the same fp32 network at 'highest' precision: within the
  # fp32 tolerance of this one. A Python float: pytest.approx (9.x) refuses a numpy
  # float32 tolerance.
  atol = float(checks.RTOL * np.abs(ref).max())
  got = {"tflite_int8": run_litert(str(out / "model_int8.tflite"), images),
         "onnx_int8": run_ort(str(out / "model_int8.onnx"), images)}
  for key, logits in got.items():
    r = report["int8"][key]
    assert r["top1_fp32"] == np.mean(ref.argmax(-1) == labels)
    assert r["top1_int8"] == np.mean(logits.argmax(-1) == labels)
    assert r["agreement"] == np.mean(logits.argmax(-1) == ref.argmax(-1))
    assert r["top1_drop_points"] == pytest.approx(100 * (r["top1_fp32"] - r["top1_int8"]))
    assert abs(r["max_abs_logit_error"] - np.abs(logits - ref).max()) <= atol
    assert r["max_abs_logit"] == pytest.approx(np.abs(ref).max(), abs=atol)
    assert (r["warning"] is None) == (r["top1_drop_points"] <= 1.0)


@pytest.mark.parametrize("fmt", ["onnx", "onnx_int8", "tflite_int8"])
def test_predict_runs_every_format(int8_export, fmt, tmp_path, capsys):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  images, _, _, _ = check_data()
  Image.fromarray(images[0]).save(tmp_path / "a.png")
  assert predict_cli.main([f"--model={int8_export['out']}", f"--format={fmt}", "--json",
                           "--top=10", str(tmp_path / "a.png")]) == 0
  line = json.loads(capsys.readouterr().out)
  assert line["format"] == fmt and line["model"].endswith(predict_cli_file(fmt))
  runner = run_ort if fmt.startswith("onnx") else run_litert
  logits = runner(str(int8_export["out"] / predict_cli_file(fmt)), images[:1])[0]
  p = np.exp(logits - logits.max())
  p /= p.sum()
  for q in line["predictions"]:  # the same model run here: float32 softmax rounding only
    assert abs(q["probability"] - p[q["class"]]) <= 1e-6


def predict_cli_file(fmt):
  return {"onnx": "model.onnx", "onnx_int8": "model_int8.onnx",
          "tflite_int8": "model_int8.tflite"}[fmt]


def test_drop_warning_is_one_line_in_the_report(tiny, monkeypatch):
  """A forced drop: the int8 runner's logits flip 2 of the 64 predictions the labels
  (= the fp32 predictions) call correct, a 3.1-point drop."""
  fp32, images = tiny["fp32"], tiny["images"]
  labels = fp32.argmax(-1)
  flipped = fp32.copy()
  flipped[:2] = -flipped[:2]
  monkeypatch.setattr(export, "run_tflite", lambda path, x: flipped)
  data = checks.CheckData(images, labels, None, None, "tiny", {})
  calib = calibration.Calibration(images, "the tiny test images")
  stage = tiny["base"] / "stage"
  stage.mkdir()
  formats.write_onnx(tiny["paths"]["fp32.tflite"], str(stage / "model.onnx"))
  lines = []
  write_int8 = export._write_int8  # pylint: disable=protected-access
  section = write_int8(str(stage), tiny["sm"], str(stage / "model.onnx"), calib, 0.0, data,
                       fp32, lambda *_: None, lines.append)
  assert len(lines) == 1 and "\n" not in lines[0] and lines[0].startswith("warning: ")
  assert "model_int8.tflite top-1 drops by 3.12 points (100.00% fp32 -> 96.88% int8)" in lines[0]
  assert section["tflite_int8"]["warning"] in lines[0]
  assert section["tflite_int8"]["top1_drop_points"] == pytest.approx(3.125)
  assert "--qat_epochs=3" in lines[0]  # the fix it names


# ------------------------------------------------------------------ bad input


def one_line_error(capsys, argv):
  rc = export_cli.main([str(a) for a in argv])
  err = capsys.readouterr().err
  assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  assert "Traceback" not in err
  return err


def test_bad_int8_input_is_one_line_and_writes_nothing(int8_export, tmp_path, capsys):
  run = int8_export["base"] / "run"
  out = tmp_path / "new" / "out"
  cases = [
      (["--quantize=int4"], ["--quantize=int4 is not one of none, int8"]),
      (["--quantize=int8", "--calibration_images=5"],
       ["--calibration_images=5 is too few", "at least 32"]),
      (["--quantize=int8", f"--calibration_dir={tmp_path / 'none'}"], ["is not a directory"]),
      (["--quantize=int8", f"--calibration_dir={tmp_path}"], ["holds 0 image files",
                                                               "at least 32"]),
  ]
  for flags, texts in cases:
    err = one_line_error(capsys, [f"--workdir={run}", f"--out={out}", *flags])
    for text in texts:
      assert text in err, (flags, err)
    assert not (tmp_path / "new").exists(), flags


def test_absent_calibration_data_names_calibration_dir(tmp_path, capsys):
  make_run(tmp_path / "run", arch="resnet10", dataset="cifar10",
           data_dir=str(tmp_path / "no_data"))
  err = one_line_error(capsys, [f"--workdir={tmp_path / 'run'}", f"--out={tmp_path / 'out'}",
                                "--check_images=random", "--quantize=int8"])
  assert "calibration images" in err and "--calibration_dir=DIR" in err
  assert not (tmp_path / "out").exists()


def test_failed_conversion_names_the_op_and_keeps_the_old_export(int8_export, tmp_path,
                                                                 monkeypatch, capsys):
  """An ONNX conversion failure after the fp32 files were written: one line naming the
  op, the staging folder gone, an old export under --overwrite untouched."""
  out = tmp_path / "out"
  out.mkdir()
  (out / "export.json").write_text("{}")

  def failing(tflite_path, path, opset=17):
    raise formats.conversion_error(
        "ONNX conversion", RuntimeError("loc(x): 'tfl.custom_thing' op is not supported"))

  monkeypatch.setattr(export, "write_onnx", failing)
  err = one_line_error(capsys, [f"--workdir={int8_export['base'] / 'run'}", f"--out={out}",
                                "--overwrite", "--num_images=4"])
  assert "ONNX conversion failed: unsupported op(s) tfl.custom_thing" in err
  assert sorted(os.listdir(tmp_path)) == ["out"] and os.listdir(out) == ["export.json"]


def test_conversion_error_names_ops():
  e = formats.conversion_error("int8 TFLite conversion", RuntimeError(
      "error: 'tf.XlaFoo' op is neither a custom op nor a flex op\nerror: 'tf.XlaFoo' op ..."))
  assert isinstance(e, UserError) and "unsupported op(s) tf.XlaFoo;" in str(e)
  assert "\n" not in str(e)


def test_missing_runtime_and_int8_file_are_one_line(int8_export, tmp_path, monkeypatch, capsys):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "a.png")
  monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
  rc = predict_cli.main([f"--model={int8_export['out']}", "--format=onnx",
                         str(tmp_path / "a.png")])
  err = capsys.readouterr().err
  assert rc == 2 and err.count("\n") == 1 and "pip install onnxruntime" in err
  fp32_only = tmp_path / "fp32_only"
  fp32_only.mkdir()
  for name in ("export.json", "model.tflite"):
    (fp32_only / name).write_bytes((int8_export["out"] / name).read_bytes())
  package.write_checksums(str(fp32_only))  # a verified package, just without int8 files
  rc = predict_cli.main([f"--model={fp32_only}", "--format=tflite_int8", str(tmp_path / "a.png")])
  err = capsys.readouterr().err
  assert rc == 2 and err.count("\n") == 1
  assert "no model_int8.tflite" in err and "--quantize=int8" in err


# ------------------------------------------------------------------ calibration images


def test_calibration_images_of_in_memory_data_and_of_a_folder(int8_export, tmp_path):
  """In-memory data: the seeded sample of training images, unchanged. A folder: its
  image files in path order, resized as predict does (PNGs of the model's size: as is)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  run = str(int8_export["base"] / "run")
  got = calibration.calibration_images(run, 40, (32, 32, 3))
  x_train, _, _, _ = datasets.synthetic_arrays(64, 32, 10, 32)
  index = np.sort(np.random.default_rng(calibration.SEED).choice(64, 40, replace=False))
  np.testing.assert_array_equal(got.images, x_train[index])
  images = checks.random_images(35, (32, 32, 3), seed=9)
  (tmp_path / "sub").mkdir()
  for i, x in enumerate(images):  # 00..34, some in a subfolder, plus a non-image file
    Image.fromarray(x).save(tmp_path / ("sub" if i % 2 else "") / f"{i:02d}.png")
  (tmp_path / "notes.txt").write_text("not an image")
  got = calibration.calibration_images(run, 512, (32, 32, 3), str(tmp_path))
  order = sorted(range(35), key=lambda i: f"{'sub/' if i % 2 else ''}{i:02d}.png")
  np.testing.assert_array_equal(got.images, images[order])
  assert got.source.startswith(f"the first 35 image files under {tmp_path}")


def test_calibration_images_of_a_streamed_run_are_training_images_as_evaluated(tmp_path):
  """An ImageNet-style run (generated JPEGs streamed at 64x64, eval resize 73): the
  calibration images are its TRAINING images, each resized + centre-cropped as
  evaluation does (matched here to predict's own crop of each training file, which
  agrees with the pipeline's to rounding: <= 1, see test_export)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from configs.imagenet import default as imagenet_config  # pylint: disable=g-import-not-at-top
  from jointrd_jax.training import workdir  # pylint: disable=g-import-not-at-top
  from jointrd_jax.deploy import predict  # pylint: disable=g-import-not-at-top
  c = imagenet_config.get_config("smoke")
  c.data_dir = str(tmp_path / "data")
  c.synthetic.update(dict(train_size=33, test_size=3, num_classes=3))
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps(workdir.config_to_dict(c)))
  got = calibration.calibration_images(str(tmp_path / "run"), 512, (64, 64, 3))
  assert got.images.shape == (33, 64, 64, 3) and "train split" in got.source
  train = next((tmp_path / "data").iterdir()) / "train"
  files = [f for d in sorted(train.iterdir()) for f in sorted(d.iterdir())]
  crops = np.stack([predict.preprocess(Image.fromarray(np.asarray(Image.open(f).convert("RGB"))),
                                       (64, 64, 3), {"method": "center_crop", "resize": 73})
                    for f in files]).astype(int)
  matched = [int(np.argmin(np.abs(crops - x.astype(int)).reshape(len(crops), -1).max(1)))
             for x in got.images]
  assert sorted(matched) == list(range(33))  # each training image once
  for x, m in zip(got.images, matched):
    assert np.abs(crops[m] - x.astype(int)).max() <= 1
