"""`--config.recipe`: the training recipe sets the defaults of the training keys, a key set
explicitly wins (whatever the order on the command line), the default changes nothing,
old workdirs resume, a wrong name is refused in one line."""
import json

import pytest
from absl import flags
from ml_collections.config_flags import config_flags

from configs import default, jointrd
from configs.imagenet import default as imagenet
from jointrd_jax.training import optim, recipes, run_setup, train, workdir
from jointrd_jax.errors import UserError

# Today's values, written out (not read from recipes.py): the default must keep them.
CIFAR = dict(num_epochs=200, batch_size=128, learning_rate=0.1, momentum=0.9, nesterov=True,
             weight_decay=5e-4, lr_drop_at=(0.5, 0.75), lr_drop_factor=0.1)
IMAGENET = dict(CIFAR, num_epochs=120, batch_size=512, learning_rate=0.2, weight_decay=1e-4,
                lr_drop_at=(0.25, 0.5, 0.75))
MDISTILLER = dict(num_epochs=240, batch_size=64, learning_rate=0.05, momentum=0.9,
                  nesterov=False, weight_decay=5e-4, lr_drop_at=(0.625, 0.75, 0.875),
                  lr_drop_factor=0.1)
TORCHVISION = dict(num_epochs=90, batch_size=256, learning_rate=0.1, momentum=0.9,
                   nesterov=False, weight_decay=1e-4, lr_drop_factor=0.1)


def _values(c) -> dict:
  return {k: (c if not s else c[s])[k] for s, k in recipes.RECIPE_KEYS}


def _parse(config_file: str, *overrides):
  """The config as `experiments.main` gets it: the file, then the command line's overrides
  (ml_collections' config flag, applied after get_config)."""
  argv = ["prog", f"--config={config_file}", *overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", flag_values=fv, sys_argv=argv)
  fv(argv)
  return fv.config


def test_the_default_recipe_is_todays_values_exactly():
  for c, want in ((default.get_config(), CIFAR), (imagenet.get_config(), IMAGENET)):
    got = _values(c)
    assert got == want and c.recipe == "jointrd"
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
  smoke = _values(jointrd.get_config("smoke"))
  assert smoke == dict(CIFAR, num_epochs=2, batch_size=32, learning_rate=0.03)


def test_mdistiller_sets_the_defaults_and_explicit_keys_win_in_any_order():
  assert _values(_parse("configs/dkd_dirac.py", "--config.recipe=mdistiller")) == MDISTILLER
  for order in (("--config.recipe=mdistiller", "--config.num_epochs=200"),
                ("--config.num_epochs=200", "--config.recipe=mdistiller")):
    c = _parse("configs/dkd_dirac.py", *order)  # 200: jointrd's value, but set explicitly
    assert _values(c) == dict(MDISTILLER, num_epochs=200)
  c = _parse("configs/dkd_dirac.py", "--config.recipe=mdistiller")
  # The drops of the schedule at epochs 150, 180, 210 (10 steps per epoch).
  _, schedule = optim.create_optimizer(c, 10)
  lrs = [float(schedule(s)) for s in (1499, 1500, 1799, 1800, 2099, 2100)]
  assert lrs == pytest.approx([0.05, 0.005, 0.005, 0.0005, 0.0005, 0.00005], rel=1e-6)
  # The smoke variant's own settings (epochs, batch, lr) stay; the rest is mdistiller's.
  c = _parse("configs/jointrd.py:smoke", "--config.recipe=mdistiller")
  assert _values(c) == dict(MDISTILLER, num_epochs=2, batch_size=32, learning_rate=0.03)


def test_torchvision_on_imagenet_and_the_wrong_names_refused():
  c = _parse("configs/imagenet/resnet.py", "--config.recipe=torchvision")
  got = _values(c)
  assert {k: v for k, v in got.items() if k != "lr_drop_at"} == TORCHVISION
  assert [round(f * 90) for f in got["lr_drop_at"]] == [30, 60]
  run_setup.validate(c)
  for file, name, match in (
      ("configs/jointrd.py", "bogus", r"^unknown recipe 'bogus'; choose jointrd or mdistiller "
       r"for the CIFAR configs.* jointrd or torchvision for configs/imagenet"),
      ("configs/jointrd.py", "torchvision", "recipe of configs/imagenet/.*this config's are "
       "jointrd and mdistiller"),
      ("configs/imagenet/jointrd.py", "mdistiller", "this config's are jointrd and torchvision")):
    with pytest.raises(UserError, match=match):
      run_setup.validate(_parse(file, f"--config.recipe={name}"))


def test_the_resolved_values_are_recorded_and_logged(tmp_path):
  c = _parse("configs/plain.py:smoke", "--config.recipe=mdistiller")
  path = workdir.prepare(str(tmp_path), c)
  saved = json.loads((path / workdir.CONFIG_FILE).read_text())
  assert saved["recipe"] == "mdistiller" and saved["optimizer"]["nesterov"] is False
  assert saved["optimizer"]["lr_drop_at"] == [0.625, 0.75, 0.875]
  m = run_setup.build_method(c, 10)
  data = type("Data", (), dict(name="synthetic", num_train=512, num_eval=200, eval_split="test",
                               image_shape=(32, 32, 3), num_classes=10))
  line = train.start_line(c, data, m, 1, 16, 1)
  assert line.endswith("; recipe mdistiller: SGD lr 0.03 momentum 0.9, x0.1 at epochs 1, 2, "
                       "2, weight decay 0.0005")
  assert recipes.describe(default.get_config()) == (
      "recipe jointrd: SGD lr 0.1 Nesterov 0.9, x0.1 at epochs 100, 150, weight decay 0.0005")


def test_an_old_workdir_without_the_new_keys_resumes(tmp_path):
  c = jointrd.get_config("smoke")
  old = workdir.config_to_dict(c)
  del old["recipe"], old["optimizer"]["skip_zero_sum_grads"]
  (tmp_path / workdir.CONFIG_FILE).write_text(json.dumps(old))
  assert workdir.differences(old, c) == []
  assert workdir.check(str(tmp_path), c) is False  # the same run: resumes
  c.recipe = "mdistiller"  # another recipe is another run
  assert "recipe: 'jointrd' -> 'mdistiller'" in workdir.differences(old, c)
