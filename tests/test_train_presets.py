"""The presets beside the paper's seven (DKD, DIST, logit standardisation, JointRD + DKD,
RepVGG-style students): each smoke run learns, and gives bitwise the recorded numbers.

The test and its fixtures are tests/test_train.py's (imported, so one copy); this module
only runs them over the other presets, on another pytest-xdist worker (one file per
worker at a time, `--dist loadfile`), with its own smoke teacher.
"""
import pytest

from jointrd_jax import methods
from test_train import (NEW_METHODS, _on_one_device, smoke_runs,  # noqa: F401 (fixtures)
                        teacher_digest, teacher_dir)
from test_train import test_smoke_config_trains_every_method_on_synthetic_data as _trains


def test_the_two_files_cover_every_preset_once():
  import test_train  # pylint: disable=g-import-not-at-top
  assert sorted(test_train.METHODS + list(NEW_METHODS)) == sorted(methods.METHODS)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_smoke_config_trains_every_new_preset_on_synthetic_data(method, smoke_runs):  # noqa: F811
  _trains(method, smoke_runs)
