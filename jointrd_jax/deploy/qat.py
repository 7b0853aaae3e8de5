"""Quantization-aware fine-tuning (QAT) of the folded network, before its int8 conversion.

Why: post-training int8 costs a trained student more than a point of top-1 when its
logit margins are small (README "INT8 accuracy": the error of int8 rounding is spread over
every layer, no calibration method or single float layer removes it). Fine-tuning the
folded weights for a few epochs with the int8 rounding simulated in the forward pass lets
them move to values that round well.

What `finetune` does (`python -m experiments.export ... --quantize=int8 --qat_epochs=N`):
- **The network**: the folded one (plain biased convs, no BatchNorm), the form the int8
  converter sees; the same module and parameters, with a Flax method interceptor.
- **Fake quantization**, as the TFLite converter quantizes (`quantize`):
  - weights of every conv and of the head: int8 per output channel, symmetric
    (scale max|W_c| / 127, values in [-127, 127]);
  - the input of every conv and of the head, and the logits: int8 per tensor, asymmetric,
    over [min(lo, 0), max(hi, 0)], lo / hi the smallest / largest value on the calibration
    images (min/max calibration, re-measured with the current weights at the start of
    every epoch);
  - rounding passes the gradient straight through (`x - stop_gradient(x) +
    stop_gradient(q(x))`).
- **Loss**: Hinton KD (`losses.kd_logits`) with the trained fp32 folded network as
  teacher: half cross-entropy with the labels, half KL(fp32 || int8-simulated), T = 1.
- **Data**: the run's in-memory training images (CIFAR, npz, synthetic) with its training
  augmentation (random crop with zero padding H/8, horizontal flip), a seeded order.
- **Optimizer**: Adam (why: `LEARNING_RATE`), no weight decay, learning rate
  `LEARNING_RATE` decayed to 0 by a cosine over the fine-tuning steps (optax); the run's
  batch size.
The fine-tuned weights are then converted like untuned ones (the converter calibrates
its own ranges on the same calibration images); the fp32 models stay the trained
network's, and the int8 models are measured against the trained network's logits, so
`export.json` compares like with like with and without QAT.
"""
from __future__ import annotations

import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jointrd_jax.datasets import in_memory
from jointrd_jax.deploy import checks
from jointrd_jax.errors import UserError
from jointrd_jax.methods import losses
from jointrd_jax.models import layers
from jointrd_jax.training import workdir as workdir_lib

# Adam, not the recipe's SGD: the folded network has no BatchNorm, so its gradients differ
# by orders of magnitude between layers (a RepVGG-style student's folded 3x3 kernels most);
# SGD at 1e-3 diverged on the JointRD + RepVGG students (top-1 93 -> 12 %), Adam's
# per-parameter step does not depend on the gradient's scale. Measured on the digits
# students of README "INT8 accuracy": Adam 1e-4 recovers the int8 drop on all of them.
LEARNING_RATE = 1e-4
KD_TAU = 0.5  # the loss: (1 - tau) CE(labels) + tau KL(trained fp32 network), T = 1
SEED = 0
MAX_EPOCHS = 100


@dataclasses.dataclass(eq=False)
class TrainData:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int [N]
  mean: np.ndarray
  std: np.ndarray
  pad: int  # random-crop zero padding


def check_epochs(epochs) -> int:
  if int(epochs) != epochs or not 0 <= int(epochs) <= MAX_EPOCHS:
    raise UserError(f"--qat_epochs={epochs} must be a whole number of epochs from 0 (no "
                    f"fine-tuning) to {MAX_EPOCHS}, e.g. 3.")
  return int(epochs)


def check_run(run_dir: str) -> None:
  """QAT trains on in-memory data; a streamed (ImageNet-style) run is refused in one line."""
  if checks.is_streamed(workdir_lib.read_config(run_dir)):
    raise UserError(f"--qat_epochs: {run_dir} trained on streamed (ImageNet-style) data; "
                    "quantization-aware fine-tuning runs on in-memory data (CIFAR, npz, "
                    "synthetic) only: export it without --qat_epochs.")


def train_data(run_dir: str, cfg: dict, image_shape) -> TrainData:
  """The run's training images and labels (its config.json dataset, `download=False`)."""
  dataset = str(cfg.get("dataset", "")).strip()
  a = checks.load_arrays(run_dir, cfg, dataset, "QAT training images")
  if tuple(a.x_train.shape[1:]) != tuple(image_shape):
    raise UserError(f"the training images of {a.name!r} are {tuple(a.x_train.shape[1:])} but "
                    f"the network in {run_dir} was trained on {tuple(image_shape)}.")
  return TrainData(np.asarray(a.x_train, np.uint8), np.asarray(a.y_train, np.int32),
                   np.asarray(a.mean, np.float32), np.asarray(a.std, np.float32),
                   int(round(a.x_train.shape[1] / 8)))


