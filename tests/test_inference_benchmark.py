"""The inference benchmark: its JSON records, XLA memory fields and the analytic shortcut
memory model (hand-computed for tiny ResNet-10s, CIFAR and ImageNet, and ImageNet ResNet-50)."""
import io
import json
import os
import subprocess
import sys

import jax
import pytest

from experiments import inference_benchmark as bench
from jointrd_jax import models
from jointrd_jax.benchmarking import (deployment, inference, random_weights, runtime_case,
                                      tables, zoo_speed)
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run():
  out = io.StringIO()
  results = bench.main(["--arch=resnet10", "--width=4", "--num_classes=10", "--batch_sizes=1,8",
                        "--iters=2", "--warmup=1"], out=out)
  return results, out.getvalue()


def test_one_json_line_per_case_and_a_table(run):
  results, text = run
  lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
  assert [(r["shortcuts"], r["batch_size"]) for r in lines] == [
      ("all", 1), ("projection", 1), ("none", 1), ("all", 8), ("projection", 8), ("none", 8)]
  assert lines == json.loads(json.dumps(results))
  assert text.splitlines()[0].startswith("# machine: cpu")
  table = text[text.index("network "):].splitlines()
  assert len(table) == 2 + 6 and table[2].split()[:3] == ["teacher", "all", "1"]
  for r in results:
    assert r["network"] == ("teacher" if r["shortcuts"] == "all" else "student")
    assert r["folded"] and r["machine"]["platform"] == "cpu" and r["machine"]["cpu_count"] >= 1
    assert r["latency_ms_median"] > 0 and r["iters_timed"] == 2
    assert r["latency_ms_min"] <= r["latency_ms_median"] <= r["latency_ms_p90"]


def test_xla_memory_fields(run):
  results, _ = run
  for r in results:
    m = r["xla_memory"]
    # Arguments = folded parameters + the fp32 images.
    assert m["argument_size_in_bytes"] >= 4 * (r["num_params"] + r["batch_size"] * 32 * 32 * 3)
    assert m["output_size_in_bytes"] == 4 * r["batch_size"] * 10
    assert m["xla_peak_live_bytes_estimate"] == (m["argument_size_in_bytes"] + m[
        "output_size_in_bytes"] + m["temp_size_in_bytes"] - m["alias_size_in_bytes"])
  by = {(r["shortcuts"], r["batch_size"]): r for r in results}
  for s in ("all", "projection", "none"):  # activations scale with the batch
    assert (by[s, 8]["xla_memory"]["temp_size_in_bytes"]
            > by[s, 1]["xla_memory"]["temp_size_in_bytes"])
  # Folding leaves the teacher and the projection student the same parameters here
  # (resnet10: no projection in stage 1); `none` drops the 3 projections.
  assert by["all", 1]["num_params"] == by["projection", 1]["num_params"] > by["none", 1]["num_params"]


def test_analytic_shortcut_memory(run):
  results, _ = run
  a = {r["shortcuts"]: r["analytic"] for r in results if r["batch_size"] == 1}
  # resnet10, width 4, 32x32: stem 4096; stage1 convs 4096, 4096; stage2 2048 x2 (+2048
  # projection); stage3 1024 x2 (+1024); stage4 512 x2 (+512).
  assert a["none"]["activations_total"] == 3 * 4096 + 2 * 2048 + 2 * 1024 + 2 * 512
  assert a["all"]["activations_total"] == a["none"]["activations_total"] + 2048 + 1024 + 512
  assert a["all"]["largest_activation"] == 4096
  # Held block inputs: all = stage1..4 inputs 4096 + 4096 + 2048 + 1024; projection: 2..4.
  assert (a["all"]["num_shortcuts"], a["all"]["shortcut_held"]) == (4, 11264)
  assert (a["projection"]["num_shortcuts"], a["projection"]["shortcut_held"]) == (3, 7168)
  assert a["all"]["shortcut_share_of_total"] == pytest.approx(11264 / 23040)
  # Peak: stage 1's second conv holds x (4096) next to its input and output (4096 + 4096).
  assert (a["all"]["peak_live"], a["all"]["peak_op"]) == (12288, "stage1_block0/conv2")
  assert a["all"]["shortcut_share_of_peak"] == pytest.approx(1 / 3)
  assert a["all"]["peak_live_without_shortcut_memory"] == 8192
  for key in ("shortcut_held", "num_shortcuts", "shortcut_share_of_total",
              "shortcut_share_of_peak", "shortcut_max_held_over_largest"):
    assert a["none"][key] == 0
    assert a["all"][key] > 0 and a["projection"][key] > 0
  assert a["none"]["peak_live"] == a["none"]["peak_live_without_shortcut_memory"] == 8192


