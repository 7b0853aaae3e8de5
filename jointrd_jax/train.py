"""Training and evaluation of every method: `train_and_evaluate(config, workdir)`.

Steps run in chunks: one jitted, donated call (`steps.make_multi_step`) runs up to
`steps_per_dispatch` optimizer steps, each on a batch the data feed computes inside the
call, over a data-parallel mesh (parameters replicated and born on the mesh, batches split
over the `data` axis). Chunks end at every `log_every_steps` step and at each epoch's end,
where the run logs, checks for preemption and evaluates (every test image once). Orbax
checkpoints with automatic resume; metrics in `metrics.jsonl` + TensorBoard and a
learning-curve PNG at the end. Distillation methods load a ResNet run as their teacher
(folded for inference, see `teachers.py`), or train one first into `WORKDIR/teacher`.
"""
import concurrent.futures
import contextlib
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from jointrd_jax import checkpoints, datasets, feeds, methods, models, reporting, sharding
from jointrd_jax import steps, teachers, workdir as workdir_lib
from jointrd_jax import errors
from jointrd_jax.errors import UserError
from jointrd_jax.optim import create_optimizer, weight_decay_mask  # noqa: F401 (API)
from jointrd_jax.steps import (TrainState, create_state, make_eval_step,  # noqa: F401 (API)
                               make_multi_step, make_train_step)
from jointrd_jax.teachers import TEACHER_SUBDIR, teacher_config  # noqa: F401 (API)

# ------------------------------------------------------------------ configuration


def validate(config) -> None:
  """Value checks the config types cannot express; one clear line each."""
  if config.method not in methods.METHODS:
    raise UserError(f"unknown method {config.method!r}; choose one of "
                    f"{', '.join(methods.METHODS)} (--config.method).")
  for key, arch in (("model.arch", config.model.arch), ("teacher.arch", config.teacher.arch)):
    if arch and arch not in models.ARCHS:
      raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(models.ARCHS)} "
                      f"(--config.{key}).")
  for key in ("num_epochs", "batch_size", "eval_batch_size", "log_every_steps",
              "checkpoint_every_epochs", "keep_checkpoints"):
    if config[key] <= 0:
      raise UserError(f"config.{key}={config[key]} must be positive (--config.{key}=N).")
  if config.eval_hybrids_every_epochs < 0:
    raise UserError(f"config.eval_hybrids_every_epochs={config.eval_hybrids_every_epochs} "
                    "must be >= 0 (0 = at the last epoch only).")
  if config.model.width <= 0:
    raise UserError(f"config.model.width={config.model.width} must be positive.")
  if config.steps_per_dispatch < 0:
    raise UserError(f"config.steps_per_dispatch={config.steps_per_dispatch} must be >= 0 "
                    "(0 = automatic).")
  if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
             for f in config.optimizer.lr_drop_at):
    shown = ", ".join(str(f) for f in config.optimizer.lr_drop_at)
    raise UserError(f"config.optimizer.lr_drop_at=({shown}) must hold "
                    "fractions of num_epochs in (0, 1], e.g. "
                    "--config.optimizer.lr_drop_at='(0.5, 0.75)'.")
  if config.teacher.train not in methods.TEACHER_TRAIN:
    raise UserError(f"config.teacher.train={config.teacher.train!r}; choose frozen or joint.")
  for key, value in (("model.conv", config.model.conv), ("model.dirac", config.model.dirac)):
    if value and value not in models.CONVS:
      raise UserError(f"unknown conv {value!r}; choose one of {', '.join(models.CONVS)} "
                      f"(--config.{key}).")
  try:  # the terms and their settings (names, weights), before anything is loaded
    methods.resolve_terms(config.method, config.terms, config.loss.to_dict())
  except UserError as e:
    raise UserError(f"{e} (--config.terms, --config.loss.TERM.KEY)") from None


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