# ------------------------------------------------------------------ fake quantization


def _ste(x, q):
  """q in the forward pass (exactly: x - x is 0, where x + (q - x) would round), the
  identity's gradient in the backward pass."""
  return (x - jax.lax.stop_gradient(x)) + jax.lax.stop_gradient(q)


def fake_quant_weight(w):
  """Symmetric int8 per output channel (the last axis: HWIO conv, [in, out] dense)."""
  axes = tuple(range(w.ndim - 1))
  scale = jnp.maximum(jnp.max(jnp.abs(w), axis=axes, keepdims=True), 1e-12) / 127.0
  return _ste(w, jnp.clip(jnp.round(w / scale), -127, 127) * scale)


def fake_quant_activation(x, lo, hi):
  """Asymmetric int8 per tensor over [min(lo, 0), max(hi, 0)] (TFLite's activations: the
  range holds 0 exactly, zero point in [-128, 127])."""
  lo, hi = jnp.minimum(lo, 0.0), jnp.maximum(hi, 0.0)
  scale = jnp.maximum(hi - lo, 1e-12) / 255.0
  zero = jnp.clip(jnp.round(-128.0 - lo / scale), -128, 127)
  q = jnp.clip(jnp.round(x / scale) + zero, -128, 127)
  return _ste(x, (q - zero) * scale)


def _quantized_layer(module) -> bool:
  """The layers whose input the int8 model quantizes: every conv, the head."""
  return isinstance(module, (layers.Conv, nn.Dense))


def _key(module) -> str:
  return "/".join(module.path)


def apply_fn(net, *, ranges=None, record=False):
  """`f(params, x) -> (logits, stats)`: the folded network with its conv/dense inputs and
  logits fake-quantized over `ranges` ({layer: (lo, hi)}, None: fp32), weights fake-
  quantized when `ranges` is given; `record`: `stats` holds each layer input's (min, max)
  and the logits' (key 'logits')."""

  def run(params, x):
    stats = {}

    def interceptor(next_fun, args, kwargs, context):
      if context.method_name != "__call__" or not _quantized_layer(context.module):
        return next_fun(*args, **kwargs)
      key = _key(context.module)
      x = args[0]
      if record:
        stats[key] = (jnp.min(x), jnp.max(x))
      if ranges is not None:
        x = fake_quant_activation(x, *ranges[key])
      return next_fun(x, *args[1:], **kwargs)

    p = params if ranges is None else jax.tree_util.tree_map_with_path(
        lambda path, w: fake_quant_weight(w) if path[-1].key == "kernel" else w, params)
    with nn.intercept_methods(interceptor):
      logits, _ = net.apply({"params": p}, x, train=False)
    if record:
      stats["logits"] = (jnp.min(logits), jnp.max(logits))
    if ranges is not None:
      logits = fake_quant_activation(logits, *ranges["logits"])
    return logits, stats

  return run


def calibrate(net, params, images_u8, mean, std, batch: int = 64, *, record=None) -> dict:
  """{layer: (lo, hi)}: each quantized tensor's smallest and largest value on the images,
  in the float network with `params`, as the converter's calibration measures them.
  `record`: `jax.jit(apply_fn(net, record=True))` made once by a caller that calibrates
  repeatedly (a new one is traced and compiled on every call)."""
  record = record or jax.jit(apply_fn(net, record=True))
  lo, hi = {}, {}
  for i in range(0, len(images_u8), batch):
    _, stats = record(params, in_memory.normalize(images_u8[i:i + batch], mean, std))
    for k, (a, b) in stats.items():
      lo[k] = min(lo.get(k, np.inf), float(a))
      hi[k] = max(hi.get(k, -np.inf), float(b))
  return {k: (np.float32(lo[k]), np.float32(hi[k])) for k in lo}


# ------------------------------------------------------------------ fine-tuning


def _loss(qat_apply, params, ranges, images, labels, teacher_logits):
  """Hinton KD from the trained fp32 network at T = 1, half CE and half KL
  (`losses.kd_logits`)."""
  logits, _ = qat_apply(ranges)(params, images)
  return losses.kd_logits(logits, teacher_logits, labels, tau=KD_TAU, temperature=1.0)


