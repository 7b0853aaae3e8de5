"""The former names that still work (jointrd_jax/compat.py): each gives the thing under its
new name, with a DeprecationWarning where a user's code calls it."""
import importlib
import types

import pytest

import jointrd_jax
from jointrd_jax import compat, models
from jointrd_jax.errors import UserError


@pytest.mark.parametrize("name", sorted(compat.MOVED_MODULES))
def test_a_moved_module_is_the_module_at_its_new_path(name):
  with pytest.warns(DeprecationWarning, match=f"jointrd_jax.{name} moved to "):
    moved = getattr(jointrd_jax, name)
  assert moved is importlib.import_module(compat.MOVED_MODULES[name])


def test_the_library_api_imports_of_the_docs_work():
  with pytest.warns(DeprecationWarning):
    from jointrd_jax import fold, losses, train  # pylint: disable=g-import-not-at-top
  from jointrd_jax.training import train as training_train  # pylint: disable=g-import-not-at-top
  assert train is training_train and callable(train.train_and_evaluate)
  assert fold.fold is models.fold.fold and callable(losses.cross_entropy)


def test_a_name_that_never_was_a_module_is_an_attribute_error():
  with pytest.raises(AttributeError, match="has no attribute 'export'"):
    jointrd_jax.export  # pylint: disable=pointless-statement  # the removed sys.modules alias


def test_build_takes_dirac_as_the_former_name_of_conv():
  with pytest.warns(DeprecationWarning, match=r"build\(dirac=\) is deprecated; write conv="):
    net = models.build("resnet10", "projection", dirac="reparam", width=4)
  assert net == models.build("resnet10", "projection", "reparam", width=4)
  assert net.conv == "reparam"
  with pytest.raises(UserError, match="conv 'init' and dirac 'reparam' disagree"):
    models.build("resnet10", "projection", conv="init", dirac="reparam", width=4)


def test_the_config_key_model_dirac_is_the_conv_kind():
  assert compat.conv_of_model({"conv": "", "dirac": "reparam"}) == "reparam"
  assert compat.conv_of_model({"conv": "repvgg", "dirac": ""}) == "repvgg"
  assert compat.conv_of_model({"conv": "init", "dirac": "init"}) == "init"
  assert compat.conv_of_model({}) == ""
  assert compat.conv_of_model(types.SimpleNamespace(conv="", dirac="init")) == "init"
  assert compat.conv_of_model(types.SimpleNamespace(conv="none")) == "none"
  with pytest.raises(UserError, match="model.conv 'init' and model.dirac 'reparam' disagree"):
    compat.conv_of_model({"conv": "init", "dirac": "reparam"})


def test_an_old_network_description_names_the_conv_kind_dirac():
  assert compat.network_fields({"dirac": "reparam", "width": 4}) == {"conv": "reparam",
                                                                      "width": 4}
  assert compat.network_fields({"conv": "none"}) == {"conv": "none"}
