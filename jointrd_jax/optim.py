"""The optimizer of the recipe: SGD with Nesterov momentum, a piecewise-constant learning
rate, and weight decay on everything but the Dirac `a`, `b` (reference recipe)."""
import jax
import optax

from jointrd_jax.models import dirac


def weight_decay_mask(params):
  """True where weight decay applies: everything but the Dirac a, b."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not str(getattr(path[-1], "key", "")).startswith(dirac.PARAM_PREFIX),
      params)


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
  return tx, schedule
