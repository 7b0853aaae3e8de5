"""Deployment export end to end on tiny runs (CIFAR-style 32x32 on synthetic data, ImageNet-style
224x224): fold check, npz, SavedModel, TFLite, class names, clean output."""
import json
import os
import re
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

from configs import default as default_config
from experiments import export as export_cli
from jointrd_jax import datasets, models
from jointrd_jax.datasets import class_names, sources
from jointrd_jax.deploy import checks, export, runtimes
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold
from jointrd_jax.training import checkpoints, workdir
from export_helpers import (NUM_CLASSES, TEST_SIZE, assert_every_flag_ends_with_its_default,
                            check_data, make_imagenet_run, make_run)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """One export through the CLI, shared by the tests below."""
  base = tmp_path_factory.mktemp("export")
  net, variables = make_run(base / "run")
  out = base / "out"
  rc = export_cli.main([f"--workdir={base / 'run'}", f"--out={out}", "--num_images=20"])
  assert rc == 0
  with open(out / "export.json") as f:
    report = json.load(f)
  return net, variables, out, report


def test_report_records_passing_checks(exported):
  net, _, out, report = exported
  assert sorted(os.listdir(out)) == ["README.md", "SHA256SUMS", "export.json", "labels.txt",
                                     "model.onnx", "model.tflite", "params.npz", "saved_model",
                                     "training_config.json", "weights_folded.safetensors",
                                     "weights_trained.safetensors"]  # tests/test_package.py
  assert report["passed"] is True and "int8" not in report
  assert set(report["checks"]) == {"fold", "saved_model", "tflite", "onnx"}
  for name, c in report["checks"].items():
    assert c["passed"] and c["num_images"] == 20, name
    assert c["top1_agreement"] == 1.0 and c["top1_changed"] == 0
    assert c["max_abs_diff"] <= checks.RTOL * c["max_abs_logit"]
    assert c["max_abs_logit"] > 0.1  # the logits are not trivially small
  arch = report["architecture"]
  assert (arch["kind"], arch["shortcuts"], arch["conv"], arch["width"], arch["num_classes"]) == (
      "bottleneck", "projection", "reparam", 4, NUM_CLASSES)
  assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [None, 32, 32, 3]
  assert report["check_data"] == {**report["check_data"], "dataset": "synthetic", "split": "test",
                                  "num_images": 20, "images": "test", "seed": None}
  # The check images are the run's test images: the accuracy measured on them is theirs
  # (the exported model's top-1 is the trained network's, test_tflite_and_saved_model_...).
  x_test, y_test, _, _ = check_data()
  lite = export.run_tflite(str(out / "model.tflite"), x_test[:20])
  assert report["check_data"]["accuracy_reference"] == np.mean(lite.argmax(-1) == y_test[:20])
  # Synthetic data has no class names; CIFAR-style networks take a plain resize.
  assert report["classes"]["names"] == [f"class_{i}" for i in range(NUM_CLASSES)]
  assert (out / "labels.txt").read_text() == "".join(f"class_{i}\n" for i in range(NUM_CLASSES))
  assert report["preprocessing"] == {"method": "resize"}
  _, _, mean, std = check_data()
  np.testing.assert_allclose(report["input"]["mean"], mean, rtol=1e-6)
  np.testing.assert_allclose(report["input"]["std"], std, rtol=1e-6)


