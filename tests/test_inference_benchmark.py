"""The inference benchmark: its JSON records, XLA memory fields and the analytic shortcut
memory model (hand-computed for a tiny ResNet-10)."""
import io
import json
import os
import subprocess
import sys

import pytest

from experiments import inference_benchmark as bench
from jointrd_jax import models

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
    a = bench.activation_accounting(models.build("resnet50", s, num_classes=100))
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


def test_bad_batch_sizes_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    bench.main(["--arch=resnet10", "--batch_sizes=0"], out=io.StringIO())
  assert e.value.code == 2
  assert "error:" in capsys.readouterr().err
