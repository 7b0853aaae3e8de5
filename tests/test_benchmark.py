"""The training-step benchmark: its records (run in a subprocess that must not import
TensorFlow or ml_collections), and bf16 vs fp32 numerics of the trainer's step for the
four benchmarked methods."""
import io
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import benchmark
from jointrd_jax import sharding, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = ("tensorflow", "tensorflow_datasets", "ml_collections", "configs")
ARGS = ["--methods=jointrd", "--arch=resnet10", "--width=4", "--num_classes=10",
        "--batch_sizes=16", "--steps=2", "--steps_per_block=1", "--warmup=1"]


class _Cli:
  """The benchmark's main in a fresh interpreter, started at once and read on demand, so
  that it runs while this process does the numerics test (the file's wall time is then
  about that of the longer of the two)."""

  def __init__(self, tmp_dir):
    self.json_out = tmp_dir / "bench.jsonl"
    code = ("import io, json, sys; from experiments import benchmark as b; "
            f"out = io.StringIO(); b.main({ARGS + ['--json_out=' + str(self.json_out)]!r}, "
            "out=out); print(out.getvalue()); "
            f"print('MODULES', json.dumps(sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {FORBIDDEN!r})))")
    self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    self._result = None

  def result(self):
    """(stdout, records, --json_out records, forbidden modules it loaded)."""
    if self._result is None:
      try:
        stdout, stderr = self.proc.communicate(timeout=300)
      finally:
        if self.proc.poll() is None:
          self.proc.kill()
      assert self.proc.returncode == 0, stderr[-3000:]
      lines = stdout.splitlines()
      self._result = (stdout, [json.loads(l) for l in lines if l.startswith("{")],
                      [json.loads(l) for l in self.json_out.read_text().splitlines()],
                      json.loads(lines[-1][len("MODULES "):]))
    return self._result


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
  c = _Cli(tmp_path_factory.mktemp("bench"))
  yield c
  if c.proc.poll() is None:
    c.proc.kill()
    c.proc.wait()


def test_bf16_step_matches_fp32_step(cli):
  """For every benchmarked method: the first-step loss of the bf16 train step is within
  bf16 tolerance of the fp32 step's, on the same fp32 parameters and images; after a bf16
  step the state keeps its dtypes (parameters, statistics and momenta float32), so the
  donated step never retraces.

  The eight steps (4 methods x 2 dtypes, each `train.make_train_step` of a method built by
  `train.build_method`) run inside ONE jit: XLA:CPU's per-program compile overhead makes
  that ~3x faster than eight jits, and the arithmetic of each step is unchanged. First in
  the file: it starts the `cli` subprocess, which runs meanwhile."""
  del cli
  mesh = sharding.make_mesh(jax.devices()[:1])
  image_shape = (32, 32, 3)
  steps, args, labels = [], [], []
  # Two methods cover every path of a step: the frozen teacher's full forward and KD's KL
  # (kd_logits), the hybrid paths through the teacher's stages and Dirac convs (jointrd).
  names = ("kd_logits", "jointrd")
  for name in names:
    state = teacher = None
    for half in (False, True):
      config = benchmark.stand_in_config(name, arch="resnet10", width=4, half_precision=half)
      method = train.build_method(config, 10)
      assert method.student.dtype == (jnp.bfloat16 if half else jnp.float32)
      tx, schedule = train.create_optimizer(config, 390)
      if state is None:  # one initial state and teacher for both dtypes: float32 in both
        state = benchmark.numpy_state(method, tx, image_shape, mesh, seed=0)
        teacher = benchmark.teacher_variables(method, image_shape, mesh, "numpy")
      # The same images: fp32, and fp32 rounded to bf16 (what the pipeline feeds bf16).
      batch = benchmark.fixed_batch(16, 10, image_shape, method.student.dtype, mesh)
      steps.append(train.make_train_step(method, tx, schedule))
      args.append((state, teacher, batch, np.int32(0)))
      labels.append((name, half))
  results = jax.jit(lambda a: [step(*x) for step, x in zip(steps, a)])(args)
  losses = {}
  for (name, half), (state, _, batch, _), (new_state, metrics) in zip(labels, args, results):
    assert batch["image"].dtype == (jnp.bfloat16 if half else jnp.float32)
    losses[name, half] = float(metrics["loss"])
    assert np.isfinite(losses[name, half]), (name, half)
    # The state comes out as it went in: float32 parameters, statistics and optimizer.
    assert (jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), new_state)
            == jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), state)), (name, half)
    for x in jax.tree_util.tree_leaves(new_state.params):
      assert x.dtype == jnp.float32, (name, half)
  for name in names:
    assert losses[name, True] == pytest.approx(losses[name, False], rel=2e-2), name


