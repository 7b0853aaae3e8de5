r"""Training-step throughput of every method: the trainer's own jitted, donated step.

  python -m experiments.benchmark [--methods=resnet,kd_logits,kd_mse_all_dirac,jointrd] \
      [--batch_sizes=128,512] [--arch=resnet50] [--width=64] [--num_classes=100] \
      [--steps=60] [--steps_per_block=10] [--warmup=3] [--half_precision=auto] \
      [--peak_tflops=989] [--data=fixed] [--init=auto] [--json_out=FILE]

  # on a CPU, a small network:
  python -m experiments.benchmark --arch=resnet10 --width=8 --batch_sizes=32,64 --steps=50

What is timed, per (method, batch size): `train.make_train_step(method, tx, schedule)`
built exactly as `train.train_and_evaluate` builds it (`train.build_method`,
`train.create_optimizer`, the state of `train.create_state`) and jitted as the trainer
jits it, `jax.jit(step, donate_argnums=(0,))`, called as the trainer calls it
(`step(state, teacher_vars, batch, np.int32(epoch))`). The distillation methods get a
frozen, randomly initialised ResNet teacher of the same arch and width (its weights do not
change the cost).

- Compilation: `jitted.lower(...)` then `.compile()`, timed (`lower_s`, `compile_s` =
  lower + compile). The compiled executable is the one timed. With a persistent
  compilation cache (JAX_COMPILATION_CACHE_DIR) a repeated case reads it from the cache
  and `compile_s` is small: the record says which cache was used.
- Data (`--data`): `fixed` (default) = one pre-built batch (synthetic images normalised
  like the input pipeline, cast to the compute dtype, `{'image', 'label'}`) put on the
  mesh with `sharding.batch_sharded`, and fed to every step: the step alone. `pipeline`
  = the trainer's own `datasets.train_batches` over a 50,000-image synthetic
  dataset (gather + crop + flip + normalise on device, one jitted call per step, in the
  timed loop as in the trainer).
- Timing: `--warmup` untimed steps, then `--steps` timed steps in blocks of
  `--steps_per_block`; each block is one wall-clock interval closed by
  `jax.block_until_ready` on the state (no host sync inside a block). `images_per_s` is
  the median over blocks (p10 / p90 / overall mean too), `step_ms` = batch / that.
- FLOPs: XLA's `compiled.cost_analysis()['flops']`, which on a multi-device mesh is the
  cost of ONE device's partitioned program: `xla_tflop_per_step` multiplies it by the
  number of devices (exact for the data-parallel part; it over-counts the replicated
  optimizer update: +3% for a width-4 ResNet-10 on 8 CPU devices, less for wider nets). None where the backend gives no cost analysis.
  `tflops_per_s` = that / step time; `pct_peak` = % of `--peak_tflops` (when given).
  `ref_gflop_per_image` is the reference cost of the issue (ResNet-50, width 64, 32x32,
  100 classes only; None otherwise) and `ref_tflops_per_s` the throughput in those units.
- Memory: `peak_mem_bytes` = `device.memory_stats()['peak_bytes_in_use']` where the
  backend has it (GPU; it is the PROCESS peak so far, so a case can only raise it:
  order cases small to large to read them), else XLA's memory analysis of the compiled
  step, arguments + outputs + temporaries - aliased, for ONE device (`peak_mem_source`
  says which).
- `est_200_epochs_min` (CIFAR archs): 200 x 390 steps x 128 images (the recipe) /
  `images_per_s`, in minutes; `est_imagenet_epoch_min` (ImageNet archs): one epoch of
  1,281,167 images / `images_per_s`: training steps only (evaluation, compilation,
  checkpoints, and a distillation method's teacher training are excluded).

Initial state (`--init`): `jax` = `train.create_state` and a jitted `models.init` for the
teacher (the trainer's way); `numpy` = the same trees drawn with numpy at the same scales
(XLA:CPU takes many seconds to compile the threefry init), checked against
`train.create_state`'s shapes and dtypes. `auto` = `numpy` on CPU, `jax` elsewhere.

Imports neither TensorFlow nor ml_collections (nor `configs/`): the optimizer and the
method are built from a small stand-in of the config (`stand_in_config`).
"""
import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
import types

