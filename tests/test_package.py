"""The model package an export writes: safetensors weights, the model card, SHA256SUMS;
`deploy.load` from a folder and from a Hugging Face Hub cache (no network); tampered
files refused by `deploy.load` and `predict` with one line.

One tiny run (resnet10, width 4, random weights with non-trivial BatchNorm and Dirac
parameters, tests/export_helpers.py make_run) laid out as seed 1 of a sweep row
(`SWEEP/runs/jointrd/seed<k>`, as jointrd_jax.sweep places runs), with sibling seeds whose
summaries this test writes, is exported once for the whole module.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from safetensors import numpy as safetensors_np

from experiments import predict as predict_cli
from jointrd_jax import deploy, models
from jointrd_jax.training import checkpoints
from jointrd_jax.deploy import card, checks, export, package, predict
from jointrd_jax.errors import UserError
from export_helpers import check_data, make_run, random_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_IMAGES = 20
FINAL = {0: 40.0, 1: 50.0, 2: 45.0}  # final-epoch top-1 of the finished seeds (seed 1: ours)
REVISION = "0123456789abcdef0123456789abcdef01234567"


def _summary(cfg, top1, epochs_done):
  return {"method": cfg["method"], "dataset": "synthetic", "eval_split": "test",
          "num_eval": 32, "epochs_done": epochs_done,
          "final": {"epoch": epochs_done, "student_top1": top1, "split": "eval"},
          "best": {"epoch": epochs_done, "student_top1": top1},
          "terms": [{"name": "jointrd", "weight": 1.0, "dc": 0.5}], "config": cfg}


def _write_run_files(d, cfg, summary=None):
  os.makedirs(d, exist_ok=True)
  with open(os.path.join(d, "config.json"), "w") as f:
    json.dump(cfg, f)
  if summary is not None:
    with open(os.path.join(d, "summary.json"), "w") as f:
      json.dump(summary, f)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  base = tmp_path_factory.mktemp("package")
  sweep = base / "sweep"
  run = sweep / "runs" / "jointrd" / "seed1"
  make_run(run, arch="resnet10")
  cfg = json.loads((run / "config.json").read_text())
  cfg.update(method="jointrd", seed=1)
  epochs = cfg["num_epochs"]
  _write_run_files(run, cfg, _summary(cfg, FINAL[1], epochs))
  for seed in (0, 2):
    c = dict(cfg, seed=seed)
    _write_run_files(sweep / "runs" / "jointrd" / f"seed{seed}", c,
                     _summary(c, FINAL[seed], epochs))
  c = dict(cfg, seed=3)  # unfinished: not in the mean
  _write_run_files(sweep / "runs" / "jointrd" / "seed3", c, _summary(c, 99.0, epochs - 1))
  c = dict(cfg, seed=4, learning_rate=123.0)  # another config in the same place: not either
  _write_run_files(sweep / "runs" / "jointrd" / "seed4", c, _summary(c, 99.0, epochs))
  (sweep / "configs").mkdir()
  (sweep / "configs" / "jointrd-seed1.json").write_text(json.dumps(cfg))
  (sweep / "sweep_config.json").write_text("{}")
  out = base / "out"
  export.export(str(run), str(out), num_images=NUM_IMAGES, log=lambda *_: None)
  net, variables, _ = checkpoints.load_network(str(run))
  report = json.loads((out / "export.json").read_text())
  images = check_data()[0][:NUM_IMAGES]  # the export's check images
  reference = checks.in_batches(
      checks.inference_fn(net, variables, report["input"]["mean"], report["input"]["std"]),
      images)
  return dict(base=base, run=run, out=out, net=net, variables=variables, report=report,
              images=images, reference=reference, cfg=cfg)


def _all_files(d):
  return sorted(os.path.relpath(os.path.join(r, f), d).replace(os.sep, "/")
                for r, _, fs in os.walk(d) for f in fs)


def test_package_files_and_checksums(exported):
  out = exported["out"]
  files = _all_files(out)
  for name in ("weights_folded.safetensors", "weights_trained.safetensors", "README.md",
               "SHA256SUMS", "training_config.json", "params.npz", "model.tflite",
               "export.json", "labels.txt", "saved_model/saved_model.pb"):
    assert name in files, name
  # SHA256SUMS: `<hex>  <path>` for every other file, sorted, hashed here independently.
  want = "".join(f"{hashlib.sha256((out / f).read_bytes()).hexdigest()}  {f}\n"
                 for f in files if f != "SHA256SUMS")
  assert (out / "SHA256SUMS").read_text() == want
  assert any(line.endswith("  saved_model/variables/variables.index")
             for line in want.splitlines())
  assert json.loads((out / "training_config.json").read_text()) == exported["cfg"]
  # Every file as `open` writes it: 0666 less the umask (safetensors' own writer: 0600).
  modes = {f: (out / f).stat().st_mode & 0o777 for f in files}
  assert set(modes.values()) == {0o666 & ~_umask()}, modes
  if shutil.which("sha256sum"):
    proc = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _flatten(tree, prefix=""):
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else k
    out.update(_flatten(v, key) if hasattr(v, "items") else {key: np.asarray(v)})
  return out


def test_safetensors_hold_the_npz_and_the_trained_variables(exported):
  out = exported["out"]
  folded = safetensors_np.load_file(out / "weights_folded.safetensors")
  with np.load(out / "params.npz") as npz:
    assert sorted(folded) == sorted(npz.files)
    for k in npz.files:
      np.testing.assert_array_equal(folded[k], npz[k], err_msg=k)
      assert folded[k].dtype == npz[k].dtype == np.float32
  trained = safetensors_np.load_file(out / "weights_trained.safetensors")
  want = _flatten({"params": exported["variables"]["params"],
                   "batch_stats": exported["variables"]["batch_stats"]})
  assert sorted(trained) == sorted(want)
  assert "params/stage1_block0/conv1/conv/dirac_a" in trained
  assert any(k.startswith("batch_stats/") and k.endswith("/var") for k in trained)
  for k, v in want.items():
    np.testing.assert_array_equal(trained[k], v, err_msg=k)


def test_load_reproduces_the_exports_logits(exported):
  out, report, images, reference = (exported[k] for k in ("out", "report", "images",
                                                          "reference"))
  model = deploy.load(str(out))
  assert model.folded and model.module.folded and model.module.conv == "none"
  assert set(model.variables) == {"params"}
  assert model.input_shape == (32, 32, 3) and model.num_classes == 10
  assert list(model.class_names) == report["classes"]["names"]
  assert model.preprocessing == report["preprocessing"]
  np.testing.assert_array_equal(model.mean, np.float32(report["input"]["mean"]))
  logits = model(images)
  assert logits.dtype == np.float32 and logits.shape == (NUM_IMAGES, 10)
  # The export's own criterion against the trained network; and the very logits of the
  # export's fold check: the same folded network on the same images gives the same
  # max |diff| to the bit.
  c = checks.compare(reference, logits)
  assert c["passed"], c
  assert c["max_abs_diff"] == report["checks"]["fold"]["max_abs_diff"]
  lite = export.run_tflite(str(out / "model.tflite"), images)
  assert checks.compare(lite, logits)["passed"]
  # The trained network (BatchNorm, Dirac): the same computation as the reference.
  trained = deploy.load(str(out), folded=False)
  assert not trained.module.folded and set(trained.variables) == {"params", "batch_stats"}
  np.testing.assert_array_equal(trained(images), reference)


def _umask():
  mask = os.umask(0)
  os.umask(mask)
  return mask


def test_load_and_predict_refuse_wrong_images_saying_what_is_wrong(exported):
  model = deploy.load(str(exported["out"]))
  exported_model = predict.open_export(str(exported["out"]), load=False)
  x = exported["images"]
  want = "expected uint8 images of shape (N, 32, 32, 3)"
  cases = [(x.astype(np.float32), "got float32 (20, 32, 32, 3)"),
           (x[0], "got uint8 (32, 32, 3): add the batch axis (images[None] for one image)"),
           (x[..., :1], "got uint8 (20, 32, 32, 1): the model takes 3-channel images"),
           (x[:, :16], "got uint8 (20, 16, 32, 3): resize them to 32x32"),
           (x[:0], "got uint8 (0, 32, 32, 3): no images")]
  for fn in (model, exported_model.logits):  # the check comes before any runtime loads
    for images, text in cases:
      with pytest.raises(UserError) as e:
        fn(images)
      assert _one_line(e) and str(e.value).startswith(want) and text in str(e.value), e.value
  assert exported_model.runtime is None


def test_load_errors_name_its_argument_not_the_cli_flag(exported, tmp_path):
  (tmp_path / "file").write_text("")
  for path, text in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "file", "is a file"),
                     (tmp_path, "holds no export.json")):
    with pytest.raises(UserError) as e:
      deploy.load(str(path))
    assert str(e.value).startswith(f"directory={str(path)!r} {text}"), e.value
    assert "--model" not in str(e.value)


def test_load_refuses_non_finite_weights_naming_the_tensor(exported, tmp_path):
  d = _copy(exported, tmp_path)
  path = d / "weights_folded.safetensors"
  flat = safetensors_np.load_file(path)
  key = sorted(flat)[3]
  flat[key] = flat[key].copy()
  flat[key].flat[1] = np.nan
  package.save_safetensors(str(path), flat)
  package.write_checksums(str(d))  # the checksums agree: only the values are wrong
  with pytest.raises(UserError) as e:
    deploy.load(str(d))
  assert _one_line(e) and f"tensor {key} holds 1 non-finite value(s)" in str(e.value)
  assert "weights_folded.safetensors" in str(e.value)
  deploy.load(str(d), folded=False)  # the trained weights are intact


def _copy(exported, tmp_path):
  d = tmp_path / "copy"
  shutil.copytree(exported["out"], d)
  return d


def _flip(path):
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0x01
  path.write_bytes(bytes(data))


def _one_line(e):
  return "\n" not in str(e.value) and str(e.value)


@pytest.mark.parametrize("name", ["model.tflite", "weights_folded.safetensors",
                                  "saved_model/variables/variables.data-00000-of-00001",
                                  "export.json", "labels.txt"])
def test_a_flipped_byte_is_refused(exported, tmp_path, name):
  d = _copy(exported, tmp_path)
  _flip(d / name)
  for fn in (lambda: deploy.load(str(d)), lambda: predict.open_export(str(d), load=False),
             lambda: predict.open_export(str(d), "saved_model", load=False)):
    with pytest.raises(UserError) as e:
      fn()
    assert _one_line(e) and name in str(e.value) and "SHA256SUMS" in str(e.value)
    assert "re-export" in str(e.value) and "download the package again" in str(e.value)


def test_missing_unlisted_and_absent_checksums(exported, tmp_path):
  d = _copy(exported, tmp_path)
  (d / "labels.txt").unlink()
  with pytest.raises(UserError, match="labels.txt is listed in .* but missing") as e:
    deploy.load(str(d))
  assert _one_line(e)
  shutil.copy(exported["out"] / "labels.txt", d / "labels.txt")
  # A model file added after the export (not in SHA256SUMS) is not used unverified.
  sums = (d / "SHA256SUMS").read_text().splitlines(keepends=True)
  (d / "SHA256SUMS").write_text("".join(s for s in sums if not s.endswith("  model.tflite\n")))
  with pytest.raises(UserError, match="model.tflite .* is not listed in SHA256SUMS"):
    predict.open_export(str(d), load=False)
  predict.open_export(str(d), "saved_model", load=False)  # what it uses is all verified
  (d / "SHA256SUMS").write_text("".join(sums) + f"{'0' * 64}  ../outside\n")
  with pytest.raises(UserError, match="is not a sha256sum line naming a file in the folder"):
    deploy.load(str(d))
  # An export made before packages: refused, unless the caller opts out.
  (d / "SHA256SUMS").unlink()
  for fn in (lambda: deploy.load(str(d)), lambda: predict.open_export(str(d), load=False)):
    with pytest.raises(UserError, match="holds no SHA256SUMS") as e:
      fn()
    assert _one_line(e) and "verify=False" in str(e.value) and "--noverify" in str(e.value)
  assert predict.open_export(str(d), load=False, verify=False).num_classes == 10
  assert deploy.load(str(d), verify=False).num_classes == 10


def test_predict_cli_refuses_a_tampered_file_in_one_line(exported, tmp_path, capsys):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = tmp_path / "x.png"
  Image.fromarray(exported["images"][0]).save(image)
  d = _copy(exported, tmp_path)
  _flip(d / "model.tflite")
  assert predict_cli.main([f"--model={d}", str(image)]) == 2
  out, err = capsys.readouterr()
  assert out == "" and err.startswith("error: model.tflite in ") and err.count("\n") == 1
  (d / "SHA256SUMS").unlink()
  shutil.copy(exported["out"] / "model.tflite", d / "model.tflite")
  assert predict_cli.main([f"--model={d}", str(image)]) == 2
  assert "--noverify" in capsys.readouterr().err
  assert predict_cli.main([f"--model={d}", "--noverify", "--json", str(image)]) == 0
  assert json.loads(capsys.readouterr().out)["predictions"]


def test_model_card(exported):
  from huggingface_hub import ModelCard  # pylint: disable=g-import-not-at-top
  import flax, jax  # pylint: disable=g-import-not-at-top,multiple-imports
  out, report = exported["out"], exported["report"]
  text = (out / "README.md").read_text()
  meta = ModelCard.load(out / "README.md").data
  assert meta.library_name == "jointrd-jax" and meta.pipeline_tag == "image-classification"
  assert meta.metrics == ["accuracy"] and "jointrd" in meta.tags
  assert meta.eval_results[0].metric_value == FINAL[1]
  for section in ("## Method", "## Architecture", "## Dataset and classes", "## Accuracy",
                  "## Preprocessing", "## Checks", "## How it was trained",
                  "## Library versions"):
    assert section in text, section
  assert "`jointrd` (JointRD (ours))" in text and "`jointrd` x 1.0 (dc=0.5)" in text
  assert "**50.00 %** top-1 (Dirac student)" in text
  # Seeds 0, 1, 2 (3 unfinished, 4 of another config): mean 45, sample std 5.
  assert "**45.00 ± 5.00 %** final-epoch top-1, mean ± sample std over 3 seeds" in text
  assert "sweep row (sweep `sweep`, experiments.table12)" in text
  assert "seed 0: 40.00, seed 1: 50.00, seed 2: 45.00)" in text
  for name, c in report["checks"].items():
    row = next(line for line in text.splitlines() if f"(`{name}`)" in line)
    assert f"| {NUM_IMAGES} | {c['max_abs_diff']:.3e} | {c['tolerance']:.3e} |" in row
    assert row.endswith("| yes |")
  assert ("python -m experiments.main --config=configs/from_json.py:training_config.json "
          "--workdir=seed1\n") in text
  assert ("--config=configs/from_json.py:SWEEP/configs/jointrd-seed1.json "
          "--workdir=SWEEP/runs/jointrd/seed1`") in text
  # Nothing of this machine's folders: the card is published with the package.
  assert str(exported["base"]) not in text and os.path.realpath(exported["base"]) not in text
  assert "`--config.KEY=VALUE` overrides" in text and "--config=configs/jointrd.py" in text
  for lib, version in (("jax", jax.__version__), ("flax", flax.__version__),
                       ("tensorflow", report["versions"]["tensorflow"])):
    assert f"| {lib} | {version} |" in text


def test_card_renders_any_check_export_json_holds(exported):
  report = dict(exported["report"])
  report["checks"] = dict(report["checks"], onnx_int8={
      "num_images": 20, "max_abs_diff": 0.25, "tolerance": None, "top1_agreement": 0.95,
      "top1": 0.5, "agreement": 0.95, "passed": True})
  report["versions"] = dict(report["versions"], onnxruntime="9.9.9")
  text = card.render(report, run_dir=str(exported["run"]), net=exported["net"],
                     variables=exported["variables"])
  row = next(line for line in text.splitlines() if "(`onnx_int8`)" in line)
  assert row == ("| ONNX int8 (`onnx_int8`) | 20 | 0.25 | None | 0.95 | agreement: 0.95, "
                 "top1: 0.5 | yes |")
  assert "| onnxruntime | 9.9.9 |" in text


def test_card_names_a_changed_run_and_a_teacher_by_what_they_are(exported, tmp_path):
  """A run that changed its preset's terms: the card names the changes (summary.json of a
  version before identities: derived from config.json). The teacher of a run: a ResNet
  with its shortcuts kept, not a student folded into plain convolutions."""
  cfg = dict(exported["cfg"], method="kd_logits_dirac", terms="ce,dist")
  run = tmp_path / "run"
  _write_run_files(run, cfg, _summary(cfg, 50.0, cfg["num_epochs"]))
  text = card.render(exported["report"], run_dir=str(run), net=exported["net"],
                     variables=exported["variables"])
  label = "KD(logits) + Dirac, changed: terms ce,dist"
  assert f"# {label}: resnet10 Dirac student on synthetic" in text
  assert (f"- Method: `kd_logits_dirac + terms ce,dist` ({label}): KD(logits) + Dirac changed "
          "(terms ce,dist): Dirac student distilled from a frozen ResNet teacher; loss ce + 2 "
          "dist") in text
  assert "**50.00 %** top-1 (Dirac student)" in text and "- Teacher: " in text
  # A config this version cannot resolve (a term since renamed): the card names the method.
  assert card.run_identity(dict(cfg, terms="+no_such_term"), None) is None
  teacher = models.build("resnet10", "all", "none", num_classes=10, width=4)
  report = dict(exported["report"], which="teacher")
  text = card.render(report, run_dir=str(exported["run"]), net=teacher,
                     variables=random_variables(teacher))
  assert "# JointRD (ours): resnet10 ResNet teacher (with shortcuts) on synthetic" in text
  assert ("The ResNet teacher (with shortcuts) of a jointrd-jax run, exported for deployment: "
          "its BatchNorm (and any re-parameterised convolution) folded into biased "
          "convolutions, its shortcuts kept") in text
  assert "- Deployed form: folded (biased convolutions and the shortcuts, no BatchNorm" in text
  assert "plain biased" not in text and "plain-cnn" not in text


def _hub_cache(out, cache, repo="jointrd/tiny-resnet10"):
  """The layout huggingface_hub keeps: blobs by hash, a snapshot of symlinks to them per
  revision, refs/main naming the revision (no trailing newline), and no empty folders."""
  root = cache / f"models--{repo.replace('/', '--')}"
  (root / "refs").mkdir(parents=True)
  (root / "refs" / "main").write_text(REVISION)
  for rel in _all_files(out):
    data = (out / rel).read_bytes()
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = root / "snapshots" / REVISION / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, link.parent), link)
  return repo


def test_load_from_a_hub_cache_without_network(exported, tmp_path, monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  repo = _hub_cache(exported["out"], tmp_path / "hub")
  model = deploy.load(repo, cache_dir=str(tmp_path / "hub"), local_files_only=True)
  assert model.directory.endswith(os.path.join("snapshots", REVISION))
  local = deploy.load(str(exported["out"]))
  np.testing.assert_array_equal(model(exported["images"]), local(exported["images"]))
  with pytest.raises(UserError, match="cannot be found in the local Hub cache") as e:
    deploy.load("jointrd/absent", cache_dir=str(tmp_path / "hub"), local_files_only=True)
  assert _one_line(e)
  with pytest.raises(UserError, match="does not exist"):
    deploy.load(str(tmp_path / "no" / "such" / "dir"))


def test_importing_predict_and_package_stays_light():
  """predict (and the checksums it verifies with) import neither JAX nor TensorFlow;
  `deploy.load` brings JAX, never TensorFlow."""
  code = ("import sys; import jointrd_jax.deploy.predict, jointrd_jax.deploy.package; "
          "print([m for m in ('jax', 'tensorflow') if m in sys.modules]); "
          "from jointrd_jax import deploy; assert callable(deploy.load); "
          "print([m for m in ('jax', 'tensorflow') if m in sys.modules])")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                        text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.splitlines() == ["[]", "['jax']"]
