"""experiments.cpu_step_compare: its flags and its refusal without PyTorch (library level,
no subprocess); with PyTorch, the release's step it times (jointrd_jax/benchmarking/
torch_nets.py)."""
import math
import sys

import numpy as np
import pytest

from experiments import cpu_step_compare
from jointrd_jax.benchmarking import cpu_compare


@pytest.mark.parametrize("argv,names", [
    (["--arch=imagenet_resnet10"], "--arch"),
    (["--arch=resnet51"], "--arch"),
    (["--methods=kd_logits"], "--methods"),
    (["--methods="], "--methods"),
    (["--torch_layouts=nchw,channels_last"], "--torch_layouts"),
    (["--batch=0"], "--batch"),
    (["--blocks=0"], "--blocks"),
    (["--warmup=-1"], "--warmup"),
    (["--torch_threads=-2"], "--torch_threads"),
    (["--torch_threads=1,x"], "--torch_threads"),
    (["--xla_variant=use_xnnpack=true"], "--xla_variant"),
    (["--xla_variant=xla_cpu_use_xnnpack"], "--xla_variant"),
    (["--xla_variant=xla_cpu_use_xnnpack=true+xla_cpu_x="], "--xla_variant"),
])
def test_bad_flags_are_one_line(argv, names, capsys, monkeypatch):
  # Nothing may be built: the step builders are replaced by failures.
  monkeypatch.setattr(cpu_compare, "jax_case", lambda *a: pytest.fail("built a case"))
  with pytest.raises(SystemExit) as e:
    cpu_step_compare.main(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ")
  assert names in err and "Traceback" not in err


def test_xla_variants_parse_to_typed_options():
  args = cpu_step_compare.parse_args(
      ["--xla_variant=xla_cpu_use_xnnpack=true+xla_cpu_parallel_codegen_split_count=4",
       "--xla_variant=xla_cpu_max_isa=AVX2"])
  assert args.variants == [{"xla_cpu_use_xnnpack": True,
                            "xla_cpu_parallel_codegen_split_count": 4},
                           {"xla_cpu_max_isa": "AVX2"}]
  default = cpu_step_compare.parse_args([])
  assert default.variants == [] and default.torch_threads == [0]
  assert cpu_step_compare.parse_args(["--torch_threads=1,2"]).torch_threads == [1, 2]


def test_without_torch_one_line_before_any_work(monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  monkeypatch.setattr(cpu_compare, "jax_case", lambda *a: pytest.fail("built a case"))
  with pytest.raises(SystemExit) as e:
    cpu_step_compare.main(["--arch=resnet10"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1
  assert err.startswith("error: PyTorch is not installed") and "pip install torch" in err


def test_interleaved_blocks_take_turns():
  order = []
  cases = {"a": (lambda: order.append("a"), lambda: order.append("|")),
           "b": (lambda: order.append("b"), lambda: order.append("|"))}
  times = cpu_compare.interleaved(cases, steps_per_block=2, blocks=3, warmup=1)
  assert "".join(order) == "aa|bb|" * 4  # 1 warmup round + 3 timed rounds
  assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
  s = cpu_compare.summary([1.0, 2.0, 4.0], steps_per_block=2, batch=8)
  assert s["images_per_s"] == 8.0 and s["p10"] == 4.0 and s["p90"] == 16.0


def test_torch_jointrd_step_and_fold():
  """The PyTorch side: the folded teacher gives the unfolded one's logits, and the JointRD
  loss at m=1 of an untrained pair is about log(C) (all four CE terms near log C)."""
  torch = pytest.importorskip("torch")
  from jointrd_jax.benchmarking import torch_nets  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  teacher = torch_nets.TNet("basic", (1, 1, 1, 1), 4, 10).eval()
  x = torch.randn(2, 3, 32, 32)
  with torch.no_grad():
    before = teacher(x).numpy()
    after = torch_nets.fold_(teacher)(x).numpy()
  # float32, a few hundred products per output: relative error far below 1e-4.
  np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
  step, loss = torch_nets.train_step("jointrd", "basic", (1, 1, 1, 1), 4, 10, batch=8)
  assert abs(loss - math.log(10)) < 1.0
  assert math.isfinite(float(step().detach()))
