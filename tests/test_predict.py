"""experiments.predict: image files in, the exported model's top classes out.

The model is a tiny CIFAR-10 network (random weights) exported by `export.export`, whose
head bias was raised so that class 3 ("cat") wins on every test image by at least one
logit; the other classes' order depends on the image. Expected probabilities are the
TRAINED network's (JAX, unfolded), computed here on the images as the test builds them.
"""
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import predict as predict_cli
from jointrd_jax import datasets, models
from jointrd_jax.deploy import checks, export, package, predict
from jointrd_jax.errors import UserError
from jointrd_jax.datasets import class_names
from export_helpers import (assert_every_flag_ends_with_its_default, make_run,
                            random_variables)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAT = 3
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # TFDS CIFAR-10 statistics, typed independently
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NOISE = ("INFO:", "WARNING: All log messages", "I0000", "W0000", "E0000")


def coarse_image(rng, h, w, c):
  """A random image with structure (a 4x4 grid of colours plus noise), uint8 [h, w, c]."""
  grid = rng.integers(0, 256, (4, 4, c))
  x = grid[np.arange(h) * 4 // h][:, np.arange(w) * 4 // w] + rng.integers(-20, 21, (h, w, c))
  return np.clip(x, 0, 255).astype(np.uint8)


def write_images(d):
  """Image files of several kinds and, for each, the 32x32x3 uint8 array the model must
  receive, derived without the code under test."""
  rng = np.random.default_rng(7)
  files, expected = {}, {}
  rgb = coarse_image(rng, 32, 32, 3)
  Image.fromarray(rgb).save(d / "rgb.png")
  files["rgb"], expected["rgb"] = d / "rgb.png", rgb
  gray = coarse_image(rng, 32, 32, 1)[..., 0]
  Image.fromarray(gray, "L").save(d / "gray.png")
  files["gray"], expected["gray"] = d / "gray.png", np.repeat(gray[..., None], 3, axis=-1)
  rgba = coarse_image(rng, 32, 32, 4)
  Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
  files["rgba"], expected["rgba"] = d / "rgba.png", rgba[..., :3]  # alpha dropped
  palette = coarse_image(rng, 16, 3, 1)[..., 0].reshape(48)  # 16 colours
  index = rng.integers(0, 16, (32, 32)).astype(np.uint8)
  p = Image.fromarray(index, "P")
  p.putpalette(palette.tolist() + [0] * (768 - 48))
  p.save(d / "palette.gif")
  files["palette"], expected["palette"] = d / "palette.gif", palette.reshape(16, 3)[index]
  # Stored sideways with EXIF orientation 6: shown (and classified) rotated 90 deg clockwise.
  stored = coarse_image(rng, 32, 32, 3)
  exif = Image.Exif()
  exif[0x0112] = 6
  Image.fromarray(stored).save(d / "rotated.png", exif=exif)
  files["rotated"], expected["rotated"] = d / "rotated.png", np.rot90(stored, k=-1)
  # A large photo: JPEG, 640x480, resized to 32x32 (antialiased bilinear, aspect not kept).
  Image.fromarray(coarse_image(rng, 480, 640, 3)).save(d / "photo.jpg", quality=90)
  with Image.open(d / "photo.jpg") as im:
    files["photo"] = d / "photo.jpg"
    expected["photo"] = np.asarray(im.convert("RGB").resize((32, 32), Image.BILINEAR))
  return files, expected


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  base = tmp_path_factory.mktemp("predict")
  files, expected = write_images(base)
  images = np.stack(list(expected.values()))
  net = models.build("resnet10", "projection", "reparam", num_classes=10, width=4)
  variables = random_variables(net, seed=3)
  mean, std = np.float32(CIFAR10_MEAN), np.float32(CIFAR10_STD)
  apply = jax.jit(lambda v, x: net.apply(v, datasets.normalize(x, mean, std), train=False)[0])
  # The head is set so that the logits vary from image to image by a few units (a random
  # network's logits are dominated by constants: centred over these images and scaled),
  # and then so that "cat" wins by >= 1 logit on every image.
  head = variables["params"]["head"]
  z = np.asarray(apply(variables, images))
  scale = 2.0 / float((z - z.mean(0)).std())
  head["kernel"] = np.asarray(head["kernel"]) * np.float32(scale)
  head["bias"] = ((np.asarray(head["bias"]) - z.mean(0)) * scale).astype(np.float32)
  z = np.asarray(apply(variables, images))
  head["bias"][CAT] += np.float32(np.max(z.max(-1) - z[:, CAT]) + 1.0)
  logits = np.asarray(apply(variables, images))
  assert (logits.argmax(-1) == CAT).all()
  assert len({tuple(np.argsort(-row)[1:3]) for row in logits}) > 1  # the rest: per image
  # An export of a CIFAR-10 run whose data is not here (checks on random images).
  make_run(base / "run", arch="resnet10", dataset="cifar10", data_dir=str(base / "no_data"))
  from jointrd_jax.training import checkpoints, workdir  # pylint: disable=g-import-not-at-top
  config = workdir.read_config(str(base / "run"))
  shutil.rmtree(base / "run")
  checkpoints.save_network(str(base / "run"), net, variables, image_shape=(32, 32, 3),
                           config_dict=config)
  export.export(str(base / "run"), str(base / "out"), num_images=8, check="random",
                log=lambda *_: None)
  probs = {k: softmax64(logits[i]) for i, k in enumerate(expected)}
  # TFLite/SavedModel logits are within the export's tolerance RTOL * max|logit| of the
  # trained network's; a softmax output moves by at most 1/2 the largest logit change
  # (sum_j |dp_i/dz_j| = 2 p_i (1 - p_i) <= 1/2).
  tol = 0.5 * checks.RTOL * float(np.abs(logits).max())
  return dict(dir=base / "out", files=files, expected=expected, probs=probs, tol=tol,
              base=base)


def softmax64(z):
  e = np.exp(np.asarray(z, np.float64) - np.max(z))
  return e / e.sum()


def assert_top_k(predictions, probs, tol, k=5):
  """`predictions` are the k most probable classes of `probs`, each within `tol`."""
  assert len(predictions) == k
  got = [p["probability"] for p in predictions]
  assert got == sorted(got, reverse=True)
  for p in predictions:
    assert abs(p["probability"] - probs[p["class"]]) <= tol, (p, probs[p["class"]])
    assert p["name"] == class_names.CIFAR10[p["class"]]
  left_out = np.delete(probs, [p["class"] for p in predictions])
  assert left_out.size == 0 or left_out.max() <= min(got) + 2 * tol


def run_main(args, capsys):
  rc = predict_cli.main([str(a) for a in args])
  out, err = capsys.readouterr()
  return rc, out, err


@pytest.mark.parametrize("fmt", ["tflite", "saved_model", "onnx"])
def test_json_gives_the_trained_networks_top5(model, fmt, capsys):
  names = list(model["files"])
  rc, out, err = run_main([f"--model={model['dir']}", f"--format={fmt}", "--json",
                           *model["files"].values()], capsys)
  assert rc == 0 and err == ""
  lines = [json.loads(line) for line in out.splitlines()]
  assert [r["image"] for r in lines] == [str(f) for f in model["files"].values()]
  for name, r in zip(names, lines):
    assert r["format"] == fmt
    assert r["predictions"][0]["class"] == CAT and r["predictions"][0]["name"] == "cat"
    assert_top_k(r["predictions"], model["probs"][name], model["tol"])


def test_top_flag_and_all_probabilities(model, capsys):
  rc, out, _ = run_main([f"--model={model['dir']}", "--json", "--top=50",
                         model["files"]["rgb"]], capsys)
  predictions = json.loads(out)["predictions"]
  assert rc == 0 and len(predictions) == 10  # every class, once
  assert sorted(p["class"] for p in predictions) == list(range(10))
  assert abs(sum(p["probability"] for p in predictions) - 1.0) <= 1e-12
  assert_top_k(predictions, model["probs"]["rgb"], model["tol"], k=10)


def test_cli_prints_top5_and_nothing_else(model):
  """In a subprocess: TensorFlow's and XNNPACK's C++ lines would show on stderr there."""
  files = [model["files"][k] for k in ("rgb", "photo")]
  proc = subprocess.run([sys.executable, "-m", "experiments.predict",
                         f"--model={model['dir']}", *map(str, files)],
                        cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stderr == ""
  assert not [l for l in proc.stdout.splitlines() if l.startswith(NOISE)]
  lines = proc.stdout.splitlines()
  assert lines[0] == (f"{model['dir']}/model.tflite: 10 classes (CIFAR-10 names, TFDS label "
                      "order), input 32x32x3 uint8")
  assert len(lines) == 1 + 2 * 6
  for i, (key, f) in enumerate(zip(("rgb", "photo"), files)):
    block = lines[1 + 6 * i: 7 + 6 * i]
    assert block[0] == f"{f}:"
    rows = [re.fullmatch(r"  ([ \d]{3}\.\d\d)%  (\w+) \((\d)\)", line) for line in block[1:]]
    assert all(rows), block
    assert rows[0].group(2) == "cat" and rows[0].group(3) == "3"
    for m in rows:  # printed with 2 decimals: rounding adds 0.005 percentage points
      c = int(m.group(3))
      assert m.group(2) == class_names.CIFAR10[c]
      assert abs(float(m.group(1)) - 100 * model["probs"][key][c]) <= 0.005 + 100 * model["tol"]


# ------------------------------------------------------------------ preprocessing


def test_center_crop_geometry_is_torchvisions():
  # Resize(256) + CenterCrop(224), by hand: 400x300 -> 341x256 (int(256 * 400 / 300)),
  # crop from (round(58.5) = 58, 16).
  assert predict.center_crop_box(400, 300, 224, 224, 256) == ((341, 256), (58, 16, 282, 240))
  assert predict.center_crop_box(300, 400, 224, 224, 256) == ((256, 341), (16, 58, 240, 282))
  assert predict.center_crop_box(256, 256, 224, 224, 256) == ((256, 256), (16, 16, 240, 240))
  # A 512x256 image needs no resize: the crop is exactly rows 16..239, columns 144..367.
  x = np.random.default_rng(0).integers(0, 256, (256, 512, 3), dtype=np.uint8)
  got = predict.preprocess(Image.fromarray(x), (224, 224, 3),
                           {"method": "center_crop", "resize": 256})
  np.testing.assert_array_equal(got, x[16:240, 144:368])


def test_plain_resize_keeps_no_aspect_ratio():
  # 64x32 with its left quarter red: resized to 32x32, columns 0..6 stay pure red and
  # 9..31 pure blue (bilinear 2x shrink: output column j mixes input columns 2j-1..2j+2).
  x = np.zeros((32, 64, 3), np.uint8)
  x[:, :16] = (255, 0, 0)
  x[:, 16:] = (0, 0, 255)
  got = predict.preprocess(Image.fromarray(x), (32, 32, 3), {"method": "resize"})
  assert got.shape == (32, 32, 3) and got.dtype == np.uint8
  assert (got[:, :7] == (255, 0, 0)).all() and (got[:, 9:] == (0, 0, 255)).all()


def test_image_modes_and_channels(tmp_path):
  v = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64  # 0..65472
  Image.fromarray(v).save(tmp_path / "g16.png")  # 16-bit grayscale PNG
  got = predict.load_image(str(tmp_path / "g16.png"), (32, 32, 3), {"method": "resize"})
  want = np.round(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
  np.testing.assert_array_equal(got, np.repeat(want[..., None], 3, -1))
  # A 1-channel model gets luma (a gray RGB image: its value), a 4-channel model RGBA.
  gray = np.full((32, 32, 3), 77, np.uint8)
  got = predict.preprocess(Image.fromarray(gray), (32, 32, 1), {"method": "resize"})
  assert got.shape == (32, 32, 1) and (got == 77).all()
  got = predict.preprocess(Image.fromarray(gray), (32, 32, 4), {"method": "resize"})
  assert (got[..., :3] == 77).all() and (got[..., 3] == 255).all()


def test_every_image_kind_reaches_the_model_as_derived(model):
  for key, path in model["files"].items():
    got = predict.load_image(str(path), (32, 32, 3), {"method": "resize"})
    np.testing.assert_array_equal(got, model["expected"][key], err_msg=key)


# ------------------------------------------------------------------ the export directory


def test_exports_without_names_or_preprocessing_still_work(model, tmp_path):
  """Exports written before class names and preprocessing were recorded."""
  report = json.loads((model["dir"] / "export.json").read_text())
  assert report["classes"]["names"] == list(class_names.CIFAR10)
  assert report["preprocessing"] == {"method": "resize"}
  for variant, want in (("cifar", {"method": "resize"}),
                        ("imagenet", {"method": "center_crop", "resize": 37})):  # 32*256/224
    old = dict(report, architecture=dict(report["architecture"], variant=variant))
    del old["classes"], old["preprocessing"]
    d = tmp_path / variant
    d.mkdir()
    (d / "export.json").write_text(json.dumps(old))
    shutil.copy(model["dir"] / "model.tflite", d / "model.tflite")
    with pytest.raises(UserError, match="holds no SHA256SUMS"):  # made before checksums
      predict.open_export(str(d), "tflite", load=False)
    m = predict.open_export(str(d), "tflite", load=False, verify=False)
    assert m.class_names == tuple(f"class_{i}" for i in range(10))
    assert m.preprocessing == want
  assert predict.default_preprocessing("imagenet", (160, 160, 3)) == {
      "method": "center_crop", "resize": 183}  # round(160 * 256 / 224)


def bad_inputs(model, tmp_path):
  """(args, text the one error line must contain) per user mistake."""
  (tmp_path / "notes.jpg").write_text("not an image")
  data = (model["files"]["rgb"]).read_bytes()
  (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
  # Exports broken in one way each, their checksums intact (package.write_checksums): the
  # error is about what is wrong, not the checksums (tests/test_package.py tests those).
  failed = tmp_path / "failed"
  failed.mkdir()
  report = json.loads((model["dir"] / "export.json").read_text())
  (failed / "export.json").write_text(json.dumps(dict(report, passed=False)))
  no_lite = tmp_path / "no_lite"
  no_lite.mkdir()
  shutil.copy(model["dir"] / "export.json", no_lite / "export.json")
  garbled = tmp_path / "garbled"
  garbled.mkdir()
  (garbled / "export.json").write_text("{not json")
  for d in (failed, no_lite, garbled):
    package.write_checksums(str(d))
  m = f"--model={model['dir']}"
  rgb = model["files"]["rgb"]
  return {
      "model missing": ([f"--model={tmp_path}/nothing", rgb],  # the CLI's own wording
                        [f"error: --model={tmp_path}/nothing does not exist"]),
      "model is a file": ([f"--model={rgb}", rgb], ["is a file"]),
      "not an export": ([f"--model={model['base'] / 'run'}", rgb],
                        ["holds no export.json", "experiments.export"]),
      "failed export": ([f"--model={failed}", rgb], ["did not pass its checks"]),
      "no tflite": ([f"--model={no_lite}", rgb], ["no model.tflite", "--format=saved_model"]),
      "garbled report": ([f"--model={garbled}", rgb], ["cannot be read as an export report"]),
      "image missing": ([m, rgb, tmp_path / "gone.png"], ["gone.png does not exist"]),
      "not an image": ([m, rgb, tmp_path / "notes.jpg"], ["notes.jpg is not an image"]),
      "truncated": ([m, tmp_path / "cut.png"], ["cut.png cannot be decoded"]),
      "directory": ([m, tmp_path], ["is a directory"]),
      "no images": ([m], ["required: IMAGE"]),
      "bad format": ([m, "--format=coreml", rgb], ["--format", "coreml"]),
      "bad top": ([m, "--top=0", rgb], ["--top=0"]),
  }


def test_bad_input_is_one_line(model, tmp_path, capsys):
  for case, (args, texts) in bad_inputs(model, tmp_path).items():
    try:
      rc, out, err = run_main(args, capsys)
    except SystemExit as e:  # argparse's own mistakes
      rc, (out, err) = e.code, capsys.readouterr()
    assert rc == 2 and out == "", (case, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, (case, err)
    assert "Traceback" not in err
    for text in texts:
      assert text in err, (case, err)


def test_help_describes_every_flag_with_its_default(capsys):
  assert_every_flag_ends_with_its_default(predict_cli.parser(), skip=("images",),
                                          shown={"json": "off", "verify": "on"})
  with pytest.raises(SystemExit) as e:
    predict_cli.main(["--help"])
  text = capsys.readouterr().out
  assert e.value.code == 0 and "IMAGE" in text and len(text) < 1500