def test_records_and_table(cli):
  text, records, from_file, _ = cli.result()
  assert records == from_file
  (r,) = records
  assert (r["method"], r["batch"], r["arch"], r["width"]) == ("jointrd", 16, "resnet10", 4)
  assert r["dtype"] == "float32" and r["platform"] == "cpu"  # auto: fp32 on CPU
  assert r["num_devices"] == len(jax.devices()) and r["data"] == "fixed"
  assert r["images_per_s"] > 0 and r["step_ms"] > 0 and r["steps_timed"] == 2
  assert r["images_per_s_p10"] <= r["images_per_s"] <= r["images_per_s_p90"]
  assert r["step_ms"] == pytest.approx(1e3 * 16 / r["images_per_s"])
  assert r["compile_s"] >= r["lower_s"] > 0
  if r["xla_tflop_per_step"] is not None:  # XLA:CPU has a cost analysis
    assert r["xla_tflop_per_step"] > 0 and r["tflops_per_s"] > 0
    assert r["xla_gflop_per_image"] == pytest.approx(r["xla_tflop_per_step"] * 1e3 / 16)
  assert r["pct_peak"] is None and r["ref_gflop_per_image"] is None  # not ResNet-50 / no peak
  assert r["peak_mem_bytes"] > 0 and r["peak_mem_source"]
  assert np.isfinite(r["loss_first"]) and np.isfinite(r["loss_last"]) and r["params_float32"]
  assert r["est_200_epochs_min"] == pytest.approx(200 * 390 * 128 / r["images_per_s"] / 60)
  assert "# estimate jointrd: a full 200-epoch CIFAR run" in text
  assert "evaluation" in text and "excluded" in text
  table = text[text.index("method "):].splitlines()
  assert table[2].split()[:3] == ["jointrd", "16", "float32"]


def test_does_not_import_tensorflow_or_ml_collections(cli):
  assert cli.result()[3] == []


def test_reference_flops():
  assert benchmark.REF_GFLOP_PER_IMAGE["jointrd"] == 16.02
  assert benchmark.REF_GFLOP_PER_IMAGE["kd_logits"] == 10.28
  assert benchmark.REF_GFLOP_PER_IMAGE["resnet"] == 7.78
  assert set(benchmark.DEFAULT_METHODS) <= set(benchmark.REF_GFLOP_PER_IMAGE)


def test_stand_in_config_matches_default_recipe():
  ml_collections = pytest.importorskip("ml_collections")
  del ml_collections
  from configs import default  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  s = benchmark.stand_in_config("jointrd", arch=c.model.arch, width=c.model.width)
  assert s.optimizer.to_dict() == {k: tuple(v) if isinstance(v, (list, tuple)) else v
                                   for k, v in c.optimizer.to_dict().items()}
  assert s.loss.to_dict() == c.loss.to_dict()
  assert (s.num_epochs, s.batch_size, s.half_precision) == (c.num_epochs, c.batch_size, None)
  assert s.teacher.to_dict() == c.teacher.to_dict()
  assert s.model.to_dict() == c.model.to_dict()


def test_bad_flags_exit_2(capsys):
  with pytest.raises(SystemExit) as e:
    benchmark.main(["--methods=nope"], out=io.StringIO())
  assert e.value.code == 2
  assert "error:" in capsys.readouterr().err


def test_estimates_per_recipe():
  """CIFAR: the 200-epoch recipe's minutes; ImageNet (224x224): one epoch's."""
  cifar = {"method": "jointrd", "batch": 128, "images_per_s": 12_800.0,
           "est_200_epochs_min": 200 * 390 * 128 / 12_800 / 60, "est_imagenet_epoch_min": None}
  imagenet = {"method": "resnet", "batch": 256, "images_per_s": 2_000.0,
              "est_200_epochs_min": None, "est_imagenet_epoch_min": 1_281_167 / 2_000 / 60}
  text = benchmark.estimates([cifar, imagenet])
  assert "jointrd: a full 200-epoch CIFAR run" in text and "= 13.0 min" in text
  assert "resnet: one ImageNet epoch (1,281,167 images) at 2000 img/s" in text
  assert "= 10.7 min of training steps" in text


def test_run_efficiency_accounts_for_the_run(tmp_path, capsys, one_device):  # pylint: disable=unused-argument
  """experiments.run_efficiency: a real run against its benchmarked step. The trainer's
  timed parts (training loop, evaluation, checkpoints) are disjoint intervals of the run's
  wall time, so they fit inside it; the figures follow from summary.json and the step rates."""
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top
  r = run_efficiency.main(["--method=jointrd", "--width=4", "--num_classes=10",
                           "--batch_size=16", "--epochs=2", "--train_size=64",
                           "--test_size=24", "--bench_steps=2", f"--workdir={tmp_path}"])
  summary = json.loads((tmp_path / "run" / "summary.json").read_text())
  t = summary["time_s"]
  assert (r["epochs"], r["steps"]) == (2, 2 * (64 // 16))
  run_s = summary["wall_time_s"] - summary["compile_s"]
  assert r["efficiency"] == pytest.approx(r["steps"] * 16 / r["bare_step_images_per_s"] / run_s)
  assert r["loop_share"] == pytest.approx(t["train_steps"] / run_s)
  assert min(t.values()) >= 0 and t["teacher_eval"] <= t["eval"] and t["log"] <= t["train_steps"]
  assert t["train_steps"] + t["eval"] + t["checkpoint"] <= run_s
  assert r["parts_s"]["rest"] >= 0
  before, after = r["bare_step_images_per_s_before_after"]
  assert r["bare_step_images_per_s"] == pytest.approx((before + after) / 2)
  assert r["dispatch_images_per_s"] > 0
  text = capsys.readouterr().out
  (line,) = [x for x in text.splitlines() if x.startswith("{")]
  assert json.loads(line) == json.loads(json.dumps(r))
  assert "% of the bare step" in text and "evaluation, every epoch" in text
