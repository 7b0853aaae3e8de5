"""The cheaper exact work of a training step (jointrd_jax/steps.py, teachers.py, train.py):

- several steps per dispatch (one jitted loop over a chunk, batches computed inside) equal
  the same steps one call at a time, and how a run's steps are grouped into chunks changes
  nothing at all (what makes resume exact at any step);
- a frozen teacher folded into its convolutions gives the same loss, gradients and update
  as the unfolded teacher, to float32 rounding;
- a frozen teacher is evaluated once per run, not every epoch.

Tiny networks (resnet10 width 4, batch 16) in float32 on the CPU.
"""
import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jointrd_jax import datasets, models, sharding
from jointrd_jax.models import fold
from jointrd_jax.training import evaluation, feeds, optim, run_setup, steps, train
from jointrd_jax.training import workdir as workdir_lib

U32 = 2.0**-24  # float32 unit roundoff
BATCH = 16


def _config(method):
  c = importlib.import_module(f"configs.{method}").get_config("smoke")
  c.model.width = 4
  c.batch_size = BATCH
  return c


@pytest.fixture(scope="module")
def mesh():
  return sharding.make_mesh(jax.devices()[:1])


@pytest.fixture(scope="module")
def data(mesh):
  return datasets.load("synthetic", mesh=mesh,
                       settings=dict(train_size=BATCH * 4, test_size=BATCH, num_classes=10))


def _teacher(method, mesh, seed=1):
  """Random frozen-teacher variables with non-trivial BatchNorm statistics."""
  v = models.init(method.teacher, jax.random.key(seed), (32, 32, 3))
  rng = np.random.default_rng(seed)
  stats = jax.tree_util.tree_map(lambda x: x, v["batch_stats"])
  stats = jax.tree_util.tree_map_with_path(
      lambda p, x: (rng.normal(0, 0.2, x.shape) if p[-1].key == "mean"
                    else rng.uniform(0.5, 2.0, x.shape)).astype(np.float32), stats)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: (rng.uniform(0.5, 1.5, x.shape).astype(np.float32) if p[-1].key == "scale"
                    else x), v["params"])
  return jax.device_put({"params": params, "batch_stats": stats}, sharding.replicated(mesh))


def _setup(method_name, mesh, data):
  config = _config(method_name)
  method = run_setup.build_method(config, 10)
  tx, schedule = optim.create_optimizer(config, 4)
  state = steps.create_state(method, tx, jax.random.key(0), (32, 32, 3), mesh)
  teacher = _teacher(method, mesh) if method.frozen_teacher else None
  feed = feeds.MemoryFeed(data, BATCH, jnp.float32)
  feed.start_epoch(0, 0)
  return method, tx, schedule, state, teacher, feed


def _copy(tree):
  return jax.tree_util.tree_map(jnp.copy, tree)


