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
import time

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from jointrd_jax import sharding
from jointrd_jax.methods import compose
from jointrd_jax.training import (checkpoints, identity, loop, optim, recipes, reporting,
                                  run_setup, steps, teachers)
from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.training.evaluation import Evaluator


def _finished(config, workdir: str):
  """The summary of a finished run of exactly this config in `workdir`, else None."""
  summary = workdir_lib.read_summary(workdir)
  if (summary is None or summary.get("epochs_done") != config.num_epochs
      or workdir_lib.check(workdir, config)):
    return None
  return summary


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains and evaluates `config.method`; returns the summary written to summary.json."""
  run_setup.validate(config)
  who = identity.of_config(config)
  reporting.log("%s: initialising (workdir %s)", who.name, workdir)
  done = _finished(config, workdir)
  if done is not None:
    reporting.log("already finished: final %s top-1 of the %s %.2f (best %.2f at epoch "
                  "%d); summary in %s", done["eval_split"], who.role, done["final"]["student_top1"],
                  done["best"]["student_top1"], done["best"]["epoch"],
                  epath.Path(workdir) / workdir_lib.SUMMARY_FILE)
    return done
  run, tx, schedule, mesh = _set_up(config, workdir)
  state_spec = steps.abstract_state(run.method, tx, run.data.image_shape, mesh)
  state = _restore(run, state_spec)
  run.writer.truncate_after(run.start_step)
  reporting.log(start_line(config, run.data, run.method, mesh.devices.size,
                           run.steps_per_epoch, run.k))
  t0 = time.perf_counter()
  run_steps, evaluator, state = _compile(run, tx, schedule, state_spec, state, mesh)
  compile_s = time.perf_counter() - t0
  t_start = time.perf_counter() - compile_s
  training = loop.Loop(run, run_steps, evaluator, compile_s)
  state = training.run_epochs(state)
  run.writer.close()
  run.ckpt.close()
  training.spent.update(eval=training.eval_s, teacher_eval=evaluator.teacher_s,
                        train_steps=run.progress.timed_seconds)
  return _finish(run, who, state, training.step, time.perf_counter() - t_start, compile_s,
                 training.spent)


def _set_up(config, workdir: str):
  """Checks what can fail before any work, then loads the data, builds the method (and its
  teacher), prepares the workdir and the optimizer: (`loop.Run`, tx, schedule, mesh)."""
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.batch_size, mesh)
  sharding.check_batch_size(config.eval_batch_size, mesh, "config.eval_batch_size")
  run_setup.check_data_present(config)
  # Refuse a workdir of another run before anything is written, trained or compiled; every
  # process checks before any process writes.
  discard = workdir_lib.check(workdir, config)
  _sync("workdir checked")
  workdir_lib.check_writable(workdir)

  data = run_setup.load_data(config, mesh)
  method = run_setup.build_method(config, data.num_classes)
  feed, k = run_setup.make_feed(config, data, method.student.dtype, mesh)
  teacher_vars = None
  if method.frozen_teacher:
    t_dir = config.teacher.checkpoint or teachers.ensure_teacher(config, workdir,
                                                                 train_and_evaluate)
    method, teacher_vars = teachers.load_teacher(method, t_dir, mesh, fold=config.teacher.fold)

  path = workdir_lib.prepare(workdir, config, discard)  # first write of the run's own files
  _sync("workdir prepared")
  tx, schedule = optim.create_optimizer(config, feed.steps_per_epoch)
  run = loop.Run(config=config, path=path, data=data, method=method, feed=feed, k=k,
                 teacher_vars=teacher_vars,
                 ckpt=checkpoints.Checkpoints(path, keep=config.keep_checkpoints),
                 writer=reporting.Writer(path),
                 progress=reporting.Progress(feed.steps_per_epoch * config.num_epochs,
                                             config.batch_size))
  return run, tx, schedule, mesh


def _restore(run: loop.Run, state_spec):
  """The latest good checkpoint's state (setting `run.start_step` and the metrics of a
  partly done epoch), or None for a new run."""
  restored = run.ckpt.restore(state_spec)
  if restored is None:
    return None
  state, meta = restored
  run.start_step = int(meta["step"])
  if run.start_step % run.steps_per_epoch:
    run.resumed_metrics = loop.restore_epoch_metrics(meta)
  reporting.log("resumed from %s at step %d (%s)", run.ckpt.directory, run.start_step,
                reporting.epoch_position(run.start_step, run.steps_per_epoch,
                                         run.config.num_epochs))
  return state


def _compile(run: loop.Run, tx, schedule, state_spec, state, mesh):
  """Compiles the train step, the evaluation and (for a new run) the initialisation at once:
  XLA compiles on one core each, so they overlap on any multi-core host. Returns the
  compiled steps, the evaluator and the state."""
  run_steps = jax.jit(steps.make_multi_step(steps.make_train_step(run.method, tx, schedule),
                                            run.feed.batch_fn, run.k), donate_argnums=(0,))
  evaluator = Evaluator(run.method, run.feed, run.config.eval_batch_size, run.data.num_eval)
  with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
    compiled = pool.submit(lambda: run_steps.lower(
        state_spec, run.teacher_vars, run.feed.chunk_spec(run.k), np.int32(0),
        np.int32(run.k)).compile())
    compiled_eval = pool.submit(evaluator.compile, state_spec, run.teacher_vars)
    if state is None:
      state = steps.create_state(run.method, tx, jax.random.key(run.config.seed),
                                 run.data.image_shape, mesh)
    run_steps = compiled.result()
    compiled_eval.result()
  return run_steps, evaluator, state


def _finish(run: loop.Run, who, state, step: int, wall_s: float, compile_s: float,
            spent: dict) -> dict:
  """Writes summary.json and the learning curves, logs the result; returns the summary."""
  config, data, path = run.config, run.data, run.path
  summary = _summary(config, path, data, run.method, wall_s, compile_s,
                     run.progress.images_per_s, spent)
  skips = optim.skip_fractions(state.opt_state, step)  # with optimizer.skip_zero_sum_grads only
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


def start_line(config, data, method, num_devices: int, steps_per_epoch: int, k: int) -> str:
  """The run's first line: what it trains (`training.identity`), on what data, and how, and
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
