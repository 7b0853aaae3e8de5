"""The inference benchmark on the deployment runtimes (LiteRT, ONNX Runtime) and its
accuracy-against-latency plot: a tiny network (ResNet-10, width 8, 16x16, 10 classes)
converted once into the test session's cache, timed at batch 1 and 2 on 1 thread; two fake
trained runs with hand-written exports (the schema of issue 20) for `--runs`."""
import io
import json
import os
import random
import shutil
import sys

import pytest

from experiments import inference_benchmark as bench
from jointrd_jax import models
from jointrd_jax.benchmarking import deployment, pareto, runtime_case
from jointrd_jax.deploy import package, runtimes
from jointrd_jax.errors import UserError

pytest.importorskip("ai_edge_litert")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

NET = deployment.Network("resnet10", 8, "none", 16, 10)
TINY = ["--arch=resnet10", "--width=8", "--image_size=16", "--num_classes=10",
        "--shortcuts=none", "--batch_sizes=1,2", "--threads=1", "--iters=3", "--warmup=1"]


@pytest.fixture(scope="module")
def files():
  """`{(runtime, precision): path}` of NET, converted (or found) in the session's cache."""
  out = {}
  for runtime in deployment.DEPLOYMENT_RUNTIMES:
    paths = deployment.model_files([NET], runtime, deployment.PRECISIONS, log=lambda m: None)
    out.update({(runtime, p): paths[NET, p] for p in deployment.PRECISIONS})
  return out


@pytest.fixture(scope="module", params=deployment.DEPLOYMENT_RUNTIMES)
def runtime_run(request, files):  # pylint: disable=redefined-outer-name,unused-argument
  out = io.StringIO()
  results = bench.main([f"--runtime={request.param}"] + TINY, out=out)
  return request.param, results, out.getvalue()


def test_runtime_records_have_sane_fields(runtime_run, files):  # pylint: disable=redefined-outer-name
  runtime, results, text = runtime_run
  lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
  assert lines == json.loads(json.dumps(results))
  assert [(r["batch_size"], r["precision"]) for r in results] == [
      (1, "fp32"), (1, "int8"), (2, "fp32"), (2, "int8")]
  for r in results:
    assert r["runtime"] == runtime and r["threads"] == 1 and r["shortcuts"] == "none"
    assert r["model_path"] == files[runtime, r["precision"]]
    assert r["model_bytes"] == os.path.getsize(r["model_path"])
    assert r["output_shape"] == [r["batch_size"], 10]
    assert r["iters_timed"] == 3 and r["load_ms"] > 0
    assert 0 < r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]
    m = r["memory"]
    # VmHWM after the calls >= VmRSS after loading (both read after the peak's reset).
    assert m["peak_rss_growth_bytes"] >= m["load_rss_growth_bytes"] and m[
        "peak_rss_growth_bytes"] > 0
  # LiteRT's own package, not the deprecated tf.lite.Interpreter.
  module = "ai_edge_litert" if runtime == "litert" else "onnxruntime"
  assert {(r["runtime_module"], r["runtime_module_version"]) for r in results} == {
      (module, sys.modules[module].__version__)}
  assert f"(run by {module} {sys.modules[module].__version__})" in text
  by = {(r["batch_size"], r["precision"]): r for r in results}
  assert by[1, "int8"]["model_bytes"] < by[1, "fp32"]["model_bytes"]
  table = text[text.index("network "):].splitlines()
  assert len(table) == 2 + 4 and table[2].split()[:5] == ["student", "none", "fp32", "1", "1"]


def test_converted_models_are_reused(files):  # pylint: disable=redefined-outer-name
  logged = []
  mtimes = {k: os.path.getmtime(p) for k, p in files.items()}
  paths = deployment.model_files([NET], "onnxruntime", ("fp32", "int8"), log=logged.append)
  assert [paths[NET, p] for p in ("fp32", "int8")] == [files["onnxruntime", p]
                                                      for p in ("fp32", "int8")]
  assert logged[-1].startswith("ONNX Runtime models: 2 reused, 0 converted, cached in ")
  assert {k: os.path.getmtime(p) for k, p in files.items()} == mtimes


def test_missing_runtime_names_the_package(monkeypatch, capsys):
  real = deployment.importlib.util.find_spec
  monkeypatch.setattr(deployment.importlib.util, "find_spec",
                      lambda name, *a: None if name == "onnxruntime" else real(name, *a))
  with pytest.raises(SystemExit) as e:
    bench.main(["--runtime=onnxruntime"], out=io.StringIO())
  assert e.value.code == 2
  assert capsys.readouterr().err == ("error: --runtime=onnxruntime: ONNX Runtime is not "
                                     "installed here: pip install onnxruntime.\n")


# ------------------------------------------------------------------ --runs and the front