REFERENCE = "ResNet-50 width 64, 32x32 images, 100 classes"
# GFLOP per image per training step at ResNet-50 full width (the issue's figures).
# kd_mse_all_dirac runs the same networks as kd_logits (student fwd + bwd, teacher fwd):
# the issue gives no figure for it, so kd_logits' is used.
REF_GFLOP_PER_IMAGE = {"resnet": 7.78, "kd_logits": 10.28, "kd_mse_all_dirac": 10.28,
                       "jointrd": 16.02}
# The training recipe (configs/default.py). It sets the learning-rate schedule only: the
# cost of a step does not depend on these values.
RECIPE = dict(num_epochs=200, batch_size=128, steps_per_epoch=390, learning_rate=0.1,
              momentum=0.9, nesterov=True, weight_decay=5e-4, lr_drop_at=(0.5, 0.75),
              lr_drop_factor=0.1)
DEFAULT_METHODS = ("resnet", "kd_logits", "kd_mse_all_dirac", "jointrd")
SYNTHETIC_TRAIN_SIZE = 50_000
IMAGENET_TRAIN = 1_281_167


class _Section(types.SimpleNamespace):
  """A config section: attribute access plus the `to_dict()` that `build_method` uses."""

  def to_dict(self) -> dict:
    return dict(vars(self))


def stand_in_config(method: str, *, arch: str, width: int, half_precision=None):
  """The fields of the training config that `train.build_method` and
  `train.create_optimizer` read, without ml_collections (absent on the GPU machine).
  `half_precision`: None = auto (bf16 off CPU), True or False."""
  from jointrd_jax import methods  # pylint: disable=g-import-not-at-top
  r = RECIPE
  return _Section(
      method=method, half_precision=half_precision, num_epochs=r["num_epochs"],
      batch_size=r["batch_size"],
      model=_Section(arch=arch, width=width, shortcuts="", dirac=""),
      teacher=_Section(checkpoint="", arch="", width=0, train="frozen", fold=True),
      loss=_Section(**dataclasses.asdict(methods.LossConfig())),
      optimizer=_Section(learning_rate=r["learning_rate"], momentum=r["momentum"],
                         nesterov=r["nesterov"], weight_decay=r["weight_decay"],
                         lr_drop_at=r["lr_drop_at"], lr_drop_factor=r["lr_drop_factor"]))


# ------------------------------------------------------------------ state and data


def _abstract(tree):
  import jax  # pylint: disable=g-import-not-at-top
  return jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), tree)


def numpy_state(method, tx, image_shape, mesh, seed: int = 0):
  """A TrainState of `train.create_state`'s structure, shapes and dtypes, its networks
  drawn with numpy (`inference_benchmark.random_variables`), replicated on `mesh`."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from experiments.inference_benchmark import random_variables  # pylint: disable=g-import-not-at-top
  from jointrd_jax import sharding, steps, train  # pylint: disable=g-import-not-at-top

  params, stats = {}, {}
  for i, name in enumerate(method.trained):
    net = method.student if name == "student" else method.teacher
    v = random_variables(net, image_shape, seed=seed + i)
    params[name], stats[name] = v["params"], v["batch_stats"]

  def build(params, stats):
    return train.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                            opt_state=tx.init(params))

  rep = sharding.replicated(mesh)
  state = jax.jit(build, out_shardings=rep)(jax.device_put(params, rep),
                                           jax.device_put(stats, rep))
  want = steps.abstract_state(method, tx, image_shape)
  if (jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(want)
      or _abstract(state) != _abstract(want)):
    raise AssertionError("numpy_state no longer matches train.create_state; use --init=jax")
  return state


def teacher_variables(method, image_shape, mesh, init: str, seed: int = 1):
  """Frozen teacher variables (random), replicated; None for methods without one."""
  if not method.frozen_teacher:
    return None
  import jax  # pylint: disable=g-import-not-at-top
  from experiments.inference_benchmark import random_variables  # pylint: disable=g-import-not-at-top
  from jointrd_jax import models, sharding  # pylint: disable=g-import-not-at-top
  rep = sharding.replicated(mesh)
  if init == "numpy":
    return jax.device_put(random_variables(method.teacher, image_shape, seed=seed), rep)
  return jax.jit(lambda k: models.init(method.teacher, k, image_shape),
                 out_shardings=rep)(jax.random.key(seed))


def fixed_batch(batch_size: int, num_classes: int, image_shape, dtype, mesh):
  """`{'image': dtype [B,H,W,C], 'label': int32 [B]}` on the mesh, split over its batch
  axis: synthetic images normalised as the input pipeline does (no augmentation)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jointrd_jax import datasets, sharding  # pylint: disable=g-import-not-at-top
  x, y, _, _ = datasets.synthetic_arrays(batch_size, 1, num_classes, image_shape[0])
  mean = x.reshape(-1, 3).mean(0) / 255.0
  std = x.reshape(-1, 3).std(0) / 255.0
  image = np.asarray(datasets.normalize(x, mean, std)).astype(dtype)
  return jax.device_put({"image": image, "label": y.astype(np.int32)},
                        sharding.batch_sharded(mesh))