def steps_per_dispatch(config, mesh) -> int:
  """`config.steps_per_dispatch`, or when 0: 1 on CPU (no loop, see `steps.py`), else 10."""
  if config.steps_per_dispatch:
    return config.steps_per_dispatch
  return 1 if mesh.devices.flat[0].platform == "cpu" else 10


def half_precision(config) -> bool:
  if config.half_precision is None:
    return jax.default_backend() != "cpu"
  return bool(config.half_precision)


def build_method(config, num_classes: int) -> methods.Method:
  dtype = jnp.bfloat16 if half_precision(config) else jnp.float32
  return methods.build(
      config.method, arch=config.model.arch, num_classes=num_classes, width=config.model.width,
      shortcuts=config.model.shortcuts, conv=config.model.conv, dirac=config.model.dirac,
      teacher_arch=config.teacher.arch, teacher_width=config.teacher.width,
      teacher_train=config.teacher.train, dtype=dtype, terms=config.terms,
      loss_params=config.loss.to_dict())


def is_streamed(config) -> bool:
  """Whether the dataset is read from disk as the run goes (ImageNet: `datasets.streamed`)
  rather than held on the devices (`datasets.in_memory`). `synthetic` is generated like
  the model's dataset: arrays for the CIFAR archs, a folder of JPEGs for the ImageNet ones."""
  name = str(config.dataset).strip().lower()
  arch = models.ARCHS.get(config.model.arch)
  return (name.startswith("imagefolder:") or name == "imagenet2012"
          or (name == "synthetic" and arch is not None and arch[0] == "imagenet"))


def load_data(config, mesh):
  s = config.synthetic
  if is_streamed(config):
    if config.holdout:
      raise UserError(f"--config.holdout is for the in-memory datasets; {config.dataset} "
                      "evaluates on its validation split (set --config.holdout=0).")
    o = config.streamed
    return datasets.streamed.load(
        config.dataset, mesh=mesh, data_dir=config.data_dir, image_size=o.image_size,
        eval_resize=o.eval_resize, threads=o.threads or None, prefetch=o.prefetch,
        shuffle_buffer=o.shuffle_buffer, train_resize=o.resize,
        synthetic_num_classes=s.num_classes,
        synthetic_train_size=s.train_size, synthetic_test_size=s.test_size)
  return datasets.load(
      config.dataset, mesh=mesh, data_dir=config.data_dir, download=config.download,
      holdout=config.holdout, holdout_seed=config.seed, synthetic_train_size=s.train_size,
      synthetic_test_size=s.test_size, synthetic_num_classes=s.num_classes,
      synthetic_image_size=s.image_size)


def make_feed(config, data, dtype, mesh):
  """The trainer's feed of `data` and its steps per dispatch."""
  if isinstance(data, datasets.Data):
    feed = feeds.MemoryFeed(data, config.batch_size, dtype)
    return feed, min(steps_per_dispatch(config, mesh), config.log_every_steps,
                     feed.steps_per_epoch)
  spe = data.steps_per_epoch(config.batch_size)
  k = min(steps_per_dispatch(config, mesh), config.log_every_steps, spe)
  return feeds.StreamFeed(data, config.batch_size, dtype, k), k


def load_teacher(method, run_dir, mesh):
  """The frozen teacher's variables (unfolded): for tests and tools that keep `method`."""
  return teachers.load_teacher(method, run_dir, mesh, fold=False)[1]


# ------------------------------------------------------------------ evaluation


def evaluate(eval_step, state, teacher_vars, batches, num_eval: int) -> dict:
  sums = None
  for batch in batches:
    out = eval_step(state, teacher_vars, batch)
    sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  count = float(sums.pop("count"))
  if int(round(count)) != num_eval:  # every eval image counts exactly once
    raise AssertionError(f"evaluated {count} of {num_eval} examples")
  return {k: float(v) / count * (100.0 if k.endswith(("top1", "top5")) else 1.0)
          for k, v in sums.items()}