def _fake_run(root, name, top1, files, int8=None, export=None):  # pylint: disable=redefined-outer-name
  """A finished run (summary.json as train.py writes it) and its export directory with
  the model files of NET and an export.json following the issue-20 schema."""
  net = models.build("resnet10", "none", "reparam", num_classes=10, width=8)
  run = os.path.join(root, name)
  os.makedirs(run)
  with open(os.path.join(run, "summary.json"), "w") as f:
    json.dump({"method": name, "num_eval": 10000, "final": {"epoch": 200, "student_top1": top1},
               "student": models.describe(net), "config": {"model": {"arch": "resnet10"}}}, f)
  export = export or os.path.join(run, "export")
  os.makedirs(export)
  report = {"architecture": dict(models.describe(net), folded=True), "passed": True,
            "input": {"shape": [None, 16, 16, 3]}, "files": {}}
  for (runtime, precision), path in files.items():
    if precision == "fp32" or int8:
      shutil.copy(path, os.path.join(export, deployment.FILE_NAMES[runtime, precision]))
  if int8:
    report["int8"] = {"tflite_int8": int8, "onnx_int8": int8}
  with open(os.path.join(export, "export.json"), "w") as f:
    json.dump(report, f)
  package.write_checksums(export)  # a package, as the export writes it
  return run, export


INT8 = {"file": "model_int8.tflite", "num_images": 1000, "top1_fp32": 0.612,
        "top1_int8": 0.601, "top1_drop_points": 1.1, "agreement": 0.97}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, files):  # pylint: disable=redefined-outer-name
  root = str(tmp_path_factory.mktemp("runs"))
  plain = _fake_run(root, "plain", 61.5, files, int8=INT8)
  jointrd = _fake_run(root, "jointrd", 71.25, files,
                      export=os.path.join(root, "exports", "jointrd"))
  out = os.path.join(root, "pareto")
  text = io.StringIO()
  pts = bench.main([f"--runs={plain[0]},{jointrd[0]}={jointrd[1]}", f"--out={out}",
                    "--iters=3", "--warmup=1"], out=text)
  return pts, out, text.getvalue()


