"""Training and evaluation of every method: `train_and_evaluate(config, workdir)`.

One jitted, donated train step over a data-parallel mesh (parameters replicated and born
on the mesh, batches split over the `data` axis), an inference-mode eval step that
counts each test image once, orbax checkpoints with automatic resume, and metrics in
`metrics.jsonl` + TensorBoard. Distillation methods load a ResNet run as their teacher,
or train one first into `WORKDIR/teacher`.
"""
import copy
import signal
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from jax.experimental import multihost_utils

from jointrd_jax import checkpoints, datasets, dirac, methods, models, reporting
from jointrd_jax import sharding, workdir as workdir_lib
from jointrd_jax.errors import UserError

TEACHER_SUBDIR = "teacher"


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any        # {'student': ..., ['teacher': ...]}: the trainable subtree
  batch_stats: Any   # the same keys
  opt_state: Any


# ------------------------------------------------------------------ configuration


def validate(config) -> None:
  """Value checks the config types cannot express; one clear line each."""
  methods.get_spec(config.method)
  for key in ("num_epochs", "batch_size", "eval_batch_size", "log_every_steps",
              "checkpoint_every_epochs", "keep_checkpoints"):
    if config[key] <= 0:
      raise UserError(f"config.{key}={config[key]} must be positive (--config.{key}=N).")
  if config.model.width <= 0:
    raise UserError(f"config.model.width={config.model.width} must be positive.")
  if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
             for f in config.optimizer.lr_drop_at):
    raise UserError(f"config.optimizer.lr_drop_at={config.optimizer.lr_drop_at!r} must hold "
                    "fractions of num_epochs in (0, 1], e.g. "
                    "--config.optimizer.lr_drop_at='(0.5, 0.75)'.")
  if config.teacher.train not in methods.TEACHER_TRAIN:
    raise UserError(f"config.teacher.train={config.teacher.train!r}; choose frozen or joint.")


def check_data_present(config) -> None:
  """With --config.download=False and an explicit data_dir, a CIFAR that TFDS has not
  prepared there is refused before TensorFlow is even imported (seconds). TFDS keeps a
  prepared dataset in DATA_DIR/NAME/[CONFIG/]VERSION/ with a dataset_info.json; without
  one anywhere under DATA_DIR/NAME, TFDS would refuse too (it checks the exact version)."""
  name = str(config.dataset).strip().lower()
  if config.download or not config.data_dir or name not in ("cifar10", "cifar100"):
    return
  root = epath.Path(config.data_dir) / name
  if not any(any(root.glob(pattern)) for pattern in ("*/dataset_info.json",
                                                     "*/*/dataset_info.json")):
    raise UserError(f"{name} is not prepared in {config.data_dir} and --config.download=False; "
                    f"prepare it on a machine with internet with `tfds build {name} "
                    "--data_dir=DIR`, copy DIR here and pass --config.data_dir=DIR (or set "
                    "--config.download=True).")


def half_precision(config) -> bool:
  if config.half_precision is None:
    return jax.default_backend() != "cpu"
  return bool(config.half_precision)


def build_method(config, num_classes: int) -> methods.Method:
  dtype = jnp.bfloat16 if half_precision(config) else jnp.float32
  return methods.build(
      config.method, arch=config.model.arch, num_classes=num_classes, width=config.model.width,
      shortcuts=config.model.shortcuts, dirac=config.model.dirac,
      teacher_arch=config.teacher.arch, teacher_width=config.teacher.width,
      teacher_train=config.teacher.train, dtype=dtype,
      loss_config=methods.LossConfig(**config.loss.to_dict()))


def load_data(config, mesh) -> datasets.Data:
  s = config.synthetic
  return datasets.load(
      config.dataset, mesh=mesh, data_dir=config.data_dir, download=config.download,
      holdout=config.holdout, holdout_seed=config.seed, synthetic_train_size=s.train_size,
      synthetic_test_size=s.test_size, synthetic_num_classes=s.num_classes,
      synthetic_image_size=s.image_size)


# ------------------------------------------------------------------ optimizer


