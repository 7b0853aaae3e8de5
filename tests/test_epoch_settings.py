"""Loss settings counted in epochs scale with the run: JointRD's horizon and DKD's warm-up are
fractions of num_epochs in the recipes, resolved once per run, with an absolute override;
the 200-epoch (CIFAR) and 120-epoch (ImageNet) recipes keep today's numbers bitwise."""
import types

import chex
import jax.numpy as jnp
import pytest

from jointrd_jax import methods
from jointrd_jax.methods import losses
from jointrd_jax.training import run_setup, train, workdir
from jointrd_jax.errors import UserError
from jointrd_jax.training import identity
from tests.run_helpers import preset_config



def _resolved(c):
  """{term: {setting: value}} of the settings counted in epochs, as a run of `c` uses them."""
  run_setup.validate(c)
  return {w.name: {k: w.params[k] for k in w.resolved}
          for w in methods.resolve_terms(c.method, c.terms, c.loss.to_dict(), c.num_epochs)
          if w.resolved}


@pytest.mark.parametrize("recipe, method, want", [
    ("configs", "jointrd_dkd", {"jointrd": {"decay_epochs": 60}, "dkd": {"warmup_epochs": 20}}),
    ("configs.imagenet", "jointrd", {"jointrd": {"decay_epochs": 60}}),
])
def test_the_recipes_resolve_to_todays_epochs_and_weights_bit_for_bit(recipe, method, want):
  c = preset_config(method, recipe)
  got = _resolved(c)
  assert got == want  # 0.3 x 200, 0.1 x 200 and 0.5 x 120: exact in float64
  epochs = jnp.arange(c.num_epochs + 1)
  e = got["jointrd"]["decay_epochs"]  # m(e) as the terms compute it, against today's 60
  chex.assert_trees_all_equal(losses.jointrd_weight(epochs, 0.5, e),
                              losses.jointrd_weight(epochs, 0.5, 60))
  if "dkd" in got:
    chex.assert_trees_all_equal(losses.dkd_warmup(epochs, got["dkd"]["warmup_epochs"]),
                                losses.dkd_warmup(epochs, 20))


def test_a_shorter_run_scales_them_and_the_absolute_setting_overrides():
  assert _resolved(preset_config("jointrd_dkd", num_epochs=100)) == {
      "jointrd": {"decay_epochs": 30}, "dkd": {"warmup_epochs": 10}}
  assert _resolved(preset_config("jointrd", num_epochs=15)) == {"jointrd": {"decay_epochs": 4.5}}
  assert _resolved(preset_config("jointrd", num_epochs=100, **{
      "loss.jointrd.decay_fraction": 1.0})) == {"jointrd": {"decay_epochs": 100}}
  assert _resolved(preset_config("dkd_dirac", num_epochs=100, **{
      "loss.dkd.warmup_epochs": 20})) == {"dkd": {"warmup_epochs": 20}}
  # The smoke runs (2 epochs) keep the absolute values they had (configs/default.py).
  assert _resolved(preset_config("jointrd_dkd", arg="smoke")) == {
      "jointrd": {"decay_epochs": 60}, "dkd": {"warmup_epochs": 20}}
  assert _resolved(preset_config("jointrd", "configs.imagenet", "smoke")) == {
      "jointrd": {"decay_epochs": 60}}
  # Without a run length (the library's `build`), the terms' absolute defaults.
  m = methods.build("jointrd_dkd", arch="resnet10", num_classes=10, width=4)
  assert [w.params.get("decay_epochs", w.params.get("warmup_epochs")) for w in m.terms] == [
      60, 20]


def test_a_run_of_another_length_is_still_the_preset_and_says_its_epochs():
  c = preset_config("jointrd_dkd", num_epochs=100)
  assert identity.of_config(c).changes == ()  # the method is the fractions
  m = run_setup.build_method(c, 10)
  data = types.SimpleNamespace(name="synthetic", num_train=512, num_eval=200,
                               eval_split="test", image_shape=(32, 32, 3), num_classes=10)
  assert train.start_line(c, data, m, 1, 16, 1).endswith(
      "; in epochs: jointrd.decay_epochs = 30 (0.3 of 100 epochs); dkd.warmup_epochs = 10 "
      "(0.1 of 100 epochs)")
  # An absolute horizon other than the recipe's (60) is a change of the method.
  c = preset_config("jointrd", num_epochs=100, **{"loss.jointrd.decay_epochs": 20})
  assert identity.of_config(c).changes == ("jointrd.decay_epochs=20",)
  assert train.start_line(c, data, run_setup.build_method(c, 10), 1, 16, 1).endswith(
      "; in epochs: jointrd.decay_epochs = 20 (set in epochs)")


@pytest.mark.parametrize("overrides, message", [
    ({"loss.jointrd.decay_fraction": 0.0}, "decay_fraction=0.0: the decay_fraction of loss term "
     "'jointrd' must be in (0, 1]"),
    ({"loss.dkd.warmup_fraction": 1.5}, "warmup_fraction=1.5: the warmup_fraction of loss "
     "term 'dkd' must be in (0, 1]"),
    ({"loss.jointrd.decay_fraction": 0.5, "loss.jointrd.decay_epochs": 30},
     "decay_fraction=0.5 and --config.loss.jointrd.decay_epochs=30 both set jointrd's "
     "decay_epochs: set one"),
])
def test_bad_epoch_settings_are_refused_naming_the_fix(overrides, message):
  with pytest.raises(UserError, match=message.replace("(", r"\(").replace("]", r"\]")):
    run_setup.validate(preset_config("jointrd_dkd", **overrides))


def _saved_before_fractions(c) -> dict:
  """`c` as config.json of the version before the fractions: no fraction keys."""
  d = workdir.config_to_dict(c)
  for settings in d["loss"].values():
    settings.pop("decay_fraction", None)
    settings.pop("warmup_fraction", None)
  return d


@pytest.mark.parametrize("recipe, method, num_epochs, diff", [
    ("configs", "jointrd_dkd", 200, []),            # 60 and 20 then and now: resumes
    ("configs.imagenet", "jointrd", 120, []),
    ("configs", "jointrd", 15, ["loss.jointrd.decay_epochs: 60 -> None"]),  # 60 then, 4.5 now
    ("configs", "dkd_dirac", 100, ["loss.dkd.warmup_epochs: 20 -> None"]),
])
def test_a_run_saved_before_the_fractions_resumes_only_with_the_same_epochs(
    recipe, method, num_epochs, diff):
  c = preset_config(method, recipe, num_epochs=num_epochs)
  saved = _saved_before_fractions(c)
  assert workdir.differences(saved, c) == diff
  if diff:  # the absolute value it ran resumes it
    term, key = diff[0].split(":")[0].split(".")[1:]
    c.loss[term][key] = 60 if term == "jointrd" else 20
    assert workdir.differences(saved, c) == []
