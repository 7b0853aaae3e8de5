"""Quantization-aware fine-tuning (`deploy/qat.py`, `export --qat_epochs`): the fake
quantizers against a direct NumPy transcription of TFLite's int8 schemes, the simulated
int8 network against the converter's int8 model, and the export's QAT path end to end
with its bad input."""
import contextlib
import io
import json
import logging

import chex
import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from experiments import export as export_cli
from jointrd_jax import datasets
from jointrd_jax.training import workdir
from jointrd_jax.deploy import calibration, checks, formats, qat, quantize
from jointrd_jax.models import fold
from export_helpers import make_imagenet_run, make_run

FLOATS = st.floats(-50, 50, allow_nan=False, width=32)


def weight_reference(w):
  """TFLite's per-channel int8 weights, one output channel (last axis) at a time."""
  out = np.empty_like(w)
  for c in range(w.shape[-1]):
    col = w[..., c]
    scale = max(float(np.max(np.abs(col))), 1e-12) / 127.0
    out[..., c] = np.clip(np.round(col / scale), -127, 127) * scale
  return out


def activation_reference(x, lo, hi):
  """TFLite's per-tensor asymmetric int8 activations over [min(lo,0), max(hi,0)]."""
  lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
  scale = max(hi - lo, 1e-12) / 255.0
  zero = min(max(round(-128.0 - lo / scale), -128), 127)
  out = np.empty_like(x)
  for i, v in np.ndenumerate(x):
    q = min(max(np.round(v / scale) + zero, -128), 127)
    out[i] = (q - zero) * scale
  return out, scale


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (3, 3, 2, 4), elements=FLOATS))
def test_fake_quant_weight_is_per_channel_symmetric_int8(w):
  got = np.asarray(qat.fake_quant_weight(jnp.asarray(w)))
  want = weight_reference(w)
  scale = np.maximum(np.abs(w).max(axis=(0, 1, 2)), 1e-12) / 127
  # Both round the same float32 quotient; they may differ by float32 rounding of w / scale
  # and of the product (a few ulps of the channel's largest weight), never by a step.
  np.testing.assert_allclose(got, want, rtol=0, atol=float(4 * np.finfo(np.float32).eps *
                                                            max(np.abs(w).max(), 1e-6)))
  assert (np.abs(got - w) <= scale / 2 * (1 + 1e-5) + 1e-30).all()


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float32, (40,), elements=FLOATS), FLOATS, st.floats(1e-3, 50))
def test_fake_quant_activation_is_tflite_asymmetric_int8(x, lo, width):
  hi = lo + width  # a calibrated range: never empty
  got = np.asarray(qat.fake_quant_activation(jnp.asarray(x), lo, hi))
  want, scale = activation_reference(x, lo, hi)
  # One step apart at most where float32 and float64 round a quotient at .5 differently.
  assert (np.abs(got - want) <= scale * (1 + 1e-4)).all()
  assert np.mean(np.abs(got - want) < scale * 1e-3) > 0.9
  inside = (x >= min(lo, 0)) & (x <= max(hi, 0))
  assert (np.abs(got - x)[inside] <= scale * (0.5 + 1e-3)).all()
  assert float(qat.fake_quant_activation(jnp.zeros(()), lo, hi)) == 0.0  # 0 is exact


def test_rounding_passes_the_gradient_straight_through():
  x = jnp.linspace(-3.0, 3.0, 11)
  g = jax.grad(lambda v: jnp.sum(qat.fake_quant_activation(v, -1.0, 1.0) * x))(x)
  chex.assert_trees_all_close(g, x)  # identity's gradient, clipped values included
  w = jax.random.normal(jax.random.key(0), (3, 3, 2, 4))
  chex.assert_trees_all_close(jax.grad(lambda v: jnp.sum(qat.fake_quant_weight(v)))(w),
                              jnp.ones_like(w))


