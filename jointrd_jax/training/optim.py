"""The optimizer of the recipe: SGD with Nesterov momentum, a piecewise-constant learning
rate, and weight decay on everything but the Dirac `a`, `b` (reference recipe); with
`optimizer.skip_zero_sum_grads`, the release's rule that skips a tensor for one step."""
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jointrd_jax.models import dirac


def weight_decay_mask(params):
  """True where weight decay applies: everything but the Dirac a, b."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not str(getattr(path[-1], "key", "")).startswith(dirac.PARAM_PREFIX),
      params)


class SkipZeroSumState(NamedTuple):
  inner: optax.OptState
  skipped: jax.Array  # int32: how many tensors the last step skipped (a train metric)
  counts: optax.Params  # int32 per tensor: the steps that skipped it, over the whole run


def skip_zero_sum_grads(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """`inner`, but a tensor whose gradient sums to exactly 0.0 is skipped for the step: no
  update, and its share of `inner`'s state (the momentum buffer) kept as it was, so no
  weight decay, momentum or Nesterov term either (the release's SGD, `tools/optimizer.py`).
  State shared by all tensors (the schedule's step count) advances as usual."""

  def init(params):
    return SkipZeroSumState(inner.init(params), jnp.zeros([], jnp.int32),
                            jax.tree_util.tree_map(lambda _: jnp.zeros([], jnp.int32), params))

  def update(grads, state, params=None):
    updates, new_inner = inner.update(grads, state.inner, params)
    skip = jax.tree_util.tree_map(lambda g: jnp.sum(g) == 0.0, grads)
    updates = jax.tree_util.tree_map(lambda s, u: jnp.where(s, jnp.zeros_like(u), u),
                                     skip, updates)
    params_def = jax.tree_util.tree_structure(grads)

    def keep(new, old):  # a copy of the parameter tree in the state: per tensor
      if jax.tree_util.tree_structure(new) != params_def:
        return new
      return jax.tree_util.tree_map(lambda s, n, o: jnp.where(s, o, n), skip, new, old)

    is_params = lambda x: jax.tree_util.tree_structure(x) == params_def  # noqa: E731
    new_inner = jax.tree_util.tree_map(keep, new_inner, state.inner, is_leaf=is_params)
    count = sum(jnp.int32(s) for s in jax.tree_util.tree_leaves(skip))
    counts = jax.tree_util.tree_map(lambda c, s: c + s.astype(jnp.int32), state.counts, skip)
    return updates, SkipZeroSumState(new_inner, jnp.asarray(count, jnp.int32), counts)

  return optax.GradientTransformation(init, update)


def create_optimizer(config, steps_per_epoch: int):
  """`(tx, schedule)`: lr x lr_drop_factor at each fraction `lr_drop_at` of the epochs."""
  o = config.optimizer
  boundaries = {}
  for f in sorted(o.lr_drop_at):
    step = int(round(f * config.num_epochs)) * steps_per_epoch
    boundaries[step] = boundaries.get(step, 1.0) * o.lr_drop_factor
  schedule = optax.piecewise_constant_schedule(o.learning_rate, boundaries)
  tx = optax.chain(
      optax.add_decayed_weights(o.weight_decay, mask=weight_decay_mask),
      optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
  if o.skip_zero_sum_grads:
    tx = skip_zero_sum_grads(tx)
  return tx, schedule


def skipped_tensors(opt_state):
  """With `skip_zero_sum_grads`: how many tensors the last step skipped; else None."""
  return opt_state.skipped if isinstance(opt_state, SkipZeroSumState) else None


def skip_fractions(opt_state, steps: int):
  """With `skip_zero_sum_grads`: `{'student/head/bias': fraction of the run's steps that
  skipped it}` for each tensor skipped at least once (summary.json); else None."""
  if not isinstance(opt_state, SkipZeroSumState):
    return None
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(opt_state.counts))[0]
  return {"/".join(str(getattr(k, "key", k)) for k in path): round(int(c) / max(steps, 1), 4)
          for path, c in flat if int(c)}