def test_analytic_model_resnet50():
  """Full ResNet-50 (no compilation): 16 shortcuts in the teacher, 3 in the plain-CNN."""
  share = {}
  for s, n in (("all", 16), ("projection", 3), ("none", 0)):
    a = inference.activation_accounting(models.build("resnet50", s, num_classes=100))
    assert a["num_shortcuts"] == n
    share[s] = a["shortcut_share_of_total"]
  assert share["all"] > share["projection"] > share["none"] == 0


def test_cli_runs_without_tensorflow():
  code = ("import sys, io; from experiments import inference_benchmark as b; "
          "b.main(['--arch=resnet10', '--width=4', '--batch_sizes=2', '--shortcuts=none', "
          "'--iters=1', '--warmup=1'], out=io.StringIO()); "
          "print('TF_IMPORTED' if 'tensorflow' in sys.modules else 'NO_TF')")
  p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                     timeout=120)
  assert p.returncode == 0, p.stderr[-2000:]
  assert p.stdout.strip().splitlines()[-1] == "NO_TF"


def test_imagenet_arch_runs_at_224_by_default():
  """Tiny ImageNet ResNet-10 (width 4): the default image size is the arch's, 224."""
  results = bench.main(["--arch=imagenet_resnet10", "--width=4", "--batch_sizes=1",
                        "--shortcuts=all,none", "--iters=1", "--warmup=1"], out=io.StringIO())
  assert [r["shortcuts"] for r in results] == ["all", "none"]
  for r in results:
    assert (r["image_size"], r["num_classes"]) == (224, 1000)
    m = r["xla_memory"]
    assert m["argument_size_in_bytes"] >= 4 * (r["num_params"] + 224 * 224 * 3)
    assert m["output_size_in_bytes"] == 4 * 1000
  a = {r["shortcuts"]: r["analytic"] for r in results}
  # 224 -> stem conv (7x7, stride 2) 112x112x4 = 50176 -> max-pool 56x56x4 = 12544;
  # stage1 56x56x4 = 12544 x2; stage2 28x28x8 = 6272 x2 (+6272 projection); stage3
  # 14x14x16 = 3136 x2 (+3136); stage4 7x7x32 = 1568 x2 (+1568).
  none = 50176 + 12544 + 2 * 12544 + 2 * 6272 + 2 * 3136 + 2 * 1568
  assert a["none"]["activations_total"] == none
  assert a["all"]["activations_total"] == none + 6272 + 3136 + 1568
  assert a["all"]["largest_activation"] == a["none"]["largest_activation"] == 50176
  # Held block inputs: the max-pooled 12544 (stage 1), 12544 (stage 2), 6272, 3136.
  assert (a["all"]["num_shortcuts"], a["all"]["shortcut_held"]) == (4, 34496)
  # Peak: the stem conv, its 224x224x3 input next to its output.
  for s in ("all", "none"):
    assert (a[s]["peak_live"], a[s]["peak_op"]) == (224 * 224 * 3 + 50176, "stem")
    assert a[s]["shortcut_share_of_peak"] == 0


def test_analytic_model_imagenet_resnet50():
  """Full ImageNet ResNet-50 at 224 (no compilation), peaks computed by hand: the stem conv
  gives 112x112x64 = 802816, the max-pool 56x56x64 = 200704."""
  a = {s: inference.activation_accounting(models.build("imagenet_resnet50", s))
       for s in ("all", "projection", "none")}
  assert a["all"]["largest_activation"] == 802816
  assert [a[s]["num_shortcuts"] for s in ("all", "projection", "none")] == [16, 3, 0]
  # Teacher: the projection of stage 1's first block reads x (200704) while the branch's
  # output (56x56x256 = 802816) waits, and writes its own 802816.
  assert (a["all"]["peak_live"], a["all"]["peak_op"]) == (
      802816 + 200704 + 802816, "stage1_block0/shortcut")
  # Plain-CNN: stage 2's projection, x = 802816 and two 28x28x512 = 401408 tensors.
  assert (a["projection"]["peak_live"], a["projection"]["peak_op"]) == (
      802816 + 2 * 401408, "stage2_block0/shortcut")
  # Shortcut-free: stage 2's first 1x1 conv, 802816 in, 56x56x128 = 401408 out.
  assert (a["none"]["peak_live"], a["none"]["peak_op"]) == (
      802816 + 401408, "stage2_block0/conv1")
  for s in ("all", "projection", "none"):
    assert a[s]["peak_live_without_shortcut_memory"] == 802816 + 401408