@pytest.mark.parametrize("variant", ["cifar", "imagenet"])
def test_simulated_int8_network_is_the_converters(variant, tmp_path):
  """The simulation (weights per channel, the input of every conv and of the head and the
  logits per tensor, min/max ranges of the same calibration images) against the TFLite
  converter's int8 model: the two differ by what the simulation leaves out (the
  normalisation's own int8 arithmetic, int32 biases), far less than either differs from
  fp32. A simulation that misses a quantized tensor or its range would not."""
  if variant == "cifar":
    net, variables = make_run(tmp_path / "run", arch="resnet10", shortcuts="none")
    shape = (32, 32, 3)
  else:
    net, variables = make_imagenet_run(tmp_path / "run", num_classes=10, image_size=64)
    shape = (64, 64, 3)
  folded_net, folded = fold.fold(net, variables)
  images = checks.random_images(96, shape, seed=7)
  calib, test = images[:64], images[64:]
  mean, std = np.float32([0.45, 0.5, 0.55]), np.float32([0.25, 0.2, 0.3])
  sm, path = str(tmp_path / "sm"), str(tmp_path / "int8.tflite")
  formats.write_saved_model(sm, folded_net, folded["params"], mean, std, shape, batch=1)
  quantize.write_tflite_int8(sm, path, calib, batch=1)
  int8 = formats.run_tflite(path, test)
  ranges = qat.calibrate(folded_net, folded["params"], calib, mean, std)
  x = datasets.normalize(test, mean, std)
  fp32 = np.asarray(qat.apply_fn(folded_net)(folded["params"], x)[0])
  sim = np.asarray(qat.apply_fn(folded_net, ranges=ranges)(folded["params"], x)[0])
  lo, hi = ranges["logits"]
  step = (max(hi, 0) - min(lo, 0)) / 255  # the int8 logits' grid, as the model's
  sim_steps, fp32_steps = np.abs(sim - int8) / step, np.abs(fp32 - int8) / step
  # On the same grid: the simulated logits are the int8 model's value exactly, or a few
  # steps off where the small differences upstream push a value over a rounding boundary
  # (measured: 40-47 % exact, at most 3 steps, mean 0.6-0.7); fp32 logits are off the grid
  # (under 1 % exact, mean 1.0-1.5 steps). A missing quantizer or range would put the
  # simulation off the grid like fp32.
  assert np.mean(sim_steps < 1e-2) > 0.25 > 20 * np.mean(fp32_steps < 1e-2)
  assert sim_steps.max() <= 4 and sim_steps.mean() < 0.8 * fp32_steps.mean()


class SquaresClock:
  """`time.perf_counter` for qat: its k-th call returns k**2 seconds, so consecutive
  intervals differ (1, 4, 9: 3 s, then 5 s) and a running total would show."""

  def __init__(self):
    self.calls = 0

  def perf_counter(self):
    self.calls += 1
    return float(self.calls ** 2)


class Collect(logging.Handler):

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def qat_export(tmp_path_factory):
  """One export with int8 and 2 QAT epochs of a synthetic run, its stdout and log kept; QAT
  timed by `SquaresClock`."""
  base = tmp_path_factory.mktemp("qat")
  make_run(base / "run", arch="resnet10", shortcuts="none")
  out = base / "out"
  logs, stdout = Collect(), io.StringIO()
  logging.getLogger().addHandler(logs)
  try:
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
      mp.setattr(qat, "time", SquaresClock())
      rc = export_cli.main([f"--workdir={base / 'run'}", f"--out={out}", "--num_images=20",
                            "--quantize=int8", "--calibration_images=32", "--qat_epochs=2"])
  finally:
    logging.getLogger().removeHandler(logs)
  assert rc == 0
  with open(out / "export.json") as f:
    return dict(base=base, out=out, report=json.load(f), stdout=stdout.getvalue(),
                logs=logs.messages)