class Evaluator:
  """Evaluates the student every epoch; JointRD's hybrid paths when asked (they are
  diagnostics, and cost about twice the student's forward); a frozen teacher, which never
  changes, once per run. A jointly trained teacher every epoch."""

  def __init__(self, method: methods.Method, feed, batch_size: int, num_eval: int):
    self.feed, self.batch_size, self.num_eval = feed, batch_size, num_eval
    frozen = method.frozen_teacher
    student = ("student",) if frozen else ("student", "teacher")
    self._steps = {False: jax.jit(make_eval_step(method, student))}
    if method.uses_hybrids:
      self._steps[True] = jax.jit(make_eval_step(method, student + ("hybrid",)))
    self._teacher_step = jax.jit(make_eval_step(method, ("teacher",))) if frozen else None
    self._teacher = None
    self.teacher_s = 0.0  # the one evaluation of a frozen teacher

  def compile(self, state_spec, teacher_vars) -> None:
    """Compiles the evaluation steps for states like `state_spec` (ahead of their use)."""
    batch = self.feed.eval_spec(self.batch_size)
    for key, step in self._steps.items():
      self._steps[key] = step.lower(state_spec, teacher_vars, batch).compile()
    if self._teacher_step is not None:
      self._teacher_step = self._teacher_step.lower(state_spec, teacher_vars, batch).compile()

  def __call__(self, state, teacher_vars, hybrids: bool = True) -> dict:
    step = self._steps.get(hybrids, self._steps[False])
    out = evaluate(step, state, teacher_vars, self.feed.eval_batches(self.batch_size),
                   self.num_eval)
    if self._teacher_step is not None:
      if self._teacher is None:
        t0 = time.perf_counter()
        self._teacher = evaluate(self._teacher_step, state, teacher_vars,
                                 self.feed.eval_batches(self.batch_size), self.num_eval)
        self.teacher_s = time.perf_counter() - t0
      out.update(self._teacher)
    return dict(sorted(out.items()))


# ------------------------------------------------------------------ checkpoint metadata


def _meta(method, data, epoch, step, epoch_metrics=None) -> dict:
  nets = {"student": checkpoints.network_meta(method.student)}
  if "teacher" in method.trained:
    nets["teacher"] = checkpoints.network_meta(method.teacher)
  meta = {"epoch": int(epoch), "step": int(step), "num_classes": data.num_classes,
          "image_shape": list(data.image_shape), "networks": nets}
  if epoch_metrics:  # a mid-epoch checkpoint: the epoch's step metrics so far, exactly
    meta["epoch_metrics"] = {k: [np.asarray(epoch_metrics[0][k]).dtype.name,
                                 [float(m[k]) for m in epoch_metrics]] for k in epoch_metrics[0]}
  return meta


def _restore_epoch_metrics(meta) -> list:
  """The step metrics a mid-epoch checkpoint holds (see `_meta`), as the loop keeps them."""
  saved = meta.get("epoch_metrics") or {}
  columns = {k: np.asarray(values, dtype) for k, (dtype, values) in saved.items()}
  n = min((len(v) for v in columns.values()), default=0)
  return [{k: v[i] for k, v in columns.items()} for i in range(n)]


def _means(step_metrics: list) -> dict:
  return {k: float(np.mean(np.asarray([m[k] for m in step_metrics], np.float64)))
          for k in step_metrics[0]}


# ------------------------------------------------------------------ the loop


