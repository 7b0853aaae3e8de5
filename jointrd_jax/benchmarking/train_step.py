"""One training-step case (method x batch size) timed as the trainer runs it: the record of
`experiments.benchmark` (what each field means: that script's docstring).

What is timed: `steps.make_train_step(method, tx, schedule)` built as
`train.train_and_evaluate` builds it and jitted as the trainer jits it (donated state),
either on one pre-built device-resident batch (`data='fixed'`: the bare step) or through
the trainer's own dispatch (`data='trainer'`: `steps_per_dispatch` steps per call, each
batch gathered and augmented inside). Imports neither TensorFlow nor ml_collections: the
optimizer and the method are built from a stand-in of configs/default.py (`stand_in_config`:
the recipe's values from jointrd_jax/recipes.py, where configs/default.py takes them; every
other key as configs/default.py sets it, tests/test_benchmark.py compares them), or from a
real config when the caller has one (`run_case(config=...)`: experiments.run_efficiency).
"""
import dataclasses
import statistics
import time
import types
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import datasets, methods, models, sharding
from jointrd_jax.benchmarking import random_weights, timing, xla_analysis
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold
from jointrd_jax.training import feeds, optim, recipes, run_setup, steps

REFERENCE = "ResNet-50 width 64, 32x32 images, 100 classes"
# GFLOP per image per training step at ResNet-50 full width (the figures).
# kd_mse_all_dirac runs the same networks as kd_logits (student fwd + bwd, teacher fwd):
# the issue gives no figure for it, so kd_logits' is used.
REF_GFLOP_PER_IMAGE = {"resnet": 7.78, "kd_logits": 10.28, "kd_mse_all_dirac": 10.28,
                       "jointrd": 16.02}
