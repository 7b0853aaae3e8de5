"""The jitted work of a run: the train state, its creation on the mesh, the train step,
several train steps per dispatch, and the evaluation step.

- `make_train_step`: one optimizer step, `value_and_grad` of the method's loss over the
  trainable subtree only (a frozen teacher gets no gradient).
- `make_multi_step`: up to `max_steps` such steps in ONE jitted call (a `fori_loop` whose
  trip count is an argument, so one compilation serves every count), each step's batch
  computed inside the call by the data feed's `batch_fn`: one dispatch and no separate
  input call per step. The trainer runs every step through it, so a run's numbers do not
  depend on how its steps were grouped into calls (a resumed run groups them differently).
  With `max_steps=1` there is no loop: XLA:CPU runs convolutions inside a loop ~25x
  slower than outside one (measured here with jax 0.10.2), so CPU runs use 1.
- `make_eval_step`: masked sums of top-1/top-5 hits and CE per head (and confusion counts).
"""
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import optax

from jointrd_jax import methods, models, sharding
from jointrd_jax.training import optim

# On XLA:CPU, LLVM's optimisation passes dominate the compilation of the initialisation
# (seconds for a small net: threefry and the initializers, run once). Level 0 compiles it
# in a fraction of that; the values then differ from an optimised build's in the last bit
# of some initial weights (still the same distribution, and deterministic).
_FAST_COMPILE_CPU = {"xla_backend_optimization_level": 0}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any        # {'student': ..., ['teacher': ...]}: the trainable subtree
  batch_stats: Any   # the same keys
  opt_state: Any


def _init_fn(method: methods.Method, tx, image_shape):

  def init(key):
    keys = dict(zip(("student", "teacher"), jax.random.split(key)))
    params, stats = {}, {}
    for name in method.trained:
      net = method.student if name == "student" else method.teacher
      v = models.init(net, keys[name], image_shape)
      params[name], stats[name] = v["params"], v["batch_stats"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                      opt_state=tx.init(params))

  return init


def abstract_state(method: methods.Method, tx, image_shape, mesh=None):
  """The shapes and dtypes of `create_state`'s state (nothing computed); with `mesh`, also
  its shardings (replicated), so that steps can be compiled for it before it exists."""
  shapes = jax.eval_shape(_init_fn(method, tx, image_shape), jax.random.key(0))
  if mesh is None:
    return shapes
  rep = sharding.replicated(mesh)
  return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rep),
                                shapes)


def create_state(method: methods.Method, tx, key, image_shape, mesh) -> TrainState:
  """The initial state, created directly on the mesh (replicated), never on one host."""
  init = _init_fn(method, tx, image_shape)
  shardings = jax.tree_util.tree_map(lambda _: sharding.replicated(mesh),
                                     jax.eval_shape(init, key))
  lowered = jax.jit(init, out_shardings=shardings).lower(key)
  options = _FAST_COMPILE_CPU if mesh.devices.flat[0].platform == "cpu" else None
  return lowered.compile(options)(key)


def make_train_step(method: methods.Method, tx, schedule):
  """`step(state, teacher_vars, batch, epoch) -> (state, metrics)`; jit it with donation."""

  def train_step(state: TrainState, teacher_vars, batch, epoch):
    other = {"batch_stats": state.batch_stats, "teacher": teacher_vars}
    grad_fn = jax.value_and_grad(method.loss_fn, has_aux=True)
    (_, (metrics, new_stats)), grads = grad_fn(state.params, other, batch, epoch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, lr=schedule(state.step), grad_norm=optax.global_norm(grads))
    skipped = optim.skipped_tensors(opt_state)  # only with optimizer.skip_zero_sum_grads
    if skipped is not None:
      metrics["zero_sum_skips"] = skipped.astype(jnp.float32)
    return state.replace(step=state.step + 1, params=params, batch_stats=new_stats,
                         opt_state=opt_state), metrics

  return train_step


def make_multi_step(train_step: Callable, batch_fn: Callable, max_steps: int):
  """`run(state, teacher_vars, feed, epoch, n) -> (state, metrics)`: steps 0..n-1 of a
  chunk, n <= max_steps, step i on `batch_fn(feed, i)`. `metrics` holds every step's
  metrics stacked, `[max_steps]` each, rows n.. left zero. Jit it with donation."""

  if max_steps == 1:  # no loop at all (see `steps_per_dispatch`)

    def run_one(state: TrainState, teacher_vars, feed, epoch, n):
      del n
      state, metrics = train_step(state, teacher_vars, batch_fn(feed, 0), epoch)
      return state, jax.tree_util.tree_map(lambda m: m[None], metrics)

    return run_one

  def run(state: TrainState, teacher_vars, feed, epoch, n):
    shapes = jax.eval_shape(lambda s, b: train_step(s, teacher_vars, b, epoch)[1], state,
                            jax.eval_shape(batch_fn, feed, 0))
    rows = jax.tree_util.tree_map(lambda s: jnp.zeros((max_steps,) + s.shape, s.dtype), shapes)

    def body(i, carry):
      state, rows = carry
      state, metrics = train_step(state, teacher_vars, batch_fn(feed, i), epoch)
      rows = jax.tree_util.tree_map(lambda r, m: r.at[i].set(m), rows, metrics)
      return state, rows

    return jax.lax.fori_loop(0, n, body, (state, rows))

  return run


def score(logits, labels, mask, name: str, confusion: bool = False) -> dict:
  """Masked sums of one head's top-1 / top-5 hits and CE (top-5: of min(5, K) classes);
  with `confusion`, also its [K, K] counts (row: label, column: top-1 class)."""
  logits = logits.astype(jnp.float32)
  k = min(5, logits.shape[-1])
  top = jax.lax.top_k(logits, k)[1]
  hit1 = (top[:, 0] == labels).astype(jnp.float32)
  hit5 = jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  out = {f"{name}_top1": jnp.sum(hit1 * mask), f"{name}_top5": jnp.sum(hit5 * mask),
         f"{name}_loss": jnp.sum(ce * mask)}
  if confusion:
    num = logits.shape[-1]
    out[f"{name}_confusion"] = jnp.zeros((num, num), jnp.float32).at[labels, top[:, 0]].add(mask)
  return out


def make_eval_step(method: methods.Method, heads=methods.EVAL_HEADS, confusion: bool = False):
  """Masked sums of top-1 / top-5 hits and CE for each of `heads` the method has (`score`);
  with `confusion`, each head's confusion counts too."""

  def eval_step(state: TrainState, teacher_vars, batch):
    other = {"batch_stats": state.batch_stats, "teacher": teacher_vars}
    logits_by_head = method.eval_logits(state.params, other, batch["image"], heads=heads)
    out = {"count": jnp.sum(batch["mask"])}
    for name, logits in logits_by_head.items():
      out.update(score(logits, batch["label"], batch["mask"], name, confusion))
    return out

  return eval_step