def weight_decay_mask(params):
  """True where weight decay applies: everything but the Dirac a, b (reference §6)."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not str(getattr(path[-1], "key", "")).startswith(dirac.PARAM_PREFIX),
      params)


def create_optimizer(config, steps_per_epoch: int):
  o = config.optimizer
  boundaries = {}
  for f in sorted(o.lr_drop_at):
    step = int(round(f * config.num_epochs)) * steps_per_epoch
    boundaries[step] = boundaries.get(step, 1.0) * o.lr_drop_factor
  schedule = optax.piecewise_constant_schedule(o.learning_rate, boundaries)
  tx = optax.chain(
      optax.add_decayed_weights(o.weight_decay, mask=weight_decay_mask),
      optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
  return tx, schedule


# ------------------------------------------------------------------ steps


def make_train_step(method: methods.Method, tx, schedule):
  """`step(state, teacher_vars, batch, epoch) -> (state, metrics)`; jit it with donation."""

  def train_step(state: TrainState, teacher_vars, batch, epoch):
    other = {"batch_stats": state.batch_stats, "teacher": teacher_vars}
    grad_fn = jax.value_and_grad(method.loss_fn, has_aux=True)
    (_, (metrics, new_stats)), grads = grad_fn(state.params, other, batch, epoch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, lr=schedule(state.step), grad_norm=optax.global_norm(grads))
    return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                         opt_state=opt_state), metrics

  return train_step


def make_eval_step(method: methods.Method):
  """Masked sums of top-1 / top-5 hits and CE for every head (student, teacher, hybrids)."""

  def eval_step(state: TrainState, teacher_vars, batch):
    other = {"batch_stats": state.batch_stats, "teacher": teacher_vars}
    heads = method.eval_logits(state.params, other, batch["image"])
    mask, labels = batch["mask"], batch["label"]
    out = {"count": jnp.sum(mask)}
    for name, logits in heads.items():
      logits = logits.astype(jnp.float32)
      k = min(5, logits.shape[-1])
      top = jax.lax.top_k(logits, k)[1]
      hit1 = (top[:, 0] == labels).astype(jnp.float32)
      hit5 = jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
      ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
      out[f"{name}_top1"] = jnp.sum(hit1 * mask)
      out[f"{name}_top5"] = jnp.sum(hit5 * mask)
      out[f"{name}_loss"] = jnp.sum(ce * mask)
    return out

  return eval_step


def evaluate(eval_step, state, teacher_vars, data, batch_size, dtype) -> dict:
  sums = None
  for batch in datasets.eval_batches(data, batch_size=batch_size, dtype=dtype,
                                           what="config.eval_batch_size"):
    out = eval_step(state, teacher_vars, batch)
    sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  count = float(sums.pop("count"))
  if int(round(count)) != data.num_eval:  # every eval image counts exactly once
    raise AssertionError(f"evaluated {count} of {data.num_eval} examples")
  return {k: float(v) / count * (100.0 if k.endswith(("top1", "top5")) else 1.0)
          for k, v in sums.items()}


# ------------------------------------------------------------------ state


def create_state(method: methods.Method, tx, key, image_shape, mesh) -> TrainState:
  """The initial state, created directly on the mesh (replicated), never on one host."""

  def init(key):
    keys = dict(zip(("student", "teacher"), jax.random.split(key)))
    params, stats = {}, {}
    for name in method.trained:
      net = method.student if name == "student" else method.teacher
      v = models.init(net, keys[name], image_shape)
      params[name], stats[name] = v["params"], v["batch_stats"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params))

  abstract = jax.eval_shape(init, key)
  shardings = jax.tree_util.tree_map(lambda _: sharding.replicated(mesh), abstract)
  return jax.jit(init, out_shardings=shardings)(key)


def _meta(method, data, epoch, step, epoch_metrics=None) -> dict:
  nets = {"student": checkpoints.network_meta(method.student)}
  if "teacher" in method.trained:
    nets["teacher"] = checkpoints.network_meta(method.teacher)
  meta = {"epoch": int(epoch), "step": int(step), "num_classes": data.num_classes,
          "image_shape": list(data.image_shape), "networks": nets}
  if epoch_metrics:  # a mid-epoch checkpoint: the epoch's step metrics so far, exactly
    host = jax.device_get(epoch_metrics)
    meta["epoch_metrics"] = {k: [np.asarray(host[0][k]).dtype.name,
                                 [float(m[k]) for m in host]] for k in host[0]}
  return meta


def _restore_epoch_metrics(meta) -> list:
  """The step metrics a mid-epoch checkpoint holds (see `_meta`), as the loop keeps them."""
  saved = meta.get("epoch_metrics") or {}
  columns = {k: np.asarray(values, dtype) for k, (dtype, values) in saved.items()}
  n = min((len(v) for v in columns.values()), default=0)
  return [{k: v[i] for k, v in columns.items()} for i in range(n)]


# ------------------------------------------------------------------ teacher


def teacher_config(config):
  """The ResNet recipe for the teacher of `config` (same data, optimizer, epochs, seed)."""
  t = copy.deepcopy(config)
  t.method = "resnet"
  t.model.arch = config.teacher.arch or config.model.arch
  t.model.width = config.teacher.width or config.model.width
  t.model.shortcuts = ""
  t.model.dirac = ""
  t.teacher.checkpoint = ""
  t.teacher.arch = ""
  t.teacher.width = 0
  t.teacher.train = "frozen"
  t.overwrite = False
  return t


def load_teacher(method: methods.Method, run_dir: str, mesh):
  """Frozen teacher variables from a ResNet run, checked against what `method` expects."""
  net, variables, meta = checkpoints.load_network(run_dir, "student")
  want = method.teacher
  got = models.describe(net)
  expected = models.describe(want)
  expected["stage_sizes"] = tuple(expected["stage_sizes"])
  got["stage_sizes"] = tuple(got["stage_sizes"])
  if got != expected:
    diff = ", ".join(f"{k} {got[k]!r} (want {expected[k]!r})" for k in expected
                     if got[k] != expected[k])
    raise UserError(f"teacher checkpoint {run_dir} does not fit: {diff}; train a matching "
                    "ResNet (configs/resnet.py) or set --config.teacher.arch/width.")
  return jax.device_put(variables, sharding.replicated(mesh))


def ensure_teacher(config, workdir: str) -> str:
  """Trains the ResNet teacher into WORKDIR/teacher unless it has finished there already."""
  t_dir = str(epath.Path(workdir) / TEACHER_SUBDIR)
  summary = workdir_lib.read_summary(t_dir)
  if summary is None or summary.get("epochs_done") != config.num_epochs:
    reporting.log("no --config.teacher.checkpoint: training the ResNet teacher into %s first",
                  t_dir)
    train_and_evaluate(teacher_config(config), t_dir)
  return t_dir


# ------------------------------------------------------------------ the loop


class _Preemption:
  """SIGTERM (the preemption signal) asks the loop to checkpoint and stop."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handler)
    except ValueError:  # not the main thread: no handler
      self._old = None
    return self

  def _handler(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


class Preempted(Exception):
  """Raised after SIGTERM once a checkpoint is saved; the entry point exits cleanly."""


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains and evaluates `config.method`; returns the summary written to summary.json."""
  validate(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  spec = methods.get_spec(config.method)
  check_data_present(config)
  # Refuse a workdir of another run before anything is written, trained or compiled; every
  # process checks before any process writes.
  discard = workdir_lib.check(workdir, config)
  _sync("workdir checked")
  workdir_lib.check_writable(workdir)

  data = load_data(config, mesh)
  method = build_method(config, data.num_classes)
  dtype = method.student.dtype
  steps_per_epoch = datasets.steps_per_epoch(data.num_train, config.batch_size)
  total_steps = steps_per_epoch * config.num_epochs

  teacher_vars = None
  if method.frozen_teacher:
    t_dir = config.teacher.checkpoint or ensure_teacher(config, workdir)
    teacher_vars = load_teacher(method, t_dir, mesh)

  path = workdir_lib.prepare(workdir, config, discard)  # first write of the run's own files
  _sync("workdir prepared")
  tx, schedule = create_optimizer(config, steps_per_epoch)
  ckpt = checkpoints.Checkpoints(path, keep=config.keep_checkpoints)
  state = create_state(method, tx, jax.random.key(config.seed), data.image_shape, mesh)
  start_step = 0
  resumed_metrics = []  # the step metrics of a partly done epoch, when resuming mid-epoch
  restored = ckpt.restore(_abstract(state))
  if restored is not None:
    state, meta = restored
    start_step = int(meta["step"])
    if start_step % steps_per_epoch:
      resumed_metrics = _restore_epoch_metrics(meta)
    reporting.log("resumed from %s at step %d (epoch %d)", ckpt.directory, start_step,
                  start_step // steps_per_epoch)
  writer = reporting.Writer(path)
  writer.truncate_after(start_step // steps_per_epoch, start_step)

  train_step = jax.jit(make_train_step(method, tx, schedule), donate_argnums=(0,))
  eval_step = jax.jit(make_eval_step(method))
  progress = reporting.Progress(total_steps, config.batch_size)
  reporting.log(
      "%s on %s (%s, %d train / %d %s images, %d classes): %s %s, %d device(s), %s compute, "
      "%d epochs x %d steps of %d", config.method, data.name, spec.description,
      data.num_train, data.num_eval, data.eval_split, data.num_classes, config.model.arch,
      method.student.shortcuts, mesh.devices.size, jnp.dtype(dtype).name, config.num_epochs,
      steps_per_epoch, config.batch_size)

  t_start = time.perf_counter()
  compile_s = None
  eval_s = 0.0
  step = start_step
  with _Preemption() as preemption:
    for epoch in range(start_step // steps_per_epoch, config.num_epochs):
      first = step - epoch * steps_per_epoch
      epoch_metrics, resumed_metrics = resumed_metrics, []
      epoch_arr = np.int32(epoch)
      batches = datasets.train_batches(data, seed=config.seed, epoch=epoch,
                                             batch_size=config.batch_size, start_step=first,
                                             dtype=dtype)
      progress.start()
      pending = 0  # steps run since the last throughput measurement
      for i, batch in enumerate(batches, start=first):
        t0 = time.perf_counter()
        state, metrics = train_step(state, teacher_vars, batch, epoch_arr)
        step += 1
        pending += 1
        epoch_metrics.append(metrics)
        if compile_s is None:
          jax.block_until_ready(metrics)
          compile_s = time.perf_counter() - t0
          reporting.log("compiled the train step in %.1f s", compile_s)
          progress.start()
          pending = 0
        elif (i + 1) % config.log_every_steps == 0:
          loss = float(metrics["loss"])  # the only host sync, every log_every_steps
          _check_finite(loss, epoch, step, ckpt)
          progress.add(pending)
          pending = 0
          reporting.log("epoch %d/%d step %d/%d loss %.4f | %.0f img/s | ETA %s",
                        epoch + 1, config.num_epochs, step, total_steps, loss,
                        progress.images_per_s, progress.eta(step))
        if i + 1 < steps_per_epoch and _stop_now(preemption, i + 1, config.log_every_steps):
          _check_epoch(epoch_metrics, epoch, step, ckpt)
          _stop_preempted(ckpt, writer, step, state,
                          _meta(method, data, epoch, step, epoch_metrics))
      train = _check_epoch(epoch_metrics, epoch, step, ckpt)
      jax.block_until_ready(state)
      progress.add(pending)

      t_eval = time.perf_counter()
      ev = evaluate(eval_step, state, teacher_vars, data, config.eval_batch_size, dtype)
      eval_s += time.perf_counter() - t_eval
      train["images_per_s"] = progress.images_per_s
      writer.write("train", epoch + 1, step, train)
      writer.write("eval", epoch + 1, step, ev)
      heads = " ".join(f"{k[:-5]} {v:.2f}" for k, v in ev.items() if k.endswith("_top1"))
      reporting.log("epoch %d/%d done: train loss %.4f | %s top-1 %s | %.0f img/s | ETA %s",
                    epoch + 1, config.num_epochs, train["loss"], data.eval_split, heads,
                    progress.images_per_s,
                    progress.eta(step, eval_s / (epoch + 1 - start_step // steps_per_epoch),
                                 config.num_epochs - epoch - 1))
      stop = _stop_now(preemption)
      if ((epoch + 1) % config.checkpoint_every_epochs == 0 or epoch + 1 == config.num_epochs
          or stop):
        ckpt.save(step, state, _meta(method, data, epoch + 1, step))
      if stop and epoch + 1 < config.num_epochs:
        _stop_preempted(ckpt, writer, step)

  writer.close()
  ckpt.close()
  summary = _summary(config, path, data, method, time.perf_counter() - t_start, compile_s,
                     progress.images_per_s)
  workdir_lib.write_json(path / workdir_lib.SUMMARY_FILE, summary)
  reporting.log("final %s top-1 of the student: %.2f (best %.2f at epoch %d); summary in %s",
                data.eval_split, summary["final"]["student_top1"],
                summary["best"]["student_top1"], summary["best"]["epoch"],
                path / workdir_lib.SUMMARY_FILE)
  return summary


def _stop_now(preemption, steps_done_in_epoch=None, every=1) -> bool:
  """Whether to checkpoint and stop for a SIGTERM, decided alike by every process.

  One process checks its own flag after every step. Several processes must stop at the
  same step (saving is collective), and the signal may reach only some of them, or at
  different steps: they exchange their flags every `every` steps of an epoch (a host sync,
  at the same steps everywhere) and at each epoch's end, and stop if any got it.
  """
  if jax.process_count() == 1:
    return preemption.requested
  if steps_done_in_epoch is not None and steps_done_in_epoch % every:
    return False
  return bool(np.any(multihost_utils.process_allgather(np.int32(preemption.requested))))


def _sync(name: str) -> None:
  """A barrier of all processes (no-op in a single-process run)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _stop_preempted(ckpt, writer, step, state=None, meta=None):
  """After SIGTERM: checkpoint (unless the epoch's end just did), close, and stop."""
  if state is not None:
    ckpt.save(step, state, meta)
  writer.close()
  ckpt.close()
  reporting.log("SIGTERM: checkpoint saved at step %d; rerun the same command to resume.", step)
  raise Preempted(f"preempted at step {step}; checkpoint saved in {ckpt.directory}")


def _abstract(state):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _check_finite(loss: float, epoch: int, step: int, ckpt) -> None:
  if not np.isfinite(loss):
    kept = ckpt.steps()
    raise UserError(
        f"the loss became {loss} in epoch {epoch + 1} (by step {step}); stopped without saving "
        f"this state; the last good checkpoint is step {kept[-1] if kept else 'none'}. "
        "Lower --config.optimizer.learning_rate or check the data.")


def _check_epoch(epoch_metrics, epoch, step, ckpt) -> dict:
  """Means of the epoch's step metrics; stops the run if any step's loss was not finite."""
  if not epoch_metrics:
    return {}
  host = jax.device_get(epoch_metrics)
  for m in host:
    _check_finite(float(m["loss"]), epoch, step, ckpt)
  return {k: float(np.mean([m[k] for m in host])) for k in host[0]}


def _summary(config, path, data, method, wall_s, compile_s, images_per_s) -> dict:
  records = [r for r in reporting.read_metrics(path) if r["split"] == "eval"]
  final = records[-1] if records else {}
  best = max(records, key=lambda r: r["student_top1"]) if records else {}
  return {
      "method": config.method,
      "dataset": data.name,
      "eval_split": data.eval_split,
      "num_eval": data.num_eval,
      "epochs_done": final.get("epoch", 0),
      "final": {k: v for k, v in final.items() if k not in ("split",)},
      "best": {"epoch": best.get("epoch", 0), "student_top1": best.get("student_top1", 0.0),
               "note": f"best epoch by {data.eval_split} accuracy: a labelled extra, not the result"},
      "wall_time_s": wall_s,
      "compile_s": compile_s,
      "train_images_per_s": images_per_s,
      "student": checkpoints.network_meta(method.student),
      "config": workdir_lib.config_to_dict(config),
  }
