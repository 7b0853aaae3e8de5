"""Deployment export end to end on a tiny synthetic run: fold check, npz, SavedModel, TFLite."""
import json
import os
import warnings

import jax
import numpy as np
import pytest

from configs import default as default_config
from experiments import export as export_cli
from jointrd_jax import checkpoints, export, fold, datasets, models, workdir
from jointrd_jax.errors import UserError

NUM_CLASSES = 10
TEST_SIZE = 32


def random_variables(net, seed=0):
  """Variables drawn with numpy (no XLA compile of the threefry init), with non-trivial
  BatchNorm statistics and Dirac a/b, so that folding has something to fold."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var", "dirac_a"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.2, leaf.shape).astype(np.float32)  # bias, mean, dirac_b

  return jax.tree_util.tree_map_with_path(draw, shapes)


def make_run(run_dir, arch="resnet14", shortcuts="projection", dirac="reparam", dataset="synthetic",
             data_dir=""):
  net = models.build(arch, shortcuts, dirac, num_classes=NUM_CLASSES, width=4)
  variables = random_variables(net)
  c = default_config.get_config("smoke")
  c.dataset = dataset
  c.data_dir = data_dir
  c.download = False
  c.synthetic.update(dict(train_size=64, test_size=TEST_SIZE, num_classes=NUM_CLASSES))
  c.model.update(dict(arch=arch, width=4, shortcuts=shortcuts, dirac=dirac))
  checkpoints.save_network(str(run_dir), net, variables, image_shape=(32, 32, 3),
                           config_dict=workdir.config_to_dict(c))
  return net, variables


def check_data():
  x_train, _, x_test, y_test = datasets.synthetic_arrays(64, TEST_SIZE, NUM_CLASSES, 32)
  mean, std = datasets.arrays._channel_stats(x_train)  # pylint: disable=protected-access
  return x_test, y_test, mean, std


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
  assert sorted(os.listdir(out)) == ["export.json", "model.tflite", "params.npz", "saved_model"]
  assert report["passed"] is True
  assert set(report["checks"]) == {"fold", "saved_model", "tflite"}
  for name, c in report["checks"].items():
    assert c["passed"] and c["num_images"] == 20, name
    assert c["top1_agreement"] == 1.0 and c["top1_changed"] == 0
    assert c["max_abs_diff"] <= export.RTOL * c["max_abs_logit"]
    assert c["max_abs_logit"] > 0.1  # the logits are not trivially small
  arch = report["architecture"]
  assert (arch["kind"], arch["shortcuts"], arch["dirac"], arch["width"], arch["num_classes"]) == (
      "bottleneck", "projection", "reparam", 4, NUM_CLASSES)
  assert report["input"]["dtype"] == "uint8" and report["input"]["shape"] == [None, 32, 32, 3]
  assert report["check_data"] == {**report["check_data"], "dataset": "synthetic", "split": "test",
                                  "num_images": 20}
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
  # The deployed models take raw uint8 images, any batch size.
  tf = export._tf()  # pylint: disable=protected-access
  with warnings.catch_warnings():  # its deprecation notice
    warnings.simplefilter("ignore")
    interpreter = tf.lite.Interpreter(model_path=str(out / "model.tflite"))
  inp = interpreter.get_input_details()[0]
  assert inp["dtype"] == np.uint8 and list(inp["shape_signature"]) == [-1, 32, 32, 3]
  ops = {d["op_name"] for d in interpreter._get_ops_details()}  # pylint: disable=protected-access
  assert "CONV_2D" in ops and not any("Flex" in o or "CUSTOM" in o for o in ops), ops
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
  with pytest.raises(UserError, match="folded network differs"):
    export.export(str(tmp_path / "run"), str(out), log=lambda *_: None)
  report = json.loads((out / "export.json").read_text())
  assert report["passed"] is False and report["checks"]["fold"]["passed"] is False
  assert sorted(os.listdir(out)) == ["export.json"]


def test_compare_flags_changed_predictions():
  ref = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
  assert export.compare(ref, ref + 1e-6)["passed"]
  c = export.compare(ref, ref + np.array([[0.0, 0.0], [2.5, 0.0]], np.float32))
  assert not c["passed"] and c["top1_changed"] == 1 and c["top1_agreement"] == 0.5
  assert not export.compare(ref, ref * (1 + 2e-4))["passed"]  # beyond rtol 1e-4


def test_absent_dataset_is_a_user_error(tmp_path, capsys):
  make_run(tmp_path / "run", arch="resnet10", dataset="cifar10",
           data_dir=str(tmp_path / "no_data"))
  assert export_cli.main([f"--workdir={tmp_path / 'run'}", f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and "cifar10" in err and "not prepared" in err
  assert not (tmp_path / "out").exists()


def test_not_a_run_is_a_user_error(tmp_path, capsys):
  assert export_cli.main([f"--workdir={tmp_path / 'nothing'}", f"--out={tmp_path / 'out'}"]) == 2
  assert "holds no config.json" in capsys.readouterr().err