def datasets_synthetic(mesh, batch_size: int, num_classes: int):
  """A 50,000-image synthetic CIFAR-size dataset on the mesh (the trainer's input)."""
  from jointrd_jax import datasets  # pylint: disable=g-import-not-at-top
  return datasets.load("synthetic", mesh=mesh,
                       synthetic_train_size=max(SYNTHETIC_TRAIN_SIZE, batch_size),
                       synthetic_test_size=1, synthetic_num_classes=num_classes,
                       synthetic_image_size=32)


# ------------------------------------------------------------------ XLA analyses


def xla_cost(compiled, key: str = "flops"):
  """`cost_analysis()[key]` of the compiled program (one device's), or None."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  value = (cost or {}).get(key)
  return float(value) if value is not None and value > 0 else None


def xla_memory(compiled) -> dict:
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    m = None
  if m is None:
    return {}
  out = {k: int(getattr(m, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                         "temp_size_in_bytes", "alias_size_in_bytes")
         if getattr(m, k, None) is not None}
  if {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"} <= set(out):
    out["live_bytes_estimate"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                                  + out["temp_size_in_bytes"]
                                  - out.get("alias_size_in_bytes", 0))
  return out


def device_peak_bytes(device):
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  v = (stats or {}).get("peak_bytes_in_use")
  return int(v) if v else None


# ------------------------------------------------------------------ one case


def _percentile(xs, q):
  xs = sorted(xs)
  i = min(len(xs) - 1, max(0, int(round(q / 100 * (len(xs) - 1)))))
  return xs[i]


def run_case(method_name: str, batch_size: int, args, mesh) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jointrd_jax import feeds, models, sharding, steps, train  # pylint: disable=g-import-not-at-top

  probe = models.build(args.arch)
  image_shape = probe.default_image_shape
  num_classes = args.num_classes or probe.num_classes
  sharding.check_batch_size(batch_size, mesh, "--batch_sizes")
  config = stand_in_config(method_name, arch=args.arch, width=args.width,
                           half_precision=args.half_precision)
  method = train.build_method(config, num_classes)
  dtype = method.student.dtype
  tx, schedule = train.create_optimizer(config, RECIPE["steps_per_epoch"])
  init = args.init
  if init == "auto":
    init = "numpy" if jax.default_backend() == "cpu" else "jax"
  t = time.perf_counter()
  if init == "numpy":
    state = numpy_state(method, tx, image_shape, mesh)
  else:
    state = train.create_state(method, tx, jax.random.key(0), image_shape, mesh)
  teacher_vars = teacher_variables(method, image_shape, mesh, init)
  if teacher_vars is not None and args.fold_teacher:  # as the trainer does
    from jointrd_jax import fold  # pylint: disable=g-import-not-at-top
    folded_net, teacher_vars = fold.fold(method.teacher, jax.device_get(teacher_vars))
    method = dataclasses.replace(method, teacher=folded_net)
    teacher_vars = jax.device_put(teacher_vars, sharding.replicated(mesh))
  jax.block_until_ready((state, teacher_vars))
  init_s = time.perf_counter() - t
  epoch = np.int32(0)
  train_step = train.make_train_step(method, tx, schedule)

  if args.data == "fixed":  # the bare step
    batch = fixed_batch(batch_size, num_classes, image_shape, dtype, mesh)
    jitted = jax.jit(train_step, donate_argnums=(0,))
    call_args = lambda: (teacher_vars, batch, epoch)
    per_call = 1
  else:  # the trainer's dispatch: k steps per call, batches computed inside
    data = datasets_synthetic(mesh, batch_size, num_classes)
    feed = feeds.MemoryFeed(data, batch_size, dtype)
    feed.start_epoch(0, 0)
    config.steps_per_dispatch = args.steps_per_dispatch  # 0: the trainer's default
    per_call = min(train.steps_per_dispatch(config, mesh), feed.steps_per_epoch)
    jitted = jax.jit(steps.make_multi_step(train_step, feed.batch_fn, per_call),
                     donate_argnums=(0,))
    calls = {"i": 0}

    def call_args():
      first = calls["i"] * per_call % (feed.steps_per_epoch - per_call + 1)
      calls["i"] += 1
      return teacher_vars, feed.chunk(first, per_call), epoch, np.int32(per_call)
  t = time.perf_counter()
  lowered = jitted.lower(state, *call_args())
  lower_s = time.perf_counter() - t
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t

  state, metrics = compiled(state, *call_args())
  loss_first = float(np.ravel(metrics["loss"])[0])
  for _ in range(max(args.warmup - 1, 0)):
    state, metrics = compiled(state, *call_args())
  jax.block_until_ready(state)

  k = max(1, min(args.steps_per_block, args.steps) // per_call) * per_call  # steps per block
  blocks = max(1, -(-args.steps // k))
  times = []
  for _ in range(blocks):
    t = time.perf_counter()
    for _ in range(k // per_call):
      state, metrics = compiled(state, *call_args())
    jax.block_until_ready(state)
    times.append(time.perf_counter() - t)
  loss_last = float(np.ravel(metrics["loss"])[-1])
  params_f32 = all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(state.params))

  rates = [k * batch_size / s for s in times]
  ips = statistics.median(rates)
  step_s = batch_size / ips
  n_dev = mesh.devices.size
  flops_dev = xla_cost(compiled, "flops")
  flops = flops_dev * n_dev / per_call if flops_dev is not None else None  # per step
  bytes_dev = xla_cost(compiled, "bytes accessed")
  bytes_step = bytes_dev * n_dev / per_call if bytes_dev is not None else None
  tflops = flops / step_s / 1e12 if flops is not None else None
  ref = None
  if (args.arch, args.width, num_classes) == ("resnet50", 64, 100):
    ref = REF_GFLOP_PER_IMAGE.get(method_name)
  mem = xla_memory(compiled)
  device = mesh.devices.flat[0]
  peak = device_peak_bytes(device)
  source = "device.memory_stats peak_bytes_in_use (process peak so far)"
  if peak is None:
    peak = mem.get("live_bytes_estimate")
    source = "xla memory_analysis argument+output+temp-alias" if peak is not None else None
  recipe_images = RECIPE["num_epochs"] * RECIPE["steps_per_epoch"] * RECIPE["batch_size"]
  return {
      "method": method_name, "batch": batch_size, "arch": args.arch, "width": args.width,
      "num_classes": num_classes, "image_size": image_shape[0], "dtype": jnp.dtype(dtype).name,
      "platform": device.platform, "device_kind": device.device_kind, "num_devices": n_dev,
      "data": args.data, "steps_per_call": per_call, "teacher_folded": bool(
          method.teacher is not None and method.teacher.folded), "init": init,
      "images_per_s": ips,
      "images_per_s_p10": _percentile(rates, 10), "images_per_s_p90": _percentile(rates, 90),
      "images_per_s_mean": blocks * k * batch_size / sum(times),
      "step_ms": step_s * 1e3, "steps_timed": blocks * k, "steps_per_block": k,
      "warmup": args.warmup, "init_s": init_s, "lower_s": lower_s, "compile_s": compile_s,
      "compilation_cache": jax.config.jax_compilation_cache_dir or None,
      "xla_flops_per_device": flops_dev,
      "xla_tflop_per_step": flops / 1e12 if flops is not None else None,
      "xla_gflop_per_image": flops / batch_size / 1e9 if flops is not None else None,
      "xla_mb_accessed_per_image": (bytes_step / batch_size / 1e6
                                    if bytes_step is not None else None),
      "tflops_per_s": tflops,
      "peak_tflops": args.peak_tflops,
      "pct_peak": (100.0 * tflops / args.peak_tflops
                   if tflops is not None and args.peak_tflops else None),
      "ref_gflop_per_image": ref,
      "ref_tflops_per_s": ref * ips / 1e3 if ref is not None else None,
      "peak_mem_bytes": peak, "peak_mem_source": source, "xla_memory": mem,
      "loss_first": loss_first, "loss_last": loss_last, "params_float32": params_f32,
      "est_200_epochs_min": recipe_images / ips / 60.0 if image_shape[0] == 32 else None,
      "est_imagenet_epoch_min": IMAGENET_TRAIN / ips / 60.0 if image_shape[0] != 32 else None,
  }


# ------------------------------------------------------------------ output


def _fmt(v, spec):
  width = int(spec.split(".")[0])
  return f"{'-':>{width}}" if v is None else format(v, spec)


def table(results) -> str:
  head = (f"{'method':<17}{'batch':>6} {'dtype':<9}{'img/s':>10}{'step_ms':>9}{'compile_s':>10}"
          f"{'xla_GF/img':>11}{'ref_GF/img':>11}{'TFLOP/s':>9}{'%peak':>7}{'mem_MiB':>9}"
          f"{'est_min':>10}")
  lines = [head, "-" * len(head)]
  for r in results:
    mem = r["peak_mem_bytes"] / 2**20 if r["peak_mem_bytes"] else None
    lines.append(
        f"{r['method']:<17}{r['batch']:>6} {r['dtype']:<9}{r['images_per_s']:>10.1f}"
        f"{r['step_ms']:>9.2f}{r['compile_s']:>10.1f}{_fmt(r['xla_gflop_per_image'], '11.3f')}"
        f"{_fmt(r['ref_gflop_per_image'], '11.2f')}{_fmt(r['tflops_per_s'], '9.3f')}"
        f"{_fmt(r['pct_peak'], '7.1f')}{_fmt(mem, '9.1f')}"
        f"{_fmt(r['est_200_epochs_min'] or r['est_imagenet_epoch_min'], '10.1f')}")
  return "\n".join(lines)


def estimates(results) -> str:
  """One line per method: the 200-epoch recipe's training time at the batch-128
  throughput (or, without a batch-128 case, at each measured batch size)."""
  lines = []
  for m in dict.fromkeys(r["method"] for r in results):
    rs = [r for r in results if r["method"] == m]
    at128 = [r for r in rs if r["batch"] == RECIPE["batch_size"]]
    for r in at128 or rs:
      if r["est_200_epochs_min"] is None:
        lines.append(
            f"# estimate {m}: one ImageNet epoch (1,281,167 images) at "
            f"{r['images_per_s']:.{0 if r['images_per_s'] >= 100 else 2}f} img/s (measured at "
            f"batch {r['batch']}) = {r['est_imagenet_epoch_min']:.1f} min of training steps; "
            "evaluation (~3 %), compilation and checkpoints excluded")
        continue
      lines.append(
          f"# estimate {m}: a full 200-epoch CIFAR run (200 x 390 steps x 128 images) at "
          f"{r['images_per_s']:.{0 if r['images_per_s'] >= 100 else 2}f} img/s (measured at "
          f"batch {r['batch']}) = "
          f"{r['est_200_epochs_min']:.1f} min of training steps; evaluation, compilation, "
          "checkpoints and teacher training excluded")
  return "\n".join(lines)


def _bool(s: str) -> bool:
  v = _bool_or_auto(s)
  if v is None:
    raise argparse.ArgumentTypeError(f"{s!r}: use true or false")
  return v


def _bool_or_auto(s: str):
  s = s.strip().lower()
  if s in ("auto", ""):
    return None
  if s in ("true", "1", "yes", "bf16", "bfloat16"):
    return True
  if s in ("false", "0", "no", "fp32", "float32"):
    return False
  raise argparse.ArgumentTypeError(f"{s!r}: use auto, true or false")


def _csv(s: str):
  return [x.strip() for x in s.split(",") if x.strip()]


def parse_args(argv):
  from experiments import cli  # pylint: disable=g-import-not-at-top
  p = cli.ArgumentParser("python -m experiments.benchmark", __doc__)
  p.add_argument("--methods", type=_csv, default=",".join(DEFAULT_METHODS),
                 help="comma-separated methods")
  p.add_argument("--batch_sizes", type=lambda s: [int(x) for x in _csv(s)], default="128,512",
                 help="comma-separated global batch sizes (multiples of the device count)")
  p.add_argument("--arch", default="resnet50", help="network (imagenet_* archs: 224x224)")
  p.add_argument("--width", type=int, default=64, help="stem width")
  p.add_argument("--num_classes", type=int, default=0, help="classes; 0 = the arch's default")
  p.add_argument("--steps", type=int, default=60, help="timed steps per case (>= 50 for "
                 "reported figures)")
  p.add_argument("--steps_per_block", type=int, default=10,
                 help="steps per timed interval (one block_until_ready each)")
  p.add_argument("--warmup", type=int, default=3, help="untimed steps after compilation")
  p.add_argument("--half_precision", type=_bool_or_auto, default="auto",
                 help="auto (bf16 compute off CPU), true or false; params stay float32")
  p.add_argument("--peak_tflops", type=float, default=None,
                 help="the device's peak TFLOP/s, for %%peak (e.g. ~790 for an H200, bf16)")
  p.add_argument("--data", choices=("fixed", "trainer"), default="fixed",
                 help="fixed: the bare step on one pre-built batch; trainer: the trainer's "
                 "dispatch (steps_per_dispatch steps per call, augmentation inside; CIFAR "
                 "sizes)")
  p.add_argument("--steps_per_dispatch", type=int, default=0,
                 help="--data=trainer: steps per call; 0 = the trainer's default")
  p.add_argument("--fold_teacher", type=_bool, default="true",
                 help="fold the frozen teacher's BatchNorm into its convs, as the trainer")
  p.add_argument("--init", choices=("auto", "jax", "numpy"), default="auto",
                 help="initial state: jax (the trainer's), numpy (fast on CPU), auto")
  p.add_argument("--json_out", default="", help="also write the JSON lines to this file")
  args = p.parse_args(argv)
  from jointrd_jax import methods  # pylint: disable=g-import-not-at-top
  for m in args.methods:
    if m not in methods.METHODS:
      p.error(f"--methods: unknown method {m!r}; choose from {', '.join(methods.METHODS)}")
  from jointrd_jax import models  # pylint: disable=g-import-not-at-top
  if args.arch not in models.ARCHS:
    p.error(f"--arch: unknown arch {args.arch!r}; choose one of {', '.join(models.ARCHS)}")
  if args.steps < 1 or args.steps_per_block < 1 or args.warmup < 1:
    p.error("--steps, --steps_per_block and --warmup must be >= 1")
  if args.data == "trainer" and models.build(args.arch).variant != "cifar":
    p.error("--data=trainer times the device-resident (CIFAR-size) input; use --data=fixed "
            "for ImageNet archs")
  return args


def main(argv=None, out=None) -> list:
  """Runs every case; prints JSON lines, estimates and the table to `out` (stdout);
  returns the records. A user error (bad flag value) exits with status 2."""
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  try:
    return _main(argv, out or sys.stdout)
  except UserError as e:
    print(f"error: {e}", file=sys.stderr)
    raise SystemExit(2) from None


def _main(argv, out) -> list:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  import jax  # pylint: disable=g-import-not-at-top
  from jointrd_jax import reporting, sharding  # pylint: disable=g-import-not-at-top
  reporting.use_one_log_format()
  mesh = sharding.make_mesh()
  d = jax.devices()[0]
  print(f"# machine: {d.platform} {d.device_kind} x{jax.device_count()}, jax "
        f"{jax.__version__}, {os.cpu_count()} CPUs; {args.arch} width {args.width}, "
        f"data={args.data}", file=out)
  if args.steps < 50:
    print(f"# note: --steps={args.steps} < 50 timed steps: a smoke run, not a measurement",
          file=out)
  results = []
  sink = open(args.json_out, "w") if args.json_out else None  # pylint: disable=consider-using-with
  try:
    for m in args.methods:
      for b in args.batch_sizes:
        r = run_case(m, b, args, mesh)
        results.append(r)
        line = json.dumps(r, sort_keys=True)
        print(line, file=out, flush=True)
        if sink:
          sink.write(line + "\n")
          sink.flush()
  finally:
    if sink:
      sink.close()
  print(estimates(results), file=out)
  print(table(results), file=out)
  if any(r["ref_gflop_per_image"] for r in results):
    print(f"# ref_GF/img: the issue's GFLOP per image per step ({REFERENCE}); "
          "xla_GF/img: XLA's cost analysis of the compiled step", file=out)
  return results


if __name__ == "__main__":
  main()
