"""The teacher of the distillation methods: its recipe, training it when none is given,
loading it, and folding a frozen teacher for inference.

A frozen teacher only ever runs in inference mode (KD's teacher logits, MSE_ALL's stage
features, JointRD's hybrid paths, its evaluation), so its BatchNorm is an affine map with
constant coefficients: `fold=True` folds it into the convolutions once per run
(`fold.fold`), which removes every teacher BatchNorm from every step. The result equals the
unfolded teacher's to float rounding (tests/test_teachers.py).
"""
import copy
import dataclasses

import jax
from etils import epath

from jointrd_jax import methods, models, sharding
from jointrd_jax.training import checkpoints, reporting
from jointrd_jax.models import fold as fold_lib
from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.errors import UserError

TEACHER_SUBDIR = "teacher"


def teacher_config(config):
  """The ResNet recipe for the teacher of `config` (same data, optimizer, epochs, seed): no
  loss settings and no teacher settings of its own, as configs/resnet.py (the student's
  `loss.*`, e.g. its `loss.ce.weight`, apply to the student only)."""
  t = copy.deepcopy(config)
  t.method = "resnet"
  t.model.arch = config.teacher.arch or config.model.arch
  t.model.width = config.teacher.width or config.model.width
  t.model.shortcuts = ""
  t.model.dirac = ""
  t.model.conv = ""
  t.terms = ""
  t.teacher.update(methods.TEACHER_UNSET)
  for term in t.loss.keys():  # the student's loss settings: plain CE trains the teacher
    for key in t.loss[term].keys():
      t.loss[term][key] = None
  t.overwrite = False
  return t


def load_teacher(method: methods.Method, run_dir: str, mesh, fold: bool = True):
  """`(method, teacher_vars)`: the frozen teacher of a ResNet run, checked against what
  `method` expects, on the mesh; with `fold`, BatchNorm folded into its convs and
  `method.teacher` replaced by the folded network."""
  net, variables, _ = checkpoints.load_network(run_dir, "student")
  got, expected = models.describe(net), models.describe(method.teacher)
  if got != expected:
    diff = ", ".join(f"{k} {got[k]!r} (want {expected[k]!r})" for k in expected
                     if got[k] != expected[k])
    raise UserError(f"teacher checkpoint {run_dir} does not fit: {diff}; train a matching "
                    "ResNet (configs/resnet.py) or set --config.teacher.arch/width.")
  if fold:
    folded_net, variables = fold_lib.fold(method.teacher, variables)
    method = dataclasses.replace(method, teacher=folded_net)
  return method, jax.device_put(variables, sharding.replicated(mesh))


def ensure_teacher(config, workdir: str, train_and_evaluate) -> str:
  """Trains the ResNet teacher into WORKDIR/teacher unless it has finished there already."""
  t_dir = str(epath.Path(workdir) / TEACHER_SUBDIR)
  summary = workdir_lib.read_summary(t_dir)
  if summary is None or summary.get("epochs_done") != config.num_epochs:
    reporting.log("no --config.teacher.checkpoint: training the ResNet teacher into %s first",
                  t_dir)
    train_and_evaluate(teacher_config(config), t_dir)
  return t_dir