def finetune(net, params, data: TrainData, calibration_images: np.ndarray, *, epochs: int,
             batch_size: int, learning_rate: float = LEARNING_RATE, seed: int = SEED,
             simulate: bool = True, log=print) -> tuple[dict, dict]:
  """Returns `(params, record)`: the folded `params` fine-tuned with int8 simulated (see
  the module doc) for `epochs` epochs of `data`, and export.json's `qat` record.
  `simulate=False`: the same fine-tuning in fp32 (no fake quantization), the control that
  tells what the simulation adds beyond the extra epochs."""
  n = len(data.images)
  batch_size = int(min(batch_size, n))
  steps_per_epoch = n // batch_size
  total = epochs * steps_per_epoch
  schedule = optax.cosine_decay_schedule(learning_rate, max(total, 1))
  tx = optax.adam(schedule)
  step = _train_step(net, tx, data, simulate)
  recorder = jax.jit(apply_fn(net, record=True))  # compiled once, calibrates every epoch
  params0 = jax.tree_util.tree_map(jnp.asarray, params)
  params = params0
  opt_state = tx.init(params)
  rng = np.random.default_rng(seed)
  key = jax.random.key(seed)
  t0 = last = time.perf_counter()
  history = []
  for epoch in range(epochs):
    ranges = calibrate(net, params, calibration_images, data.mean, data.std, record=recorder)
    ranges_dev = jax.tree_util.tree_map(jnp.asarray, ranges)
    order = rng.permutation(n)
    sums = {}
    for s in range(steps_per_epoch):
      index = jnp.asarray(order[s * batch_size:(s + 1) * batch_size])
      params, opt_state, m = step(params, params0, opt_state, ranges_dev, index,
                                  jax.random.fold_in(key, epoch * steps_per_epoch + s))
      for k, v in m.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    means = {k: v / max(steps_per_epoch, 1) for k, v in sums.items()}
    now = time.perf_counter()  # this epoch's seconds (its calibration included)
    history.append(dict(epoch=epoch + 1, **means, seconds=now - last))
    last = now
    log(f"qat epoch {epoch + 1}/{epochs}: loss {means.get('loss', float('nan')):.4f} (ce "
        f"{means.get('ce', float('nan')):.4f}, kl to fp32 {means.get('kl', float('nan')):.4f}),"
        f" {history[-1]['seconds']:.0f} s")
  record = _record(epochs=epochs, steps=total, batch_size=batch_size,
                   learning_rate=learning_rate, train_images=n, pad=int(data.pad), seed=seed,
                   simulate=simulate, seconds=last - t0, history=history)
  return jax.tree_util.tree_map(np.asarray, params), record


def _train_step(net, tx, data: TrainData, simulate: bool):
  """The jitted QAT step: (params, params0, opt_state, ranges, index, key) -> (params,
  opt_state, metrics), distilling from the fp32 network `params0` on `data[index]`."""
  mean, std = jnp.asarray(data.mean), jnp.asarray(data.std)
  teacher = apply_fn(net)
  images_dev = jnp.asarray(data.images)
  labels_dev = jnp.asarray(data.labels, jnp.int32)
  pad = int(data.pad)

  def qat_apply(ranges):
    return apply_fn(net, ranges=ranges if simulate else None)

  @jax.jit
  def step(params, params0, opt_state, ranges, index, key):
    x = in_memory.augment(images_dev[index], key, mean=mean, std=std, pad=pad)
    y = labels_dev[index]
    teacher_logits = jax.lax.stop_gradient(teacher(params0, x)[0])
    (_, metrics), grads = jax.value_and_grad(
        lambda p: _loss(qat_apply, p, ranges, x, y, teacher_logits), has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics

  return step


def _record(*, epochs, steps, batch_size, learning_rate, train_images, pad, seed, simulate,
            seconds, history) -> dict:
  """export.json's `qat` record."""
  return {"epochs": int(epochs), "steps": int(steps), "batch_size": batch_size,
          "learning_rate": float(learning_rate), "schedule": "cosine to 0",
          "optimizer": "Adam, no weight decay",
          "loss": f"KD from the trained fp32 network: {1 - KD_TAU:g} CE + {KD_TAU:g} "
                  "KL(fp32 || int8-simulated), T=1",
          "train_images": int(train_images),
          "augmentation": f"random crop (zero pad {pad}) + flip",
          "seed": int(seed), "simulated_int8": bool(simulate),
          "seconds": float(seconds),  # the epochs' sum
          "history": history}