class _Interruption:
  """SIGTERM (preemption) and SIGINT (Ctrl-C) ask the loop to checkpoint and stop.

  `signum` is the first of them received (0: none). A second Ctrl-C aborts at once
  (KeyboardInterrupt, even during the checkpoint save: the run then resumes from the
  previous complete checkpoint)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum = 0
    self._old = {}

  def __enter__(self):
    for sig in self.SIGNALS:
      try:
        self._old[sig] = signal.signal(sig, self._handler)
      except ValueError:  # not the main thread: no handler
        pass
    return self

  def _handler(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signum = self.signum or int(signum)

  def __exit__(self, *exc):
    for sig, old in self._old.items():
      signal.signal(sig, old)


Preempted = errors.Preempted  # the trainer's exception, defined with the other errors


def _finished(config, workdir: str):
  """The summary of a finished run of exactly this config in `workdir`, else None."""
  summary = workdir_lib.read_summary(workdir)
  if (summary is None or summary.get("epochs_done") != config.num_epochs
      or workdir_lib.check(workdir, config)):
    return None
  return summary


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains and evaluates `config.method`; returns the summary written to summary.json."""
  validate(config)
  reporting.log("%s: initialising (workdir %s)", config.method, workdir)
  done = _finished(config, workdir)
  if done is not None:
    reporting.log("already finished: final %s top-1 of the student %.2f (best %.2f at epoch "
                  "%d); summary in %s", done["eval_split"], done["final"]["student_top1"],
                  done["best"]["student_top1"], done["best"]["epoch"],
                  epath.Path(workdir) / workdir_lib.SUMMARY_FILE)
    return done
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  check_data_present(config)
  # Refuse a workdir of another run before anything is written, trained or compiled; every
  # process checks before any process writes.
  discard = workdir_lib.check(workdir, config)
  _sync("workdir checked")
  workdir_lib.check_writable(workdir)

  data = load_data(config, mesh)
  method = build_method(config, data.num_classes)
  dtype = method.student.dtype
  feed, k = make_feed(config, data, dtype, mesh)
  steps_per_epoch = feed.steps_per_epoch
  total_steps = steps_per_epoch * config.num_epochs

  teacher_vars = None
  if method.frozen_teacher:
    t_dir = config.teacher.checkpoint or teachers.ensure_teacher(config, workdir,
                                                                 train_and_evaluate)
    method, teacher_vars = teachers.load_teacher(method, t_dir, mesh, fold=config.teacher.fold)

  path = workdir_lib.prepare(workdir, config, discard)  # first write of the run's own files
  _sync("workdir prepared")
  tx, schedule = create_optimizer(config, steps_per_epoch)
  ckpt = checkpoints.Checkpoints(path, keep=config.keep_checkpoints)
  state_spec = steps.abstract_state(method, tx, data.image_shape, mesh)
  start_step = 0
  resumed_metrics = []  # the step metrics of a partly done epoch, when resuming mid-epoch
  restored = ckpt.restore(state_spec)
  if restored is not None:
    state, meta = restored
    start_step = int(meta["step"])
    if start_step % steps_per_epoch:
      resumed_metrics = _restore_epoch_metrics(meta)
    reporting.log("resumed from %s at step %d (%s)", ckpt.directory, start_step,
                  reporting.epoch_position(start_step, steps_per_epoch, config.num_epochs))
  writer = reporting.Writer(path)
  writer.truncate_after(start_step)

  progress = reporting.Progress(total_steps, config.batch_size)
  reporting.log(
      "%s on %s (%s; %d train / %d %s images of %s, %d classes): %s %s conv %s, %d "
      "device(s), %s compute, %d epochs x %d steps of %d, %d steps per dispatch",
      config.method, data.name, method.describe(), data.num_train, data.num_eval,
      data.eval_split, "x".join(map(str, data.image_shape)), data.num_classes,
      config.model.arch, method.student.shortcuts, method.student.conv, mesh.devices.size,
      jnp.dtype(dtype).name, config.num_epochs, steps_per_epoch, config.batch_size, k)

  # Compile the train step, the evaluation and (for a new run) the initialisation at once:
  # XLA compiles on one core each, so they overlap on any multi-core host.
  run_steps = jax.jit(make_multi_step(make_train_step(method, tx, schedule), feed.batch_fn, k),
                      donate_argnums=(0,))
  evaluator = Evaluator(method, feed, config.eval_batch_size, data.num_eval)
  t0 = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    compiled = pool.submit(lambda: run_steps.lower(state_spec, teacher_vars, feed.chunk_spec(k),
                                                   np.int32(0), np.int32(k)).compile())
    compiled_eval = pool.submit(evaluator.compile, state_spec, teacher_vars)
    if restored is None:
      state = create_state(method, tx, jax.random.key(config.seed), data.image_shape, mesh)
    run_steps = compiled.result()
    compiled_eval.result()
  compile_s = time.perf_counter() - t0
  t_start = time.perf_counter() - compile_s
  compile_logged = False
  eval_s = 0.0
  # Where the wall time goes (summary.json's time_s), for experiments.run_efficiency.
  spent = {"checkpoint": 0.0, "host_sync": 0.0, "log": 0.0}
  step = start_step
  log_every = config.log_every_steps
  with _Interruption() as interruption, contextlib.closing(feed):
    for epoch in range(start_step // steps_per_epoch, config.num_epochs):
      i = step - epoch * steps_per_epoch  # steps done in this epoch
      epoch_metrics, resumed_metrics = resumed_metrics, []
      logged = len(epoch_metrics) // log_every * log_every  # steps up to the last record
      epoch_arr = np.int32(epoch)
      feed.start_epoch(config.seed, epoch)
      if not compile_logged:
        reporting.log("compiled the train step and the evaluation in %.1f s", compile_s)
        compile_logged = True
      progress.start()
      pending, pending_steps = [], 0  # chunks dispatched since the last host read

      def fetch():  # the chunks' step metrics to the host: a host sync
        nonlocal pending
        t0 = time.perf_counter()
        for rows, m in jax.device_get(pending):
          epoch_metrics.extend({key: v[j] for key, v in rows.items()} for j in range(m))
        pending = []
        spent["host_sync"] += time.perf_counter() - t0

      while i < steps_per_epoch:
        n = min(k, steps_per_epoch - i, log_every - i % log_every)
        state, rows = run_steps(state, teacher_vars, feed.chunk(i, n), epoch_arr, np.int32(n))
        pending.append((rows, n))
        i, step, pending_steps = i + n, step + n, pending_steps + n
        if i % log_every == 0 or i == steps_per_epoch:  # a log step, or the epoch's end
          fetch()
          interval = epoch_metrics[logged:]
          logged = len(epoch_metrics)
          _check_epoch(interval, epoch, step, ckpt)
          progress.add(pending_steps)
          pending_steps = 0
          t0 = time.perf_counter()
          record = dict(_means(interval), steps=len(interval),
                        images_per_s=progress.images_per_s)
          writer.write("train", epoch + 1, step, record)
          if i < steps_per_epoch:
            reporting.log("epoch %d/%d step %d/%d loss %.4f | %.0f img/s | ETA %s",
                          epoch + 1, config.num_epochs, step, total_steps, record["loss"],
                          progress.images_per_s, progress.eta(step))
          spent["log"] += time.perf_counter() - t0
        signum = _stop_now(interruption, i, log_every) if i < steps_per_epoch else 0
        if signum:
          fetch()
          _check_epoch(epoch_metrics, epoch, step, ckpt)
          _stop_preempted(ckpt, writer, step, signum, state,
                          _meta(method, data, epoch, step, epoch_metrics))
      jax.block_until_ready(state)

      t_eval = time.perf_counter()
      every = config.eval_hybrids_every_epochs
      ev = evaluator(state, teacher_vars, hybrids=epoch + 1 == config.num_epochs or (
          every > 0 and (epoch + 1) % every == 0))
      eval_s += time.perf_counter() - t_eval
      ev["train_loss"] = _means(epoch_metrics)["loss"]
      writer.write("eval", epoch + 1, step, ev)
      heads = " ".join(f"{k[:-5]} {v:.2f}" for k, v in ev.items() if k.endswith("_top1"))
      reporting.log("epoch %d/%d done: train loss %.4f | %s top-1 %s | %.0f img/s | ETA %s",
                    epoch + 1, config.num_epochs, ev["train_loss"], data.eval_split, heads,
                    progress.images_per_s,
                    progress.eta(step, eval_s / (epoch + 1 - start_step // steps_per_epoch),
                                 config.num_epochs - epoch - 1))
      stop = _stop_now(interruption)
      if ((epoch + 1) % config.checkpoint_every_epochs == 0 or epoch + 1 == config.num_epochs
          or stop):
        t0 = time.perf_counter()
        ckpt.save(step, state, _meta(method, data, epoch + 1, step))
        spent["checkpoint"] += time.perf_counter() - t0
      if stop and epoch + 1 < config.num_epochs:
        _stop_preempted(ckpt, writer, step, stop)

  writer.close()
  ckpt.close()
  spent.update(eval=eval_s, teacher_eval=evaluator.teacher_s, train_steps=progress.timed_seconds)
  summary = _summary(config, path, data, method, time.perf_counter() - t_start, compile_s,
                     progress.images_per_s, spent)
  workdir_lib.write_json(path / workdir_lib.SUMMARY_FILE, summary)
  if jax.process_index() == 0:
    reporting.plot_learning_curves(
        path, f"{config.method}, {config.model.arch} on {data.name}",
        network="student" if method.teacher is not None else config.method)
  reporting.log("final %s top-1 of the student: %.2f (best %.2f at epoch %d); summary in %s",
                data.eval_split, summary["final"]["student_top1"],
                summary["best"]["student_top1"], summary["best"]["epoch"],
                path / workdir_lib.SUMMARY_FILE)
  return summary


def _stop_now(interruption, steps_done_in_epoch=None, every=1) -> int:
  """The signal to checkpoint and stop for (SIGTERM or SIGINT; 0: go on), decided alike by
  every process.

  One process checks its own flag after every chunk of steps. Several processes must stop
  at the same step (saving is collective), and the signal may reach only some of them, or
  at different steps: they exchange their flags every `every` steps of an epoch (a host
  sync, at the same steps everywhere) and at each epoch's end, and stop if any got one.
  """
  if jax.process_count() == 1:
    return interruption.signum
  if steps_done_in_epoch is not None and steps_done_in_epoch % every:
    return 0
  return int(np.max(multihost_utils.process_allgather(np.int32(interruption.signum))))


def _sync(name: str) -> None:
  """A barrier of all processes (no-op in a single-process run)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _stop_preempted(ckpt, writer, step, signum, state=None, meta=None):
  """After SIGTERM or SIGINT: checkpoint (unless the epoch's end just did), close, stop."""
  if state is not None:
    ckpt.save(step, state, meta)
  writer.close()
  ckpt.close()
  if signum == signal.SIGINT:
    raise Preempted(f"interrupted at step {step}; checkpoint saved in {ckpt.directory}; "
                    "rerun the same command to resume.", exit_code=130)
  reporting.log("SIGTERM: checkpoint saved at step %d; rerun the same command to resume.", step)
  raise Preempted(f"preempted at step {step}; checkpoint saved in {ckpt.directory}")


def _abstract(state):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)


def _check_epoch(step_metrics, epoch: int, step: int, ckpt) -> None:
  """Stops the run at the first step whose loss or gradient norm is not finite."""
  for m in step_metrics:
    loss, grad_norm = float(m["loss"]), float(m.get("grad_norm", 0.0))
    if not (np.isfinite(loss) and np.isfinite(grad_norm)):
      kept = ckpt.steps()
      raise UserError(
          f"the loss became {loss:.4g} (gradient norm {grad_norm:.4g}) in epoch {epoch + 1} "
          f"(by step {step}); stopped without saving this state; the last good checkpoint "
          f"is step {kept[-1] if kept else 'none'}. Lower --config.optimizer.learning_rate "
          "or check the data.")


def _summary(config, path, data, method, wall_s, compile_s, images_per_s, spent) -> dict:
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
      "time_s": spent,
      "train_images_per_s": images_per_s,
      "student": checkpoints.network_meta(method.student),
      # The loss as resolved from the method, `terms` and `loss.*` (config.json has the
      # settings as given, None where the method's value was used).
      "terms": [{"name": w.name, "weight": w.weight, **w.params} for w in method.terms],
      "config": workdir_lib.config_to_dict(config),
  }