def test_runs_give_the_fixtures_points(runs):  # pylint: disable=redefined-outer-name
  pts, out, text = runs
  got = {(p["name"], p["precision"]): p for p in pts}
  assert set(got) == {("plain", "fp32"), ("plain", "int8"), ("jointrd", "fp32")}
  assert got["plain", "fp32"]["top1"] == 61.5 and got["jointrd", "fp32"]["top1"] == 71.25
  assert got["plain", "int8"]["top1"] == pytest.approx(60.1)  # 100 * 0.601
  assert got["plain", "int8"]["fp32_top1_same_images"] == pytest.approx(61.2)
  assert got["plain", "int8"]["top1_images"] == 1000
  lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
  measured = {(l["name"], l["precision"]): l["latency_ms_median"] for l in lines}
  assert measured == {k: p["latency_ms"] for k, p in got.items()}
  assert all(l["runtime_module"] == "ai_edge_litert" for l in lines)  # --runs: litert
  version = sys.modules["ai_edge_litert"].__version__
  assert all(l["runtime_module_version"] == version for l in lines)
  with open(os.path.join(out, "pareto.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  md = open(os.path.join(out, "pareto.md")).read()
  rows = [l for l in md.splitlines() if "| plain |" in l or "| jointrd |" in l]
  assert len(rows) == 3
  # Numbered in the order given, labelled by method (the figure's legend: test_pareto_plot).
  assert sorted(r.split(" | ")[:3] for r in rows) == [
      ["| 1", "plain", "Plain CNN, from scratch"], ["| 1", "plain", "Plain CNN, from scratch"],
      ["| 2", "jointrd", "JointRD (ours)"]]
  assert {(p["name"], p["number"], p["label"]) for p in pts} == {
      ("plain", 1, "Plain CNN, from scratch"), ("jointrd", 2, "JointRD (ours)")}
  on = pareto.front(pts)
  assert sum(r.endswith("| yes |") for r in rows) == sum(on)
  assert "- jointrd: fp32 only: its export has no int8 models" in md
  assert md.splitlines()[2].startswith("Machine: ")
  assert f"LiteRT {version} (run by ai_edge_litert {version}), batch 1" in md.splitlines()[2]


def _brute_front(pts):
  return [not any(q["latency_ms"] <= p["latency_ms"] and q["top1"] >= p["top1"]
                  and (q["latency_ms"] < p["latency_ms"] or q["top1"] > p["top1"])
                  for q in pts) for p in pts]


def test_front_matches_brute_force():
  rng = random.Random(0)
  for n in list(range(1, 9)) * 40:  # small integer grids: many ties
    pts = [{"latency_ms": rng.randint(1, 4), "top1": rng.randint(60, 63)} for _ in range(n)]
    assert pareto.front(pts) == _brute_front(pts), pts


# ------------------------------------------------------------------ bad input, one line


def _error(capsys, argv):
  with pytest.raises(SystemExit) as e:
    bench.main(argv, out=io.StringIO())
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1, err
  return err


def test_runs_bad_input_one_line(tmp_path, files, capsys):  # pylint: disable=redefined-outer-name
  root = str(tmp_path)
  run, export = _fake_run(root, "a", 50.0, files)
  out = os.path.join(root, "out")
  os.makedirs(os.path.join(root, "b"))
  with open(os.path.join(root, "b", "summary.json"), "w") as f:
    json.dump({"final": {"student_top1": 1.0}, "student": {"width": 8}}, f)
  err = _error(capsys, [f"--runs={os.path.join(root, 'b')}", f"--out={out}"])
  assert "has no export in" in err and "python -m experiments.export --workdir=" in err
  assert "--quantize=int8" in err
  err = _error(capsys, [f"--runs={run}={export}", f"--out={out}", "--runtime=xla"])
  assert "--runtime=litert" in err
  err = _error(capsys, [f"--runs={run},{run}/", f"--out={out}"])
  assert "named twice" in err
  assert "has no summary.json" in _error(capsys, [f"--runs={export}", f"--out={out}"])
  # An export of another network than the run's.
  other = os.path.join(root, "other")
  shutil.copytree(export, other)
  report = json.load(open(os.path.join(other, "export.json")))
  report["architecture"]["width"] = 16
  json.dump(report, open(os.path.join(other, "export.json"), "w"))
  package.write_checksums(other)
  assert "holds another network" in _error(capsys, [f"--runs={run}={other}", f"--out={out}"])
  assert not os.path.exists(out)  # nothing written before validation
  err = _error(capsys, [f"--runs={run}", "--out=/proc/x"])  # before anything is measured
  assert "cannot write to --out=/proc/x (cannot create a directory in /proc: " in err
  os.makedirs(out)
  open(os.path.join(out, "pareto.md"), "w").close()
  assert "--overwrite" in _error(capsys, [f"--runs={run}", f"--out={out}"])
  assert os.listdir(out) == ["pareto.md"]


def test_runs_verify_each_package_as_predict_does(tmp_path, files, capsys):  # pylint: disable=redefined-outer-name
  run, export = _fake_run(str(tmp_path), "a", 50.0, files, int8=INT8)
  out = str(tmp_path / "out")
  with open(os.path.join(export, "model_int8.tflite"), "r+b") as f:
    f.seek(100)
    byte = f.read(1)
    f.seek(100)
    f.write(bytes([byte[0] ^ 1]))
  err = _error(capsys, [f"--runs={run}", f"--out={out}"])
  assert err.startswith(f"error: model_int8.tflite in {export} does not match its SHA-256 in "
                        "SHA256SUMS"), err
  assert "download the package again" in err
  with pytest.raises(UserError, match="does not match its SHA-256"):  # predict's own refusal
    package.verify(export)
  os.remove(os.path.join(export, "SHA256SUMS"))
  err = _error(capsys, [f"--runs={run}", f"--out={out}"])
  assert "holds no SHA256SUMS" in err and "--noverify" in err
  assert pareto.read_runs([(run, export)], "litert", verify=False)[0]["files"]["int8"]
  assert not os.path.exists(out)
  assert "--noverify apply with --runs only" in _error(capsys, ["--runtime=litert",
                                                                "--noverify"])


@pytest.fixture()
def broken_litert(monkeypatch):
  """ai_edge_litert installed (found) but its interpreter cannot be imported."""
  import ai_edge_litert  # pylint: disable=g-import-not-at-top
  monkeypatch.delattr(ai_edge_litert, "interpreter", raising=False)
  monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)


def test_unimportable_litert_is_refused_not_replaced_by_tf_lite(broken_litert, files, capsys):  # pylint: disable=redefined-outer-name,unused-argument
  err = _error(capsys, ["--runtime=litert"] + TINY)
  assert err.startswith("error: --runtime=litert: LiteRT is installed but "
                        "ai_edge_litert.interpreter cannot be imported ("), err
  assert err.endswith(": pip install --force-reinstall ai-edge-litert.\n")
  path = files["litert", "fp32"]
  with pytest.raises(UserError, match="pip install ai-edge-litert"):
    runtimes.TFLiteModel(path, fallback=False)
  # The case's process refuses in one line (`measure` passes it on) instead of timing tf.lite.
  spec = {"path": path, "runtime": "litert", "threads": 1, "batch": 1,
          "image_shape": [16, 16, 3], "iters": 1, "warmup": 1, "time_budget_s": 1.0}
  assert runtime_case._main(["", json.dumps(spec)]) == 2  # pylint: disable=protected-access
  out, err = capsys.readouterr()
  assert out == "" and err.startswith("error: LiteRT's interpreter (ai_edge_litert) cannot "
                                      "be imported here") and err.count("\n") == 1
  # predict keeps its fallback, and says so.
  assert runtimes.TFLiteModel(path).runtime == "tf.lite"
  err = capsys.readouterr().err
  assert err.startswith("warning: LiteRT's interpreter (ai_edge_litert) cannot be imported")
  assert "tf.lite's deprecated interpreter instead" in err and err.count("\n") == 1