def test_unknown_arch_names_the_benchmarks_flag(capsys):
  with pytest.raises(SystemExit) as e:
    bench.main(["--arch=resnet51"], out=io.StringIO())
  assert e.value.code == 2
  err = capsys.readouterr().err
  assert err == ("error: --arch: unknown arch 'resnet51'; choose one of resnet18, resnet34, "
                 "resnet50, resnet10, resnet14, imagenet_resnet18, imagenet_resnet34, "
                 "imagenet_resnet50, imagenet_resnet10, imagenet_resnet14.\n")
  with pytest.raises(SystemExit):
    bench.main(["--arch=resnet10", "--shortcuts=all,some"], out=io.StringIO())
  assert capsys.readouterr().err.startswith("error: --shortcuts: unknown shortcut policy 'some'")


def test_help_gives_every_flags_default(capsys):
  # pylint: disable-next=protected-access
  actions = [a for a in bench.parser()._actions if a.dest != "help"]
  assert {a.dest for a in actions} == {"arch", "batch_sizes", "image_size", "num_classes", "width",
                                       "shortcuts", "iters", "warmup", "time_budget_s",
                                       "runtime", "precisions", "threads", "runs", "out",
                                       "overwrite", "verify", "zoo"}
  for a in actions:
    if a.help == "==SUPPRESS==":  # --nooverwrite, --noverify
      continue
    default = a.default
    if isinstance(default, float) and default.is_integer():
      default = int(default)
    if default is None or default == "":  # chosen per runtime, or none: said in words
      assert "(default " in a.help, a.dest
    else:
      assert (f"(default {str(default).lower()})" in a.help.lower()
              or f"(default {default}:" in a.help), a.dest
    assert len(a.help) < 100, a.dest
  with pytest.raises(SystemExit):
    bench.parse_args(["--help"])
  assert len(capsys.readouterr().out.splitlines()) < 60


def test_bad_batch_sizes_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    bench.main(["--arch=resnet10", "--batch_sizes=0"], out=io.StringIO())
  assert e.value.code == 2
  assert "error:" in capsys.readouterr().err


# ------------------------------------------------------------------ --zoo


def _fake_run(root, name, arch, student, top1, method="kd_logits"):
  """A finished run's summary.json (the fields `zoo_speed.read_runs` reads)."""
  run = root / name
  run.mkdir()
  (run / "summary.json").write_text(json.dumps({
      "method": method, "config": {"model": {"arch": arch}, "seed": 0},
      "student": student, "final": {"student_top1": top1}}))
  return str(run)


MOBILENET_16 = {"zoo_arch": "mobilenetv2", "num_classes": 100, "shortcuts": "all",
                "conv": "none", "width": 16}