def test_npz_round_trips_and_matches_the_trained_network(exported):
  net, variables, out, report = exported
  _, folded = fold.fold(net, variables)
  params = export.load_npz(str(out / "params.npz"))
  with np.load(out / "params.npz") as f:
    assert "stage1_block0/conv1/conv/kernel" in f.files and "head/bias" in f.files
  assert (jax.tree_util.tree_structure(params)
          == jax.tree_util.tree_structure(jax.tree_util.tree_map(np.asarray, folded["params"])))
  jax.tree_util.tree_map(np.testing.assert_array_equal, params, folded["params"])
  # Rebuild the deployment network from export.json alone and compare with training form.
  a = report["architecture"]
  folded_net = models.ResNet(kind=a["kind"], stage_sizes=tuple(a["stage_sizes"]),
                             num_classes=a["num_classes"], shortcuts=a["shortcuts"],
                             width=a["width"], folded=True)
  images, _, mean, std = check_data()
  x = datasets.normalize(images, mean, std)
  ref = np.asarray(net.apply(variables, x, train=False)[0])
  got = np.asarray(folded_net.apply({"params": params}, x, train=False)[0])
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
  assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_tflite_and_saved_model_predict_the_same_classes(exported):
  net, variables, out, _ = exported
  images, _, mean, std = check_data()
  ref = np.asarray(net.apply(variables, datasets.normalize(images, mean, std),
                             train=False)[0])
  lite = export.run_tflite(str(out / "model.tflite"), images, batch=7)  # 7, 7, 7, 7, 4
  assert lite.shape == (TEST_SIZE, NUM_CLASSES)
  assert (lite.argmax(-1) == ref.argmax(-1)).all()
  np.testing.assert_allclose(lite, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())
  sm = export.run_saved_model(str(out / "saved_model"), images)
  assert (sm.argmax(-1) == ref.argmax(-1)).all()
  # The deployed models take raw uint8 images, any batch size: the TFLite model is
  # lowered at batch 1 (so that the converter fuses bias and ReLU into CONV_2D and no
  # op depends on the batch size) and resized by the interpreter (batch 7 above).
  tf = runtimes.tf_quiet()
  with warnings.catch_warnings():  # its deprecation notice
    warnings.simplefilter("ignore")
    interpreter = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
  inp = interpreter.get_input_details()[0]
  assert inp["dtype"] == np.uint8 and list(inp["shape_signature"]) == [1, 32, 32, 3]
  ops = [d["op_name"] for d in interpreter._get_ops_details()]  # pylint: disable=protected-access
  assert "CONV_2D" in ops and not any("Flex" in o or "CUSTOM" in o for o in ops), ops
  # No batch-size plumbing, no separate bias ADD or ReLU MAXIMUM (resnet14 here: its
  # projection shortcuts are the only ADDs, one per stage 2-4).
  assert not {"SHAPE", "BROADCAST_TO", "CONCATENATION", "MAXIMUM"} & set(ops), ops
  assert ops.count("ADD") == 3, ops
  sig = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
  assert sig.structured_input_signature[1]["images"].dtype == tf.uint8
  assert list(sig.structured_outputs) == ["logits"]


def test_non_empty_out_is_refused(exported, tmp_path, capsys):
  out = exported[2]
  run = tmp_path / "run"
  make_run(run, arch="resnet10", shortcuts="none", dirac="none")
  assert export_cli.main([f"--workdir={run}", f"--out={out}"]) == 2
  assert "not empty" in capsys.readouterr().err


def test_failed_fold_check_exports_nothing(tmp_path, monkeypatch):
  make_run(tmp_path / "run", arch="resnet10", shortcuts="all", dirac="none")
  real_fold = fold.fold

  def broken_fold(net, variables):  # a fold bug: one bias slightly off
    folded_net, folded = real_fold(net, variables)
    bias = np.array(folded["params"]["head"]["bias"])
    bias[0] += 0.5
    folded["params"]["head"]["bias"] = bias
    return folded_net, folded

  monkeypatch.setattr(export.fold, "fold", broken_fold)
  out = tmp_path / "out"
  with pytest.raises(UserError, match="folded network differs") as e:
    export.export(str(tmp_path / "run"), str(out), log=lambda *_: None)
  # The numbers are in the one line (no export.json of a failed export is written).
  assert re.search(r"max \|logit diff\| \d\.\d+e[-+]\d+ vs tolerance", str(e.value))
  assert "top-1 predictions changed" in str(e.value) and "\n" not in str(e.value)
  assert sorted(os.listdir(tmp_path)) == ["run"]


def test_compare_flags_changed_predictions():
  ref = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  assert checks.compare(ref, ref + 1e-6)["passed"]
  c = checks.compare(ref, ref + np.array([[0.0, 0.0], [2.5, 0.0]], np.float32))
  assert not c["passed"] and c["top1_changed"] == 1 and c["top1_agreement"] == 0.5
  assert not checks.compare(ref, ref * (1 + 2e-4))["passed"]  # beyond rtol 1e-4


