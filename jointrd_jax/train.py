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

from jointrd_jax import checkpoints, errors, recipes, reporting, sharding, steps, teachers
from jointrd_jax import workdir as workdir_lib
from jointrd_jax.errors import UserError
from jointrd_jax.methods import compose, identity
from jointrd_jax.evaluation import Evaluator, evaluate  # noqa: F401 (API)
from jointrd_jax.interrupts import _Interruption, _stop_now  # noqa: F401 (tests)
from jointrd_jax.run_setup import (build_method, check_data_present,  # noqa: F401 (API)
                                   half_precision, is_streamed, load_data, load_teacher,
                                   make_feed, steps_per_dispatch, validate)
from jointrd_jax.optim import (create_optimizer, skip_fractions,  # noqa: F401 (API)
                               weight_decay_mask)
from jointrd_jax.steps import (TrainState, create_state, make_eval_step,  # noqa: F401 (API)
                               make_multi_step, make_train_step)
from jointrd_jax.teachers import TEACHER_SUBDIR, teacher_config  # noqa: F401 (API)

Preempted = errors.Preempted  # the trainer's exception, defined with the other errors

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
  who = identity.of_config(config)
  reporting.log("%s: initialising (workdir %s)", who.name, workdir)
  done = _finished(config, workdir)
  if done is not None:
    reporting.log("already finished: final %s top-1 of the %s %.2f (best %.2f at epoch "
                  "%d); summary in %s", done["eval_split"], who.role, done["final"]["student_top1"],
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
  reporting.log(start_line(config, data, method, mesh.devices.size, steps_per_epoch, k))

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
  skips = skip_fractions(state.opt_state, step)  # with optimizer.skip_zero_sum_grads only
  if skips is not None:
    summary["zero_sum_skips"] = skips
  workdir_lib.write_json(path / workdir_lib.SUMMARY_FILE, summary)
  if jax.process_index() == 0:
    reporting.plot_learning_curves(
        path, f"{who.name}, {config.model.arch} on {data.name}",
        network="student" if who.role == "student" else who.name)
  reporting.log("final %s top-1 of the %s: %.2f (best %.2f at epoch %d); summary in %s",
                data.eval_split, who.role, summary["final"]["student_top1"],
                summary["best"]["student_top1"], summary["best"]["epoch"],
                path / workdir_lib.SUMMARY_FILE)
  return summary


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


def start_line(config, data, method, num_devices: int, steps_per_epoch: int, k: int) -> str:
  """The run's first line: what it trains (`methods.identity`), on what data, and how, and
  the loss settings counted in epochs as resolved for this run (`compose.per_run_words`)."""
  who = identity.of_config(config)
  epochs = compose.per_run_words(method.terms)
  return (
      f"{who.name} on {data.name} ({who.description}; {data.num_train} train / "
      f"{data.num_eval} {data.eval_split} images of {'x'.join(map(str, data.image_shape))}, "
      f"{data.num_classes} classes): {config.model.arch} {method.student.shortcuts} conv "
      f"{method.student.conv}, {num_devices} device(s), "
      f"{jnp.dtype(method.student.dtype).name} compute, {config.num_epochs} epochs x "
      f"{steps_per_epoch} steps of {config.batch_size}, {k} steps per dispatch; "
      f"{recipes.describe(config)}"
      f"{', skip_zero_sum_grads' if config.optimizer.skip_zero_sum_grads else ''}"
      + (f"; in epochs: {epochs}" if epochs else ""))


def _summary(config, path, data, method, wall_s, compile_s, images_per_s, spent) -> dict:
  records = [r for r in reporting.read_metrics(path) if r["split"] == "eval"]
  final = records[-1] if records else {}
  best = max(records, key=lambda r: r["student_top1"]) if records else {}
  return {
      "method": config.method,  # the preset; name, label, ...: what the run trains
      **identity.of_config(config).as_summary(),
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
