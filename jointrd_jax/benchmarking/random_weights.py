"""Networks, training states and teacher runs with random weights, for benchmarks: the cost
of a step does not depend on the values, only on realistic magnitudes.

numpy draws instead of the networks' own (threefry) initialisers: XLA:CPU takes tens of
seconds to compile the init of even a tiny ResNet.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import models, sharding
from jointrd_jax.models import dirac
from jointrd_jax.training import checkpoints, run_setup, steps, teachers, workdir


def random_variables(net, image_shape, seed: int = 0) -> dict:
  """Variables of `net` drawn with numpy at the init's scales (kaiming-normal convs, BN
  identity, Dirac a=1, b=0.1)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0), image_shape))

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    shape = leaf.shape
    if name == "kernel" and len(shape) == 4:  # HWIO, fan-out = kh * kw * out
      return (rng.standard_normal(shape) * np.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
              ).astype(np.float32)
    if name == "kernel":  # the head
      bound = 1.0 / np.sqrt(shape[0])
      return rng.uniform(-bound, bound, shape).astype(np.float32)
    if name in ("scale", "var", dirac.A_NAME):
      return np.ones(shape, np.float32)
    if name == dirac.B_NAME:
      return np.full(shape, dirac.B_INIT, np.float32)
    return np.zeros(shape, np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def _abstract(tree):
  return jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), tree)


def numpy_state(method, tx, image_shape, mesh, seed: int = 0):
  """A TrainState of `steps.create_state`'s structure, shapes and dtypes, its networks
  drawn with numpy (`random_variables`), replicated on `mesh`."""

  params, stats = {}, {}
  for i, name in enumerate(method.trained):
    net = method.student if name == "student" else method.teacher
    v = random_variables(net, image_shape, seed=seed + i)
    params[name], stats[name] = v["params"], v["batch_stats"]

  def build(params, stats):
    return steps.TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                            opt_state=tx.init(params))

  rep = sharding.replicated(mesh)
  state = jax.jit(build, out_shardings=rep)(jax.device_put(params, rep),
                                           jax.device_put(stats, rep))
  want = steps.abstract_state(method, tx, image_shape)
  if (jax.tree_util.tree_structure(state) != jax.tree_util.tree_structure(want)
      or _abstract(state) != _abstract(want)):
    raise AssertionError("numpy_state no longer matches steps.create_state; use --init=jax")
  return state


def teacher_variables(method, image_shape, mesh, init: str, seed: int = 1):
  """Frozen teacher variables (random: `init` 'numpy' or 'jax', the network's own
  initialiser), replicated on `mesh`; None for methods without a frozen teacher."""
  if not method.frozen_teacher:
    return None
  rep = sharding.replicated(mesh)
  if init == "numpy":
    return jax.device_put(random_variables(method.teacher, image_shape, seed=seed), rep)
  return jax.jit(lambda k: models.init(method.teacher, k, image_shape),
                 out_shardings=rep)(jax.random.key(seed))


def write_random_teacher(config, run_dir: str, image_shape=(32, 32, 3)) -> None:
  """A teacher run (config.json + one checkpoint) of `config`'s teacher with random
  weights in `run_dir`, for `config.teacher.checkpoint`: a distillation run that loads it
  costs what it would with a trained teacher, and no teacher is trained."""
  t = teachers.teacher_config(config)
  net = run_setup.build_method(t, config.synthetic.num_classes).student
  variables = jax.device_get(models.init(net, jax.random.key(1), image_shape))
  checkpoints.save_network(run_dir, net, variables, image_shape=image_shape,
                           config_dict=workdir.config_to_dict(t))
