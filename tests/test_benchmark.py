"""The training-step benchmark: its records (run in a subprocess that must not import
TensorFlow or ml_collections), bf16 vs fp32 numerics of the trainer's step for the
four benchmarked methods, its CPU defaults and flags; and experiments.run_efficiency."""
import io
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import benchmark
from jointrd_jax import sharding
from jointrd_jax.training import optim, run_setup, steps
from jointrd_jax.benchmarking import machine, random_weights, tables, train_step, zoo_cost
from jointrd_jax.benchmarking import run_efficiency as run_efficiency_lib

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

  The eight steps (4 methods x 2 dtypes, each `steps.make_train_step` of a method built by
  `run_setup.build_method`) run inside ONE jit: XLA:CPU's per-program compile overhead makes
  that ~3x faster than eight jits, and the arithmetic of each step is unchanged. First in
  the file: it starts the `cli` subprocess, which runs meanwhile."""
  del cli
  mesh = sharding.make_mesh(jax.devices()[:1])
  image_shape = (32, 32, 3)
  step_fns, args, labels = [], [], []
  # Two methods cover every path of a step: the frozen teacher's full forward and KD's KL
  # (kd_logits), the hybrid paths through the teacher's stages and Dirac convs (jointrd).
  names = ("kd_logits", "jointrd")
  for name in names:
    state = teacher = None
    for half in (False, True):
      config = train_step.stand_in_config(name, arch="resnet10", width=4, half_precision=half)
      method = run_setup.build_method(config, 10)
      assert method.student.dtype == (jnp.bfloat16 if half else jnp.float32)
      tx, schedule = optim.create_optimizer(config, 390)
      if state is None:  # one initial state and teacher for both dtypes: float32 in both
        state = random_weights.numpy_state(method, tx, image_shape, mesh, seed=0)
        teacher = random_weights.teacher_variables(method, image_shape, mesh, "numpy")
      # The same images: fp32, and fp32 rounded to bf16 (what the pipeline feeds bf16).
      batch = train_step.fixed_batch(16, 10, image_shape, method.student.dtype, mesh)
      step_fns.append(steps.make_train_step(method, tx, schedule))
      args.append((state, teacher, batch, np.int32(0)))
      labels.append((name, half))
  results = jax.jit(lambda a: [step(*x) for step, x in zip(step_fns, a)])(args)
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
  assert train_step.REF_GFLOP_PER_IMAGE["jointrd"] == 16.02
  assert train_step.REF_GFLOP_PER_IMAGE["kd_logits"] == 10.28
  assert train_step.REF_GFLOP_PER_IMAGE["resnet"] == 7.78
  assert set(train_step.DEFAULT_METHODS) <= set(train_step.REF_GFLOP_PER_IMAGE)


def test_stand_in_config_matches_default_recipe():
  ml_collections = pytest.importorskip("ml_collections")
  del ml_collections
  from configs import default  # pylint: disable=g-import-not-at-top
  c = default.get_config()
  s = train_step.stand_in_config("jointrd", arch=c.model.arch, width=c.model.width)
  assert s.optimizer.to_dict() == {k: tuple(v) if isinstance(v, (list, tuple)) else v
                                   for k, v in c.optimizer.to_dict().items()}
  assert s.loss.to_dict() == c.loss.to_dict()
  assert (s.num_epochs, s.batch_size, s.half_precision) == (c.num_epochs, c.batch_size, None)
  assert s.teacher.to_dict() == c.teacher.to_dict()
  assert s.model.to_dict() == c.model.to_dict()
  # The recipe's steps per epoch: CIFAR's 50,000 training images in batches of 128.
  assert train_step.RECIPE["steps_per_epoch"] == 50_000 // 128 == 390


class _Built(Exception):
  pass


def test_run_efficiency_times_the_step_of_its_runs_own_config(monkeypatch):
  """The step it benchmarks is built from the run's config (its preset's config file with
  the tool's flags), not from the benchmark's stand-in of the recipe."""
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top
  c = run_efficiency.config(run_efficiency.parse_args(["--method=kd_ls_dirac", "--width=4"]))
  assert (c.method, c.model.width, c.dataset) == ("kd_ls_dirac", 4, "synthetic")
  built = []

  def build(method_name, opts, num_classes, image_shape, mesh, config=None):
    built.append((method_name, config))
    raise _Built

  monkeypatch.setattr(train_step, "_build", build)
  with pytest.raises(_Built):
    run_efficiency_lib.step_rates(c, 2, sharding.make_mesh(jax.devices()[:1]))
  assert built == [("kd_ls_dirac", c)]


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
  text = tables.estimates([cifar, imagenet])
  assert "jointrd: a full 200-epoch CIFAR run" in text and "= 13.0 min" in text
  assert "resnet: one ImageNet epoch (1,281,167 images) at 2000 img/s" in text
  assert "= 10.7 min of training steps" in text


def test_run_efficiency_accounts_for_the_run(tmp_path, capsys, one_device):  # pylint: disable=unused-argument
  """experiments.run_efficiency: a real run against its benchmarked step. The trainer's
  timed parts (training loop, evaluation, checkpoints) are disjoint intervals of the run's
  wall time, so they fit inside it; the figures follow from summary.json and the step rates."""
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top
  r = run_efficiency.main(["--method=jointrd", "--width=4", "--num_classes=10",
                           "--batch_size=16", "--num_epochs=2", "--train_size=64",
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


def test_cpu_defaults_are_a_small_case_said_on_the_first_line():
  """No --arch/--width/--batch_sizes on a CPU: resnet10 width 8 at batch 32 (about a minute,
  measured; ResNet-50 at 128 and 512 takes hours there), named in the note; a flag given
  keeps its value; on GPU/TPU the full defaults and no note."""
  args = benchmark.parse_args([])
  note = benchmark.apply_defaults(args, "cpu")
  assert (args.arch, args.width, args.batch_sizes) == ("resnet10", 8, [32])
  assert note.startswith("# on a CPU: --arch=resnet10, --width=8, --batch_sizes=32 ")
  assert "--arch=resnet50, --width=64, --batch_sizes=128,512" in note
  args = benchmark.parse_args(["--arch=resnet50", "--batch_sizes=8"])
  note = benchmark.apply_defaults(args, "cpu")
  assert (args.arch, args.width, args.batch_sizes) == ("resnet50", 8, [8])
  assert note.startswith("# on a CPU: --width=8 (") and "--arch" not in note
  args = benchmark.parse_args([])
  assert benchmark.apply_defaults(args, "gpu") is None
  assert (args.arch, args.width, args.batch_sizes) == ("resnet50", 64, [128, 512])


class _Stop(Exception):
  pass


def test_cpu_note_first_and_bf16_warning_before_any_case(monkeypatch, caplog):
  """(The warning's format, `[hh:mm:ss] warning: ...`, is test_bad_input's
  test_scripts_log_in_the_one_format; here pytest's handler catches the record.)"""
  def stop(*args, **kw):
    raise _Stop()
  monkeypatch.setattr(train_step, "run_case", stop)
  out = io.StringIO()
  with pytest.raises(_Stop):
    benchmark.main(["--methods=resnet", "--half_precision=true"], out=out)
  assert out.getvalue().splitlines()[0].startswith("# on a CPU: --arch=resnet10")
  (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert warning.startswith("--half_precision=true on a CPU: XLA:CPU emulates bfloat16"), warning


@pytest.mark.parametrize("argv, names", [
    (["--half_precision=yes"], ["--half_precision", "'yes'", "auto, true or false"]),
    (["--fold_teacher=no"], ["--fold_teacher", "'no'", "true or false (or 1/0, t/f"]),
    (["--methods=jointRD"], ["--methods", "'jointRD'"]),
    (["--batch_sizes=0"], ["--batch_sizes"]),
    (["--batch_sizes=3"], ["--batch_sizes: 3 does not divide over 8 devices", "e.g. 8"]),
    (["--json_out=/nonexistent_dir/x.jsonl"], ["--json_out", "existing, writable directory"]),
])
def test_bad_flags_are_one_line_before_any_case(argv, names, monkeypatch, capsys):
  monkeypatch.setattr(train_step, "run_case", lambda *a, **k: pytest.fail("a case ran"))
  out = io.StringIO()
  with pytest.raises(SystemExit) as e:
    benchmark.main(["--steps=1", *argv], out=out)
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
  for name in names:
    assert name in err, (name, err)
  assert out.getvalue() == ""


# ------------------------------------------------------------------ run_efficiency

RUN_EFFICIENCY_BAD = {
    "method_case": (["--method=jointRD"], "--method: unknown method 'jointRD'"),
    "zero_epochs_old_spelling": (["--epochs=0"], "--num_epochs=0 must be at least 1"),
    "zero_epochs": (["--num_epochs=0"], "--num_epochs=0 must be at least 1"),
    "imagenet_arch": (["--arch=imagenet_resnet10"], "--arch=imagenet_resnet10 is an ImageNet arch"),
    "batch_not_divisible": (["--batch_size=12"], "--batch_size=12 does not divide over 8"),
    "train_smaller_than_batch": (["--train_size=64"], "--train_size=64 is less than one batch"),
    "one_class": (["--num_classes=1"], "--num_classes=1 must be at least 2"),
    "bad_boolean": (["--overwrite=yes"], "--overwrite: not a boolean: 'yes'"),
    "fixed_zoo_net_plain_student": (["--arch=mobilenetv2", "--method=jointrd"],
                                    "--method=jointrd --arch=mobilenetv2 --width=16: "
                                    "mobilenetv2 takes its own shortcuts"),
}


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
  """The system temp directory, for this test: a fresh one, to see what is left there."""
  import tempfile  # pylint: disable=g-import-not-at-top
  root = tmp_path / "system_tmp"
  root.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(root))
  return root


@pytest.mark.parametrize("case", list(RUN_EFFICIENCY_BAD))
def test_run_efficiency_refuses_bad_flags_at_once(case, temp_root, monkeypatch, capsys):
  """Each mistake: exit 2, one `error:` line naming this tool's flag (no `--config.*`, no
  other tool's help), before anything is measured, nothing left in the temp directory."""
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top

  def never(*args, **kwargs):
    raise AssertionError("the run was measured")

  monkeypatch.setattr(run_efficiency_lib, "measure", never)
  argv, text = RUN_EFFICIENCY_BAD[case]
  with pytest.raises(SystemExit) as e:
    run_efficiency.main(argv)
  err = capsys.readouterr().err
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert e.value.code == 2 and len(errors) == 1, err
  assert text in errors[0] and "--config" not in errors[0] and "benchmark" not in errors[0]
  others = [line for line in err.splitlines() if not line.startswith("error:")]
  assert all(re.match(r"\[\d\d:\d\d:\d\d\] warning: --epochs is deprecated; write "
                      r"--num_epochs", line) for line in others), others
  assert list(temp_root.iterdir()) == []


def test_run_efficiency_removes_its_temp_dir_after_a_failure_and_a_success(
    temp_root, monkeypatch, capsys):
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top
  from jointrd_jax.benchmarking import run_efficiency as library  # pylint: disable=g-import-not-at-top
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  seen = []

  def fails(config, root, bench_steps):
    seen.append(root)
    (pathlib.Path(root) / "run").mkdir()
    raise UserError("the run failed")

  monkeypatch.setattr(library, "measure", fails)
  with pytest.raises(SystemExit) as e:
    run_efficiency.main(["--batch_size=16", "--train_size=64"])
  assert e.value.code == 2 and capsys.readouterr().err == "error: the run failed\n"
  assert pathlib.Path(seen[0]).parent == temp_root and list(temp_root.iterdir()) == []

  def succeeds(config, root, bench_steps):
    (pathlib.Path(root) / "run").mkdir()
    return {"efficiency": 0.9}

  monkeypatch.setattr(library, "measure", succeeds)
  monkeypatch.setattr(library, "report", lambda record: ["# report"])
  assert run_efficiency.main(["--batch_size=16", "--train_size=64"]) == {"efficiency": 0.9}
  assert list(temp_root.iterdir()) == []


def test_run_efficiency_refuses_a_workdir_it_wrote_before(tmp_path, capsys):
  from experiments import run_efficiency  # pylint: disable=g-import-not-at-top
  (tmp_path / "run").mkdir()
  with pytest.raises(SystemExit) as e:
    run_efficiency.main([f"--workdir={tmp_path}"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and "holds an earlier run_efficiency run" in err
  assert "--overwrite" in err and err.count("\n") == 1


def test_run_efficiency_bad_flag_in_a_fresh_process(tmp_path):
  """As a user runs it: TMPDIR pointed at an empty directory, which stays empty."""
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  proc = subprocess.run([sys.executable, "-m", "experiments.run_efficiency",
                         "--arch=imagenet_resnet10"], cwd=ROOT, capture_output=True, text=True,
                        env=dict(os.environ, TMPDIR=str(tmp)), timeout=120)
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert proc.stderr.startswith("error: --arch=imagenet_resnet10 is an ImageNet arch; this "
                                "tool trains on 32x32 synthetic data: choose one of resnet18")
  assert proc.stdout == "" and list(tmp.iterdir()) == []


# ------------------------------------------------------------------ the zoo's cost table


def _valid_taps(size: int, stride: int) -> int:
  """Kernel taps of a 3x3 conv (padding 1) inside a `size`-pixel input, summed over the
  output positions of one dimension: every position has 3 but the border ones 2."""
  return 3 * size - 2 if stride == 1 else 3 * (size // 2) - 1


# resnet8 at width 16 (channels 4, 4, 8, 16): (H_in, C_in, C_out, kernel, stride) of every
# conv; vgg8 at width 16: its five 3x3 convs (max-pool before stages 2, 3, 4).
HAND_CONVS = {
    "resnet8": [(32, 3, 4, 3, 1), (32, 4, 4, 3, 1), (32, 4, 4, 3, 1),
                (32, 4, 8, 3, 2), (16, 8, 8, 3, 1), (32, 4, 8, 1, 2),
                (16, 8, 16, 3, 2), (8, 16, 16, 3, 1), (16, 8, 16, 1, 2)],
    "vgg8": [(32, 3, 16, 3, 1), (16, 16, 32, 3, 1), (8, 32, 64, 3, 1), (4, 64, 128, 3, 1),
             (4, 128, 128, 3, 1)],
}
HAND_HEAD = {"resnet8": 16, "vgg8": 128}  # features into the 100-class linear head


def _hand_cost(arch):
  """(MACs as thop counts them, 2 x the MACs of the taps inside the input, activation
  elements produced) of `arch` at width 16, written out from its convs."""
  macs = valid = acts = 0
  for h, cin, cout, k, s in HAND_CONVS[arch]:
    out = h // s
    macs += out * out * cout * cin * k * k
    taps = _valid_taps(h, s) ** 2 if k == 3 else out * out
    valid += taps * cin * cout
    acts += out * out * cout
  head = HAND_HEAD[arch] * 100
  return macs + head, 2 * (valid + head), acts


@pytest.fixture(scope="module")
def zoo_table():
  """`--zoo` on resnet8 and vgg8 at width 16, vgg8 given a published figure."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(zoo_cost, "PUBLISHED_MACS", {"vgg8": (6_000_000, "a source")})
    out = io.StringIO()
    rows = benchmark.main(["--zoo", "--arch=resnet8,vgg8", "--width=16"], out=out)
  return rows, out.getvalue()


def test_zoo_table_flops_match_the_hand_count(zoo_table):
  rows, text = zoo_table
  for r in rows:
    macs, valid_flops, acts = _hand_cost(r["arch"])
    assert r["macs"] == macs, r["arch"]
    # XLA: 2 flops per multiply-add of the taps inside the input, plus the elementwise ops
    # (bias, ReLU, residual add, max-pool, mean): at most 4 per activation element.
    assert valid_flops <= r["xla_flops"] <= valid_flops + 4 * acts, (r, valid_flops, acts)
  assert [r["arch"] for r in rows] == ["resnet8", "vgg8"]
  assert text.splitlines()[0].startswith("# the zoo's forward cost per 32x32 image")


def test_zoo_table_published_column(zoo_table):
  rows, text = zoo_table
  by = {r["arch"]: r for r in rows}
  assert (by["vgg8"]["published_macs"], by["vgg8"]["published_source"]) == (6e6, "a source")
  assert (by["resnet8"]["published_macs"], by["resnet8"]["published_source"]) == (None, None)
  lines = {l.split()[0]: l for l in text.splitlines() if l.startswith(("resnet8 ", "vgg8 "))}
  assert lines["vgg8"].split()[-3:] == ["6.00", "a", "source"]
  assert lines["resnet8"].split()[-2:] == ["-", "-"]


def test_zoo_archs_are_accepted_with_their_own_rules(monkeypatch, capsys):
  assert benchmark.parse_args(["--arch=resnet8x4"]).arch == "resnet8x4"
  monkeypatch.setattr(train_step, "run_case", lambda *a, **k: pytest.fail("a case ran"))
  for argv, said in (
      (["--arch=mobilenetv2", "--methods=resnet,jointrd", "--width=16"],
       "error: --methods=jointrd --arch=mobilenetv2 --width=16: mobilenetv2 takes its own "
       "shortcuts"),
      (["--arch=shufflenetv1", "--methods=resnet", "--width=16"],
       "error: --methods=resnet --arch=shufflenetv1 --width=16: shufflenetv1 takes its own "
       "shortcuts, plain convs and its reference width only"),
      (["--zoo", "--steps=3"], "error: --steps does not apply with --zoo"),
      (["--zoo", "--arch=resnet8,resnet9"], "error: --arch: unknown arch 'resnet9'")):
    with pytest.raises(SystemExit) as e:
      benchmark.main(["--batch_sizes=8", *argv] if "--zoo" not in argv else argv,
                     out=io.StringIO())
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(said) and err.count("\n") == 1, err


def test_zoo_archs_in_run_efficiency_and_cpu_step_compare(capsys):
  """run_efficiency trains a zoo arch (32x32 data); cpu_step_compare has no PyTorch step for
  one and says so in one line."""
  from experiments import cpu_step_compare, run_efficiency  # pylint: disable=g-import-not-at-top
  run_efficiency.check_args(run_efficiency.parse_args(["--arch=resnet8", "--method=kd_logits",
                                                       "--batch_size=8", "--train_size=64"]))
  with pytest.raises(SystemExit) as e:
    cpu_step_compare.parse_args(["--arch=resnet8x4"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.startswith(
      "error: --arch: 'resnet8x4' is a zoo arch: this tool times the release's PyTorch ResNet "
      "step, which has no zoo networks; choose one of resnet18,"), err


@pytest.mark.parametrize("flags, isa", [
    ("flags\t: fpu sse4_2 avx fma avx2", "avx2, avx, no VNNI"),
    ("flags\t: avx avx2 avx512f avx512_vnni", "avx512_vnni, avx512f, avx2, avx"),
    ("flags\t: avx avx2 avx_vnni", "avx_vnni, avx2, avx"),
    ("Features\t: fp asimd asimddp", "asimddp"),
    ("flags\t: fpu sse2", "?"),
])
def test_machine_names_the_vector_extensions_int8_speed_depends_on(flags, isa):
  """A benchmark's machine line says whether the CPU has a VNNI dot product, which int8
  speed depends on (docs/speed.md)."""
  assert machine.vector_isa(flags) == isa