def test_compare_accepts_a_flip_only_at_a_tie():
  # Image 0's two logits differ by 1e-4 (< 2 x tolerance = 2 x 1e-4 x 10): moving each by
  # 6e-5 (< tolerance 1e-3) swaps them, which fp32 rounding of a folded network can do.
  ref = np.array([[10.0, 9.9999], [0.0, 10.0]], np.float32)
  c = checks.compare(ref, ref + np.array([[-6e-5, 6e-5], [0.0, 0.0]], np.float32))
  assert c["passed"] and c["top1_changed"] == 1 and c["top1_changed_ties"] == 1
  # A flip whose reference gap exceeds 2 x tolerance cannot come from a diff within it.
  far = np.array([[10.0, 9.99], [0.0, 10.0]], np.float32)
  c = checks.compare(far, far + np.array([[-6e-3, 6e-3], [0.0, 0.0]], np.float32))
  assert not c["passed"] and c["top1_changed"] == 1 and c["top1_changed_ties"] == 0


def test_absent_dataset_is_a_user_error(tmp_path, capsys):
  make_run(tmp_path / "run", arch="resnet10", dataset="cifar10",
           data_dir=str(tmp_path / "no_data"))
  assert export_cli.main([f"--workdir={tmp_path / 'run'}", f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "cifar10" in err and "not prepared" in err
  assert err.count("\n") == 1 and "--check_images=random" in err
  assert not (tmp_path / "out").exists()


def test_not_a_run_is_a_user_error(tmp_path, capsys):
  assert export_cli.main([f"--workdir={tmp_path / 'nothing'}", f"--out={tmp_path / 'out'}"]) == 2
  assert "holds no config.json" in capsys.readouterr().err


def test_int8_calibration_flags_without_int8_are_refused(tmp_path, capsys):
  # They would change nothing (as --qat_epochs without int8): refused before any work.
  run = tmp_path / "run"
  run.mkdir()
  (run / "config.json").write_text("{}")  # the arguments are checked before it is read
  for flag in (f"--calibration_dir={tmp_path}", "--calibration_images=64"):
    assert export_cli.main([f"--workdir={run}", f"--out={tmp_path / 'out'}", flag]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {flag} calibrates the int8 models: add --quantize=int8 (or drop "
                   "the flag).\n"), err
    assert sorted(os.listdir(tmp_path)) == ["run"]


# ------------------------------------------------------------ ImageNet-sized networks

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's, typed here independently
IMAGENET_STD = (0.229, 0.224, 0.225)
NOISE = ("INFO:", "WARNING: All log messages", "I0000", "W0000", "E0000")


def no_noise(text):
  """No TensorFlow / TFLite / XNNPACK C++ log line in `text`."""
  return not [line for line in text.splitlines() if line.startswith(NOISE)]


def documented_random_images(n, size, c, seed=0):
  """checks.random_images as its docstring states it (size divisible by 4: each grid cell
  becomes a size/4 x size/4 block)."""
  rng = np.random.default_rng(seed)
  out = np.zeros((n, size, size, c), np.uint8)
  for i in range(n):
    grid = rng.integers(0, 256, (4, 4, c))
    noise = rng.integers(-32, 33, (size, size, c))
    blocks = grid.repeat(size // 4, axis=0).repeat(size // 4, axis=1)
    out[i] = np.clip(blocks + noise, 0, 255)
  return out


@pytest.fixture(scope="module")
def exported_224(tmp_path_factory):
  """An ImageNet-style run at 224x224 whose data (imagenet2012) is not on this machine,
  exported by the CLI in a subprocess (so that C++ log lines would show) on random images."""
  base = tmp_path_factory.mktemp("export224")
  net, variables = make_imagenet_run(base / "run")
  out = base / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.export", f"--workdir={base / 'run'}", f"--out={out}",
       "--num_images=6", "--check_images=random"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads((out / "export.json").read_text())
  return net, variables, base / "run", out, report, proc


def test_export_output_holds_only_our_lines(exported_224):
  proc = exported_224[5]
  assert no_noise(proc.stdout + proc.stderr), proc.stdout + proc.stderr
  assert proc.stderr == ""
  lines = proc.stdout.splitlines()
  assert [line.split(" ")[0] for line in lines] == ["fold", "saved_model", "tflite", "onnx",
                                                    "exported"]
  assert lines[0].startswith("fold check on 6 random images: ")
  assert all(line.endswith("-> ok") for line in lines[1:4])


def test_imagenet_export_at_224(exported_224):
  net, variables, _, out, report, _ = exported_224
  assert report["passed"] is True
  assert report["input"]["shape"] == [None, 224, 224, 3]
  assert report["output"]["shape"] == [None, 1000]
  assert report["architecture"]["variant"] == "imagenet"
  np.testing.assert_allclose(report["input"]["mean"], IMAGENET_MEAN, rtol=1e-7)
  np.testing.assert_allclose(report["input"]["std"], IMAGENET_STD, rtol=1e-7)
  assert report["check_data"] == {**report["check_data"], "images": "random", "seed": 0,
                                  "num_images": 6, "split": None, "accuracy_reference": None}
  assert report["preprocessing"] == {"method": "center_crop", "resize": 256}
  names = (out / "labels.txt").read_text().splitlines()
  assert len(names) == 1000 and names[:2] == ["n01440764", "n01443537"]
  assert names == report["classes"]["names"] and len(set(names)) == 1000
  for name, c in report["checks"].items():
    assert c["passed"] and c["num_images"] == 6 and c["top1_changed"] == 0, name

  # The check images are the documented ones: redo the checks here, independently.
  images = documented_random_images(6, 224, 3)
  mean = np.asarray(IMAGENET_MEAN, np.float32)
  std = np.asarray(IMAGENET_STD, np.float32)
  ref = np.asarray(jax.jit(lambda v, x: net.apply(v, x, train=False)[0])(
      variables, datasets.normalize(images, mean, std)))
  atol = checks.RTOL * np.abs(ref).max()
  a = report["architecture"]
  folded_net = models.ResNet(variant=a["variant"], kind=a["kind"],
                             stage_sizes=tuple(a["stage_sizes"]), num_classes=a["num_classes"],
                             shortcuts=a["shortcuts"], width=a["width"], folded=True)
  params = export.load_npz(str(out / "params.npz"))
  folded = np.asarray(jax.jit(lambda p, x: folded_net.apply({"params": p}, x, train=False)[0])(
      params, datasets.normalize(images, mean, std)))
  np.testing.assert_allclose(folded, ref, rtol=0, atol=atol)
  lite = export.run_tflite(str(out / "model.tflite"), images, batch=4)  # batches 4, 2
  np.testing.assert_allclose(lite, ref, rtol=0, atol=atol)
  onnx_logits = export.run_onnx(str(out / "model.onnx"), images, batch=4)
  np.testing.assert_allclose(onnx_logits, ref, rtol=0, atol=atol)
  sm = export.run_saved_model(str(out / "saved_model"), images)
  np.testing.assert_allclose(sm, ref, rtol=0, atol=atol)
  assert (lite.argmax(-1) == ref.argmax(-1)).all() and (sm.argmax(-1) == lite.argmax(-1)).all()
  # The check images are not all alike to the network (as i.i.d. pixel noise would be).
  assert np.abs(ref).max() > 0.1 and ref.std(axis=0).mean() > 0.1


def test_predict_on_the_224_export(exported_224, tmp_path, capsys):
  """experiments.predict resizes the shorter side to 256 and centre-crops 224: images whose
  shorter side is already 256 are cropped exactly, so the trained network's probabilities
  on the crops are known here."""
  from experiments import predict as predict_cli  # pylint: disable=g-import-not-at-top
  net, variables, _, out, report, _ = exported_224
  rng = np.random.default_rng(5)
  square = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
  wide = rng.integers(0, 256, (256, 512, 3), dtype=np.uint8)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.fromarray(square).save(tmp_path / "square.png")
  Image.fromarray(wide).save(tmp_path / "wide.png")
  crops = np.stack([square[16:240, 16:240], wide[16:240, 144:368]])
  z = np.asarray(jax.jit(lambda v, x: net.apply(v, x, train=False)[0])(
      variables, datasets.normalize(crops, np.float32(IMAGENET_MEAN), np.float32(IMAGENET_STD))))
  probs = np.exp(z.astype(np.float64) - z.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  tol = 0.5 * checks.RTOL * np.abs(z).max()  # |dp| <= max|dz| / 2; dz within the export's RTOL
  assert predict_cli.main([f"--model={out}", "--json", str(tmp_path / "square.png"),
                           str(tmp_path / "wide.png")]) == 0
  names = report["classes"]["names"]
  for line, p in zip(capsys.readouterr().out.splitlines(), probs):
    predictions = json.loads(line)["predictions"]
    got = [q["probability"] for q in predictions]
    assert len(got) == 5 and got == sorted(got, reverse=True)
    for q in predictions:
      assert abs(q["probability"] - p[q["class"]]) <= tol and q["name"] == names[q["class"]]
    assert np.delete(p, [q["class"] for q in predictions]).max() <= min(got) + 2 * tol


def test_imagenet_run_without_its_data_names_random_check_images(exported_224, tmp_path,
                                                                 capsys, caplog):
  run = exported_224[2]
  assert export_cli.main([f"--workdir={run}", f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1
  assert "imagenet2012 is not prepared" in err and "--check_images=random" in err
  assert not [r for r in caplog.records if r.levelno >= 30]  # no TFDS warning before it
  assert not (tmp_path / "out").exists()


def write_config(run_dir, config):
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump(workdir.config_to_dict(config), f)


def test_check_images_of_in_memory_data_at_224(tmp_path):
  """A CIFAR-style network trained on 224x224 synthetic arrays: checked on those, and a
  dataset whose images differ from the trained shape is refused."""
  c = default_config.get_config("smoke")
  c.synthetic.update(dict(train_size=8, test_size=6, num_classes=10, image_size=224))
  write_config(tmp_path / "run", c)
  data = checks.check_images(str(tmp_path / "run"), 4, (224, 224, 3), "test")
  x_train, _, x_test, y_test = datasets.synthetic_arrays(8, 6, 10, 224)
  np.testing.assert_array_equal(data.images, x_test[:4])
  np.testing.assert_array_equal(data.labels, y_test[:4])
  mean, _ = datasets.arrays.channel_stats(x_train)
  np.testing.assert_array_equal(data.mean, mean)
  assert data.description["split"] == "test" and data.description["num_images"] == 4
  assert checks.preprocessing(workdir.read_config(str(tmp_path / "run")), (224, 224, 3)) == {
      "method": "resize"}
  with pytest.raises(UserError, match=r"trained on \(32, 32, 3\)"):
    checks.check_images(str(tmp_path / "run"), 4, (32, 32, 3), "test")
  # random: the documented images, the dataset's normalisation all the same
  rnd = checks.check_images(str(tmp_path / "run"), 3, (224, 224, 3), "random")
  np.testing.assert_array_equal(rnd.images, documented_random_images(3, 224, 3))
  np.testing.assert_array_equal(rnd.mean, mean)
  assert rnd.labels is None


def test_streamed_run_is_checked_on_its_validation_images_as_evaluated(tmp_path):
  """An ImageNet-style run (configs/imagenet smoke: generated JPEGs streamed at 64x64,
  eval resize 73): the check images are its first validation images, resized and
  centre-cropped by the input pipeline; experiments.predict's own resize + crop of the
  same decoded pixels agrees with them to rounding."""
  from configs.imagenet import default as imagenet_config  # pylint: disable=g-import-not-at-top
  from jointrd_jax.deploy import predict  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  c = imagenet_config.get_config("smoke")
  c.data_dir = str(tmp_path / "data")
  c.synthetic.update(dict(train_size=6, test_size=6, num_classes=3))
  write_config(tmp_path / "run", c)
  cfg = workdir.read_config(str(tmp_path / "run"))
  assert checks.is_streamed(cfg)
  assert checks.preprocessing(cfg, (64, 64, 3)) == {"method": "center_crop", "resize": 73}
  data = checks.check_images(str(tmp_path / "run"), 5, (64, 64, 3), "test")
  assert data.images.shape == (5, 64, 64, 3) and data.description["split"] == "val"
  np.testing.assert_array_equal(data.labels, [0, 0, 1, 1, 2])  # 2 per class, sorted
  np.testing.assert_allclose(data.mean, IMAGENET_MEAN, rtol=1e-7)
  np.testing.assert_allclose(data.std, IMAGENET_STD, rtol=1e-7)
  val = next((tmp_path / "data").iterdir()) / "val"
  files = [f for d in sorted(val.iterdir()) for f in sorted(d.iterdir())][:5]
  for f, x in zip(files, data.images):
    # Pillow decodes as the pipeline does (the same pixels), then predict's Pillow resize +
    # crop. Both are the antialiased triangle filter on the same geometry; the pipeline
    # rounds once (float), Pillow after each of its two passes: within 1.5 of each other,
    # so <= 1 as integers.
    pixels = np.asarray(Image.open(f).convert("RGB"))
    got = predict.preprocess(Image.fromarray(pixels), (64, 64, 3),
                             {"method": "center_crop", "resize": 73})
    assert np.abs(got.astype(int) - x.astype(int)).max() <= 1, f


def test_random_check_images_of_a_cifar_run_without_data(tmp_path):
  """CIFAR's normalisation is known without its data, so --check_images=random works."""
  make_run(tmp_path / "run", arch="resnet10", dataset="cifar100",
           data_dir=str(tmp_path / "no_data"))
  data = checks.check_images(str(tmp_path / "run"), 2, (32, 32, 3), "random")
  np.testing.assert_array_equal(data.mean, np.float32([0.5071, 0.4865, 0.4409]))
  np.testing.assert_array_equal(data.std, np.float32([0.2673, 0.2564, 0.2762]))
  with pytest.raises(UserError, match="--check_images=random"):
    checks.check_images(str(tmp_path / "run"), 2, (32, 32, 3), "test")


# ------------------------------------------------------------ class names


def test_class_names_of_each_dataset(tmp_path):
  names = class_names.CIFAR100
  assert len(names) == 100 and len(set(names)) == 100 and list(names) == sorted(names)
  assert names[:8] == ("apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee",
                       "beetle")
  assert names[-3:] == ("wolf", "woman", "worm")
  assert class_names.CIFAR10 == ("airplane", "automobile", "bird", "cat", "deer", "dog",
                                 "frog", "horse", "ship", "truck")
  assert sources.get("cifar100").class_names(100)[0] == names
  assert sources.get("CIFAR10").class_names(10)[0][3] == "cat"
  generic = tuple(f"class_{i}" for i in range(10))
  for dataset in ("synthetic", "npz:/some/file.npz"):
    assert sources.get(dataset).class_names(10)[0] == generic
  # a count that does not fit the network: generic names, and the source says why
  got, source = sources.get("cifar100").class_names(10)
  assert got == generic and "100 names" in source
  synsets, _ = sources.get("imagenet2012").class_names(1000)
  assert len(synsets) == 1000 and synsets[0] == "n01440764" and synsets[-1] == "n15075141"
  for split in ("train", "val"):
    for c in ("zebra", "ant", ".hidden"):
      (tmp_path / split / c).mkdir(parents=True)
  (tmp_path / "train" / "notes.txt").write_text("not a class")
  assert sources.get(f"imagefolder:{tmp_path}").class_names(3)[0] == (".hidden", "ant", "zebra")
  assert sources.get(f"imagefolder:{tmp_path}/missing").class_names(3)[0] == generic[:3]


def test_help_describes_every_flag_with_its_default(capsys):
  assert_every_flag_ends_with_its_default(export_cli.parser(), shown={
      "overwrite": "refuse", "calibration_dir": "the training images",
      "num_images": "all test images of in-memory data, 1000 of streamed data or random "
                    "images"})
  with pytest.raises(SystemExit) as e:
    export_cli.main(["--help"])
  assert e.value.code == 0 and "--check_images" in capsys.readouterr().out


def test_usage_mistakes_are_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    export_cli.main(["--out=/tmp/x"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1
  assert "--workdir" in err


def test_overwrite_replaces_the_old_export_only_when_done(tmp_path, capsys):
  """--overwrite: the new export is built beside --out and replaces the old one whole
  (its stray files included); nothing of the staging folder stays. The run is the `resnet`
  preset's (shortcuts everywhere, no teacher): its network is a ResNet, not a student."""
  make_run(tmp_path / "run", arch="resnet10", shortcuts="all", dirac="none")
  out = tmp_path / "out"
  out.mkdir()
  (out / "old.txt").write_text("an old export's file")
  assert export_cli.main([f"--workdir={tmp_path / 'run'}", f"--out={out}", "--overwrite",
                          "--num_images=4"]) == 0
  assert "old.txt" not in os.listdir(out) and "export.json" in os.listdir(out)
  assert sorted(os.listdir(tmp_path)) == ["out", "run"]
  printed = capsys.readouterr().out
  assert f"exported the ResNet (with shortcuts) of {tmp_path / 'run'} (resnet) to" in printed
  card = (out / "README.md").read_text()
  assert "student" not in printed + card
  assert "\n# ResNet (with shortcuts): resnet10 on synthetic\n" in card
  assert "folded into biased convolutions, its shortcuts kept" in card
  assert "plain biased" not in card and "plain-cnn" not in card
  assert "knowledge-distillation" not in card and "- Teacher:" not in card
