"""Shared by the deployment tests (test_export, test_package, test_predict, test_quantize,
test_qat, test_repvgg, test_docs): tiny runs saved with random weights, the check images of
the CIFAR-style run, and the help-text check of the argparse tools."""
import argparse

import jax
import numpy as np

from configs import default as default_config
from jointrd_jax import datasets, models
from jointrd_jax.training import checkpoints, workdir

NUM_CLASSES = 10
TEST_SIZE = 32


def random_variables(net, seed=0):
  """Variables drawn with numpy (no XLA compile of the threefry init), with non-trivial
  BatchNorm statistics and Dirac a/b, so that folding has something to fold."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))

  def draw(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name in ("scale", "var", "dirac_a"):
      return rng.uniform(0.5, 1.5, leaf.shape).astype(np.float32)
    return rng.normal(0, 0.2, leaf.shape).astype(np.float32)  # bias, mean, dirac_b

  return jax.tree_util.tree_map_with_path(draw, shapes)


def make_run(run_dir, arch="resnet14", shortcuts="projection", dirac="reparam", dataset="synthetic",
             data_dir=""):
  net = models.build(arch, shortcuts, dirac, num_classes=NUM_CLASSES, width=4)
  variables = random_variables(net)
  c = default_config.get_config("smoke")
  c.dataset = dataset
  c.data_dir = data_dir
  c.download = False
  c.synthetic.update(dict(train_size=64, test_size=TEST_SIZE, num_classes=NUM_CLASSES))
  c.model.update(dict(arch=arch, width=4, shortcuts=shortcuts, dirac=dirac))
  checkpoints.save_network(str(run_dir), net, variables, image_shape=(32, 32, 3),
                           config_dict=workdir.config_to_dict(c))
  return net, variables


def check_data():
  x_train, _, x_test, y_test = datasets.synthetic_arrays(64, TEST_SIZE, NUM_CLASSES, 32)
  mean, std = datasets.arrays.channel_stats(x_train)
  return x_test, y_test, mean, std


def make_imagenet_run(run_dir, dataset="imagenet2012", num_classes=1000, image_size=224):
  """A tiny `imagenet_resnet10` (width 4, random weights and BN statistics, Dirac on every
  block conv and on the projections) saved as a run trained at image_size x image_size."""
  net = models.build("imagenet_resnet10", "projection", "reparam", num_classes=num_classes,
                     width=4)
  variables = random_variables(net, seed=1)
  c = default_config.get_config("smoke")
  c.dataset = dataset
  c.download = False
  c.synthetic.update(dict(train_size=8, test_size=6, num_classes=num_classes,
                          image_size=image_size))
  c.model.update(dict(arch="imagenet_resnet10", width=4, shortcuts="projection",
                      dirac="reparam"))
  checkpoints.save_network(str(run_dir), net, variables,
                           image_shape=(image_size, image_size, 3),
                           config_dict=workdir.config_to_dict(c))
  return net, variables


def assert_every_flag_ends_with_its_default(parser, skip=(), shown=None):
  """Each flag's help ends with `Required.` or `(default: D).` (D = the argparse default,
  or `shown[dest]` where the help words it), and stays short."""
  for action in parser._actions:  # pylint: disable=protected-access
    if action.dest in ("help", *skip) or action.help == argparse.SUPPRESS:  # --noflag
      continue
    text = " ".join(action.help.split())
    if action.required:
      assert text.endswith("Required."), action.dest
    else:
      default = (shown or {}).get(action.dest, action.default)
      assert text.endswith(f"(default: {default}).") and len(text) < 200, (action.dest, text)