def test_steps_per_dispatch_equal_single_steps_and_any_grouping(mesh, data):
  method, tx, schedule, state0, teacher, feed = _setup("plain_dirac", mesh, data)
  step = steps.make_train_step(method, tx, schedule)
  epoch = np.int32(0)
  one = jax.jit(steps.make_multi_step(step, feed.batch_fn, 1), donate_argnums=(0,))
  loop = jax.jit(steps.make_multi_step(step, feed.batch_fn, 4), donate_argnums=(0,))

  def run(fn, groups):
    state, rows, first = _copy(state0), [], 0
    for n in groups:
      state, r = fn(state, teacher, feed.chunk(first, n), epoch, np.int32(n))
      rows += [{k: v[j] for k, v in jax.device_get(r).items()} for j in range(n)]
      first += n
    return jax.device_get(state), rows

  single, single_rows = run(one, [1, 1, 1, 1])
  whole, whole_rows = run(loop, [4])
  split, split_rows = run(loop, [1, 3])
  # The same loop body for every step, however the steps are grouped: bitwise.
  jax.tree_util.tree_map(np.testing.assert_array_equal, whole, split)
  assert whole_rows == split_rows
  assert [r["loss"] for r in whole_rows][3] != 0.0  # rows 0..n-1 are the steps' own
  # The loop vs one step per call: the same operations, which XLA may fuse differently
  # inside the loop body; equal to float32 rounding compounded over 4 SGD steps (each
  # step's relative difference ~ a few u, amplified by the updates: 1e-5 relative bound).
  assert int(single.step) == int(whole.step) == 4
  for a, b in zip(jax.tree_util.tree_leaves(single.params), jax.tree_util.tree_leaves(whole.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(np.abs(a).max()))
  for ra, rb in zip(single_rows, whole_rows):
    np.testing.assert_allclose(ra["loss"], rb["loss"], rtol=1e-5)


def _depth_bound(net, scale):
  """Float32 error bound of a network's forward computed two equal ways: each conv layer
  contributes a relative error of at most its dot-product length K times u (first-order
  bound of a K-term sum), accumulated over the L layers: L * K_max * u * scale."""
  kmax = 9 * net.width * 2 ** 3 * models.EXPANSION[net.kind]
  layers = 2 + sum(net.stage_sizes) * (3 if net.kind == "bottleneck" else 2)
  return layers * kmax * U32 * scale


# kd_mse_all_dirac runs the teacher's full forward (logits and features: KD(logits)'s
# teacher too), jointrd its stages 2-4 on the student's features (the hybrid paths).
@pytest.mark.parametrize("method_name", ["kd_mse_all_dirac", "jointrd"])
def test_folded_teacher_gives_the_same_loss_gradients_and_update(method_name, mesh, data):
  method, tx, schedule, state, teacher, feed = _setup(method_name, mesh, data)
  folded_net, folded = fold.fold(method.teacher, jax.device_get(teacher))
  folded_method = dataclasses.replace(method, teacher=folded_net)
  batch = jax.jit(feed.batch_fn)(feed.chunk(0, 1), 0)
  epoch = np.int32(0)

  def grads(m, t):
    other = {"batch_stats": state.batch_stats, "teacher": t}
    return jax.jit(jax.value_and_grad(m.loss_fn, has_aux=True))(state.params, other, batch,
                                                                 epoch)

  (loss_a, (metrics_a, _)), g_a = grads(method, teacher)
  (loss_b, (metrics_b, _)), g_b = grads(folded_method, folded)
  bound = _depth_bound(method.teacher, 1.0)
  np.testing.assert_allclose(loss_b, loss_a, rtol=bound)
  for k in metrics_a:
    np.testing.assert_allclose(metrics_b[k], metrics_a[k], rtol=bound, atol=bound, err_msg=k)
  for a, b in zip(jax.tree_util.tree_leaves(g_a), jax.tree_util.tree_leaves(g_b)):
    np.testing.assert_allclose(b, a, rtol=0, atol=_depth_bound(method.teacher,
                                                              float(np.abs(a).max())))
  # And the optimizer step from them.
  ua, _ = tx.update(g_a, state.opt_state, state.params)
  ub, _ = tx.update(g_b, state.opt_state, state.params)
  for a, b in zip(jax.tree_util.tree_leaves(ua), jax.tree_util.tree_leaves(ub)):
    np.testing.assert_allclose(b, a, rtol=0, atol=_depth_bound(method.teacher,
                                                              float(np.abs(a).max())))
  # The folded teacher has no BatchNorm at all.
  assert "batch_stats" not in folded and folded_net.folded


def test_frozen_teacher_is_evaluated_once(mesh, data, monkeypatch):
  method, _, _, state, teacher, feed = _setup("kd_logits", mesh, data)
  calls = []
  real = evaluation.evaluate

  def counting(eval_step, *args):
    calls.append(eval_step)
    return real(eval_step, *args)

  monkeypatch.setattr(evaluation, "evaluate", counting)  # what Evaluator calls
  evaluator = evaluation.Evaluator(method, feed, BATCH, data.num_eval)
  first, second = evaluator(state, teacher), evaluator(state, teacher)
  assert first == second and {"student_top1", "teacher_top1"} <= set(first)
  assert len(calls) == 3  # student twice, the teacher once
  # The teacher's numbers are those of a full evaluation of every head.
  full = real(jax.jit(steps.make_eval_step(method)), state, teacher,
              feed.eval_batches(BATCH), data.num_eval)
  assert {k: v for k, v in first.items() if k.startswith("teacher")} == {
      k: v for k, v in full.items() if k.startswith("teacher")}


def test_finished_run_is_reported_without_training(tmp_path, capsys):
  """Rerunning a finished run: 'already finished' and its summary, nothing loaded."""
  config = _config("resnet")
  config.num_epochs = 1
  workdir_lib.prepare(str(tmp_path), config)
  summary = {"epochs_done": 1, "eval_split": "test", "final": {"student_top1": 42.0},
             "best": {"epoch": 1, "student_top1": 42.0}}
  workdir_lib.write_json(tmp_path / workdir_lib.SUMMARY_FILE, summary)
  assert train.train_and_evaluate(config, str(tmp_path)) == summary
  out = capsys.readouterr().out
  assert "already finished: final test top-1 of the network 42.00" in out  # a ResNet run
  assert not (tmp_path / "checkpoints").exists()




def test_skip_zero_sum_grads_in_the_train_step(mesh, data):
  """With the classifier's kernel at zero no gradient reaches the layers below it: every
  tensor but the head's (kernel, bias) gets an all-zero gradient, which the rule skips (its
  parameters stay bitwise as they were, weight decay included), and the step's
  `zero_sum_skips` counts them. (Off, the metric is absent: tests/test_optim.py.)"""
  config = _config("plain")
  config.optimizer.skip_zero_sum_grads = True
  method = run_setup.build_method(config, 10)
  tx, schedule = optim.create_optimizer(config, 4)
  state = steps.create_state(method, tx, jax.random.key(0), (32, 32, 3), mesh)
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(state.params)]
  head = [p for p, x in jax.tree_util.tree_leaves_with_path(state.params) if x.ndim == 2]
  assert len(head) == 1  # the classifier's kernel; its bias: the 1-D leaf beside it
  bias = head[0][:-1] + (jax.tree_util.DictKey("bias"),)
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: x + 0.5 if p != head[0] else jnp.zeros_like(x), state.params)
  feed = feeds.MemoryFeed(data, BATCH, jnp.float32)
  feed.start_epoch(0, 0)
  batch = feed.batch_fn(feed.chunk(0, 1), 0)
  new, metrics = jax.jit(steps.make_train_step(method, tx, schedule))(
      state.replace(params=params), None, batch, np.int32(0))
  moved = {p for p, a, b in zip(paths, jax.tree_util.tree_leaves(params),
                                jax.tree_util.tree_leaves(new.params))
           if not np.array_equal(a, b)}
  assert head[0] in moved and moved <= {head[0], bias}  # the rest skipped: no weight decay
  # The head's bias sums to 0 or not as rounding decides; every other tensor is skipped.
  assert int(metrics["zero_sum_skips"]) == len(paths) - len(moved)