def test_zoo_times_a_zoo_net_on_both_runtimes_with_a_runs_accuracy(tmp_path):
  for module in ("ai_edge_litert", "onnxruntime", "tf2onnx"):
    pytest.importorskip(module)
  run = _fake_run(tmp_path, "kd_mnv2", "mobilenetv2", MOBILENET_16, 61.5)
  out = io.StringIO()
  records = bench.main(["--zoo", "--arch=mobilenetv2", "--width=16", "--iters=3",
                        "--warmup=1", f"--runs={run}", f"--out={tmp_path / 'zoo'}"], out=out)
  assert [(r["runtime"], r["precision"]) for r in records] == [
      ("litert", "fp32"), ("litert", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
  for r in records:
    assert r["failed"] is None and r["output_shape"] == [1, 100], r
    assert (r["arch"], r["width"], r["batch_size"], r["threads"]) == ("mobilenetv2", 16, 1, 1)
    assert 0 < r["latency_ms_median"] <= r["latency_ms_p90"] and r["iters_timed"] == 3
  assert {r["runtime_module"] for r in records} == {"ai_edge_litert", "onnxruntime"}
  text = out.getvalue()
  (row,) = [l for l in text.splitlines() if l.startswith("mobilenetv2:all")]
  cells = row.split()
  assert cells[1:4] == ["1", "82,146", "0.59"] and cells[-2:] == ["61.50", "(KD(logits))"], row
  assert [float(c) for c in cells[4:8]] == [
      pytest.approx(r["latency_ms_median"], abs=0.005) for r in records]
  md = (tmp_path / "zoo" / "zoo.md").read_text()
  assert row in md and "Machine: " in md
  for runtime in ("litert", "onnxruntime"):
    assert (tmp_path / "zoo" / f"zoo_{runtime}.png").stat().st_size > 1000


def test_zoo_records_a_failed_conversion_and_goes_on(monkeypatch):
  nets = zoo_speed.parse_nets("resnet8,vgg8", 16, 100)

  def model_files(nets, runtime, precisions, log):  # vgg8's int8 "fails"
    (net,), (precision,) = nets, precisions
    if (net.arch, precision) == ("vgg8", "int8"):
      raise UserError("int8 TFLite conversion failed: an op")
    return {(net, precision): __file__}

  monkeypatch.setattr(deployment, "model_files", model_files)
  monkeypatch.setattr(runtime_case, "measure", lambda *a, **k: {"latency_ms_median": 1.0})
  records = zoo_speed.run(nets, ["litert"], precisions=["fp32", "int8"], threads=1,
                          batches=[1], iters=1, warmup=0, time_budget_s=1, log=lambda m: None)
  failed = {(r["arch"], r["precision"]): r["failed"] for r in records}
  assert failed == {("resnet8", "fp32"): None, ("vgg8", "fp32"): None,
                    ("resnet8", "int8"): None,
                    ("vgg8", "int8"): "int8 TFLite conversion failed: an op"}
  facts = {n: {"num_params": 1, "macs": 0} for n in nets}
  table = tables.zoo_speed_table(nets, facts, records, [])
  assert table.splitlines()[-1].split()[-3:] == ["1.00", "failed", "-"]


def test_zoo_bad_input_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(zoo_speed, "run", lambda *a, **k: pytest.fail("a case ran"))
  other = _fake_run(tmp_path, "vgg", "vgg8", dict(MOBILENET_16, zoo_arch="vgg8",
                                                             shortcuts="none"), 70.0)
  for argv, said in (
      (["--arch=mobilenetv2:none"], "--arch: mobilenetv2:none: mobilenetv2 takes its own "
                                    "shortcuts"),
      (["--arch=resnet8,mobilenet"], "--arch: mobilenet: unknown arch 'mobilenet'"),
      (["--arch=resnet8:plain"], "--arch: resnet8:plain: unknown shortcut policy 'plain'"),
      (["--arch=resnet8,resnet8:all"], "names a network twice"),
      (["--shortcuts=none"], "--shortcuts does not apply with --zoo"),
      (["--runtime=xla"], "--runtime=xla: --zoo times litert or onnxruntime"),
      (["--noverify"], "--noverify applies to --runs without --zoo"),
      (["--batch_sizes=1,x"], "--batch_sizes=1,x must be positive integers"),
      (["--arch=mobilenetv2", f"--runs={other}"], "which is not timed: add vgg8:none to --arch"),
      (["--arch=resnet8", "--overwrite"], "--overwrite applies with --out only"),
      (["--arch=resnet8", f"--runs={other}=x"], "give RUN,... without =EXPORT_DIR")):
    with pytest.raises(SystemExit) as e:
      bench.main(["--zoo", "--width=16", *argv], out=io.StringIO())
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert said in err, (said, err)
  with pytest.raises(SystemExit):
    bench.main(["--arch=resnet8x4"], out=io.StringIO())
  assert capsys.readouterr().err.startswith("error: --arch: 'resnet8x4' is a zoo arch: time it "
                                            "with --zoo --arch=resnet8x4")


def test_zoo_plain_student_times_every_conv_kind():
  """`resnet18:none` stands for the Dirac, RepVGG and plain students alike: folded, each is
  the same network of biased convs (the same parameter shapes, conv `none`)."""
  shapes = set()
  for conv in ("reparam", "repvgg", "none"):
    net = models.build("resnet10", "none", conv, num_classes=10, width=8)
    folded_net, folded = fold.fold(net, random_weights.random_variables(net, (32, 32, 3)))
    assert (folded_net.conv, folded_net.folded) == ("none", True)
    shapes.add(json.dumps(jax.tree_util.tree_map(lambda a: list(a.shape), folded),
                          sort_keys=True))
  assert len(shapes) == 1