def test_qat_seconds_are_per_epoch(qat_export):
  q = qat_export["report"]["int8"]["qat"]
  # SquaresClock: start 1, end of epoch 1: 4, end of epoch 2: 9.
  assert [h["seconds"] for h in q["history"]] == [3.0, 5.0]
  assert q["seconds"] == 8.0
  lines = [l for l in qat_export["stdout"].splitlines() if l.startswith("qat epoch ")]
  assert [l.rsplit(", ", 1)[1] for l in lines] == ["3 s", "5 s"], lines


def test_synthetic_data_warning_once_per_export(qat_export):
  """Check images, calibration and QAT all read the synthetic run's arrays."""
  warned = [m for m in qat_export["logs"] if m.startswith("SYNTHETIC DATA")]
  assert len(warned) == 1, qat_export["logs"]


def test_export_with_qat_records_the_fine_tuning(qat_export):
  r = qat_export["report"]["int8"]
  q = r["qat"]
  # 64 training images at the smoke config's batch 32: 2 steps per epoch.
  assert (q["epochs"], q["steps"], q["batch_size"], q["train_images"]) == (2, 4, 32, 64)
  assert [h["epoch"] for h in q["history"]] == [1, 2]
  for h in q["history"]:  # per-step means of loss = (CE + KL) / 2 (losses.kd_logits)
    assert h["ce"] > 0 and h["kl"] >= 0
    assert h["loss"] == pytest.approx((h["ce"] + h["kl"]) / 2, rel=1e-5)
  assert q["simulated_int8"] and 0 <= q["top1_fp32_after_qat"] <= 1
  for key in ("tflite_int8", "onnx_int8"):
    assert r[key]["num_images"] == 20 and (qat_export["out"] / r[key]["file"]).is_file()
  assert not list(qat_export["out"].glob(".*"))  # the fine-tuned sources are removed
  # The fp32 models stay the trained network's: its checks passed against the trained run.
  assert qat_export["report"]["checks"]["tflite"]["passed"]
  card = (qat_export["out"] / "README.md").read_text()
  assert "after quantization-aware fine-tuning of the folded network: 2 epochs (4 steps" in card
  row = next(line for line in card.splitlines() if line.startswith("| `model_int8.tflite`"))
  assert row.startswith("| `model_int8.tflite` | 20 | ")
  assert f"{100 * r['tflite_int8']['agreement']:.2f} %" in row


def one_line_error(capsys, argv):
  rc = export_cli.main(argv)
  err = capsys.readouterr().err.strip()
  assert rc == 2 and err.startswith("error: ") and "\n" not in err, err
  return err


def test_bad_qat_input_is_one_line_and_writes_nothing(qat_export, tmp_path, capsys):
  run = qat_export["base"] / "run"
  out = tmp_path / "new" / "out"
  cases = [
      (["--qat_epochs=2"], "add --quantize=int8"),
      (["--quantize=int8", "--qat_epochs=-1"], "from 0 (no fine-tuning) to 100"),
  ]
  for flags, text in cases:
    err = one_line_error(capsys, [f"--workdir={run}", f"--out={out}", *flags])
    assert text in err, (flags, err)
    assert not (tmp_path / "new").exists(), flags
  make_imagenet_run(tmp_path / "streamed", dataset="imagefolder:/nowhere", num_classes=10,
                    image_size=64)
  err = one_line_error(capsys, [f"--workdir={tmp_path / 'streamed'}", f"--out={out}",
                                "--check_images=random", "--quantize=int8",
                                "--qat_epochs=1"])
  assert "in-memory data" in err and "without --qat_epochs" in err
  assert not (tmp_path / "new").exists()


def test_calibration_and_qat_see_the_same_normalisation(qat_export):
  """QAT normalises its training images with the statistics the export puts in the model."""
  run = str(qat_export["base"] / "run")
  cfg = workdir.read_config(run)
  train = qat.train_data(run, cfg, (32, 32, 3))
  rep = qat_export["report"]["input"]
  np.testing.assert_array_equal(train.mean, np.float32(rep["mean"]))
  np.testing.assert_array_equal(train.std, np.float32(rep["std"]))
  assert train.pad == 4 and len(calibration.calibration_images(run, 32, (32, 32, 3)).images)