CIFAR_TRAIN_SIZE = 50_000
# The training recipe of configs/default.py (its values live in jointrd_jax/recipes.py), on
# CIFAR's training set. It sets the learning-rate schedule only: the cost of a step does not
# depend on these values.
_CIFAR_RECIPE = recipes.RECIPES["cifar"][recipes.DEFAULT]
RECIPE = {**_CIFAR_RECIPE, "steps_per_epoch": CIFAR_TRAIN_SIZE // _CIFAR_RECIPE["batch_size"]}
DEFAULT_METHODS = ("resnet", "kd_logits", "kd_mse_all_dirac", "jointrd")
SYNTHETIC_TRAIN_SIZE = CIFAR_TRAIN_SIZE
IMAGENET_TRAIN = 1_281_167
DATA = ("fixed", "trainer")
INIT = ("auto", "jax", "numpy")


@dataclasses.dataclass(frozen=True)
class Options:
  """What a case is run with besides its method and batch size (the benchmark's flags)."""
  arch: str = "resnet50"
  width: int = 64
  num_classes: int = 0            # 0: the arch's
  half_precision: Optional[bool] = None  # None: bf16 compute off CPU
  steps: int = 60                 # timed steps
  steps_per_block: int = 10       # steps per timed interval (one device sync each)
  warmup: int = 3                 # untimed steps after compilation
  data: str = "fixed"             # 'fixed' | 'trainer'
  steps_per_dispatch: int = 0     # data='trainer': 0 = the trainer's default
  fold_teacher: bool = True       # fold the frozen teacher's BatchNorm, as the trainer
  init: str = "auto"              # 'jax' | 'numpy' | 'auto' (numpy on CPU)
  peak_tflops: Optional[float] = None


class _Section(types.SimpleNamespace):
  """A config section: attribute access plus the `to_dict()` that `build_method` uses."""

  def to_dict(self) -> dict:
    return dict(vars(self))


def stand_in_config(method: str, *, arch: str, width: int, half_precision=None):
  """The fields of configs/default.py's config that `run_setup.build_method` and
  `optim.create_optimizer` read, without ml_collections (the benchmark imports neither it
  nor configs/: docs/speed.md). `half_precision`: None = auto (bf16 off CPU), True or False."""
  r = RECIPE
  return _Section(
      method=method, half_precision=half_precision, num_epochs=r["num_epochs"],
      batch_size=r["batch_size"],
      model=_Section(arch=arch, width=width, shortcuts="", conv="", dirac=""),
      teacher=_Section(**methods.TEACHER_UNSET),
      # Each method's own terms and settings: every term's settings unset, as the config.
      terms="", loss=_Section(**{name: {key: None for key in ("weight", *term.params)}
                                 for name, term in methods.TERMS.items()}),
      optimizer=_Section(**{k: r[k] for s, k in recipes.RECIPE_KEYS if s == "optimizer"},
                         skip_zero_sum_grads=False))


def check_builds(method: str, arch: str, width: int, num_classes: int) -> None:
  """A UserError naming the method when its networks cannot be built on `arch` at `width`
  (a zoo arch's own rules: a fixed network takes no plain student, the ShuffleNets width 64
  only): building the modules costs no initialisation, so tools check it before any work."""
  try:
    run_setup.build_method(stand_in_config(method, arch=arch, width=width), num_classes)
  except UserError as e:
    raise UserError(f"method {method} on arch {arch} width {width}: {e}") from None


def fixed_batch(batch_size: int, num_classes: int, image_shape, dtype, mesh):
  """`{'image': dtype [B,H,W,C], 'label': int32 [B]}` on the mesh, split over its batch
  axis: synthetic images normalised as the input pipeline does (no augmentation)."""
  x, y, _, _ = datasets.synthetic_arrays(batch_size, 1, num_classes, image_shape[0])
  mean = x.reshape(-1, 3).mean(0) / 255.0
  std = x.reshape(-1, 3).std(0) / 255.0
  image = np.asarray(datasets.normalize(x, mean, std)).astype(dtype)
  return jax.device_put({"image": image, "label": y.astype(np.int32)},
                        sharding.batch_sharded(mesh))


def synthetic_dataset(mesh, batch_size: int, num_classes: int):
  """A 50,000-image synthetic CIFAR-size dataset on the mesh (the trainer's input)."""
  return datasets.load("synthetic", mesh=mesh, settings=dict(
      train_size=max(SYNTHETIC_TRAIN_SIZE, batch_size), test_size=1, num_classes=num_classes,
      image_size=32))


def resolve_init(init: str) -> str:
  """'auto' -> 'numpy' on CPU (fast to build), 'jax' elsewhere (the trainer's way)."""
  if init != "auto":
    return init
  return "numpy" if jax.default_backend() == "cpu" else "jax"


def _build(method_name: str, opts: Options, num_classes: int, image_shape, mesh, config=None):
  """(config, method, tx, schedule, state, teacher variables, init, seconds to build).
  `config`: the training config to build from (None: `stand_in_config` of `opts`)."""
  if config is None:
    config = stand_in_config(method_name, arch=opts.arch, width=opts.width,
                             half_precision=opts.half_precision)
  method = run_setup.build_method(config, num_classes)
  tx, schedule = optim.create_optimizer(config, RECIPE["steps_per_epoch"])
  init = resolve_init(opts.init)
  t = time.perf_counter()
  if init == "numpy":
    state = random_weights.numpy_state(method, tx, image_shape, mesh)
  else:
    state = steps.create_state(method, tx, jax.random.key(0), image_shape, mesh)
  teacher_vars = random_weights.teacher_variables(method, image_shape, mesh, init)
  if teacher_vars is not None and opts.fold_teacher:  # as the trainer does
    folded_net, teacher_vars = fold.fold(method.teacher, jax.device_get(teacher_vars))
    method = dataclasses.replace(method, teacher=folded_net)
    teacher_vars = jax.device_put(teacher_vars, sharding.replicated(mesh))
  jax.block_until_ready((state, teacher_vars))
  return config, method, tx, schedule, state, teacher_vars, init, time.perf_counter() - t


def _step_function(config, method, tx, schedule, teacher_vars, opts: Options, batch_size: int,
                   num_classes: int, image_shape, mesh):
  """(jitted step, zero-argument function of its arguments after the state, steps per call)."""
  epoch = np.int32(0)
  train_step = steps.make_train_step(method, tx, schedule)
  if opts.data == "fixed":  # the bare step
    batch = fixed_batch(batch_size, num_classes, image_shape, method.student.dtype, mesh)
    return jax.jit(train_step, donate_argnums=(0,)), lambda: (teacher_vars, batch, epoch), 1
  # The trainer's dispatch: k steps per call, batches computed inside.
  data = synthetic_dataset(mesh, batch_size, num_classes)
  feed = feeds.MemoryFeed(data, batch_size, method.student.dtype)
  feed.start_epoch(0, 0)
  config.steps_per_dispatch = opts.steps_per_dispatch  # 0: the trainer's default
  per_call = min(run_setup.steps_per_dispatch(config, mesh), feed.steps_per_epoch)
  jitted = jax.jit(steps.make_multi_step(train_step, feed.batch_fn, per_call),
                   donate_argnums=(0,))
  calls = {"i": 0}

  def call_args():
    first = calls["i"] * per_call % (feed.steps_per_epoch - per_call + 1)
    calls["i"] += 1
    return teacher_vars, feed.chunk(first, per_call), epoch, np.int32(per_call)
  return jitted, call_args, per_call


def _timed(jitted, call_args, state, opts: Options, per_call: int):
  """Compiles, warms up and times the step: (compiled, lower_s, compile_s, block times,
  steps per block, first loss, last loss, final state)."""
  t = time.perf_counter()
  lowered = jitted.lower(state, *call_args())
  lower_s = time.perf_counter() - t
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t
  box = {}
  box["state"], box["metrics"] = compiled(state, *call_args())
  loss_first = float(np.ravel(box["metrics"]["loss"])[0])
  for _ in range(max(opts.warmup - 1, 0)):
    box["state"], box["metrics"] = compiled(box["state"], *call_args())
  jax.block_until_ready(box["state"])

  def step():
    box["state"], box["metrics"] = compiled(box["state"], *call_args())

  k = max(1, min(opts.steps_per_block, opts.steps) // per_call) * per_call  # steps per block
  times = timing.time_blocks(step, lambda: jax.block_until_ready(box["state"]),
                             calls_per_block=k // per_call, blocks=max(1, -(-opts.steps // k)))
  loss_last = float(np.ravel(box["metrics"]["loss"])[-1])
  return compiled, lower_s, compile_s, times, k, loss_first, loss_last, box["state"]


def run_case(method_name: str, batch_size: int, opts: Options, mesh, config=None) -> dict:
  """Builds, compiles and times one case; its record (the benchmark's JSON line).
  `config`: a training config (a run's, from configs/) whose method, network and loss
  settings are timed; None: the recipe's (`stand_in_config`) for `method_name` and `opts`."""
  probe = models.build(opts.arch)
  image_shape = probe.default_image_shape
  num_classes = opts.num_classes or probe.num_classes
  sharding.check_batch_size(batch_size, mesh, "batch_size")  # the scripts check theirs first
  config, method, tx, schedule, state, teacher_vars, init, init_s = _build(
      method_name, opts, num_classes, image_shape, mesh, config)
  jitted, call_args, per_call = _step_function(config, method, tx, schedule, teacher_vars, opts,
                                               batch_size, num_classes, image_shape, mesh)
  compiled, lower_s, compile_s, times, k, loss_first, loss_last, state = _timed(
      jitted, call_args, state, opts, per_call)
  params_f32 = all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(state.params))
  record = {
      "method": method_name, "batch": batch_size, "arch": opts.arch, "width": opts.width,
      "num_classes": num_classes, "image_size": image_shape[0],
      "dtype": jnp.dtype(method.student.dtype).name, "data": opts.data,
      "steps_per_call": per_call, "teacher_folded": bool(
          method.teacher is not None and method.teacher.folded), "init": init,
      "warmup": opts.warmup, "init_s": init_s, "lower_s": lower_s, "compile_s": compile_s,
      "compilation_cache": jax.config.jax_compilation_cache_dir or None,
      "loss_first": loss_first, "loss_last": loss_last, "params_float32": params_f32,
      "peak_tflops": opts.peak_tflops,
  }
  record.update(_rates(times, k, batch_size, image_shape))
  record.update(_costs(compiled, mesh, per_call, batch_size, record["images_per_s"], opts,
                       num_classes, method_name))
  return record


def _rates(times, k: int, batch_size: int, image_shape) -> dict:
  """Throughput fields from the block times (`k` steps of `batch_size` images each)."""
  rates = [k * batch_size / s for s in times]
  ips = statistics.median(rates)
  recipe_images = RECIPE["num_epochs"] * RECIPE["steps_per_epoch"] * RECIPE["batch_size"]
  return {
      "images_per_s": ips, "images_per_s_p10": timing.percentile(rates, 10),
      "images_per_s_p90": timing.percentile(rates, 90),
      "images_per_s_mean": len(times) * k * batch_size / sum(times),
      "step_ms": batch_size / ips * 1e3, "steps_timed": len(times) * k, "steps_per_block": k,
      "est_200_epochs_min": recipe_images / ips / 60.0 if image_shape[0] == 32 else None,
      "est_imagenet_epoch_min": IMAGENET_TRAIN / ips / 60.0 if image_shape[0] != 32 else None,
  }


def _costs(compiled, mesh, per_call: int, batch_size: int, ips: float, opts: Options,
           num_classes: int, method_name: str) -> dict:
  """FLOPs, bytes accessed and memory of the compiled step, per step and per image."""
  n_dev = mesh.devices.size
  step_s = batch_size / ips
  flops_dev = xla_analysis.cost(compiled, "flops")
  flops = flops_dev * n_dev / per_call if flops_dev is not None else None  # per step
  bytes_dev = xla_analysis.cost(compiled, "bytes accessed")
  bytes_step = bytes_dev * n_dev / per_call if bytes_dev is not None else None
  tflops = flops / step_s / 1e12 if flops is not None else None
  ref = None
  if (opts.arch, opts.width, num_classes) == ("resnet50", 64, 100):
    ref = REF_GFLOP_PER_IMAGE.get(method_name)
  mem = xla_analysis.memory(compiled)
  device = mesh.devices.flat[0]
  peak = xla_analysis.device_peak_bytes(device)
  source = "device.memory_stats peak_bytes_in_use (process peak so far)"
  if peak is None:
    peak = mem.get("live_bytes_estimate")
    source = "xla memory_analysis argument+output+temp-alias" if peak is not None else None
  return {
      "platform": device.platform, "device_kind": device.device_kind, "num_devices": n_dev,
      "xla_flops_per_device": flops_dev,
      "xla_tflop_per_step": flops / 1e12 if flops is not None else None,
      "xla_gflop_per_image": flops / batch_size / 1e9 if flops is not None else None,
      "xla_mb_accessed_per_image": (bytes_step / batch_size / 1e6
                                    if bytes_step is not None else None),
      "tflops_per_s": tflops,
      "pct_peak": (100.0 * tflops / opts.peak_tflops
                   if tflops is not None and opts.peak_tflops else None),
      "ref_gflop_per_image": ref,
      "ref_tflops_per_s": ref * ips / 1e3 if ref is not None else None,
      "peak_mem_bytes": peak, "peak_mem_source": source, "xla_memory": mem,
  }
