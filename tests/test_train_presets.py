"""The presets beside the paper's seven (DKD, DIST, logit standardisation, JointRD + DKD,
RepVGG-style students, and any preset added later): each smoke run learns, and gives bitwise
the recorded numbers.

The same check as tests/test_train.py's (tests/smoke_runs.py), over the other presets
(`NEW_METHODS`, derived from the registry), on another pytest-xdist worker (one file per
worker at a time, `--dist loadfile`), with its own smoke teacher.
"""
import pytest

from smoke_runs import (NEW_METHODS, check_smoke_run, smoke_runs, teacher_digest,  # noqa: F401
                        teacher_dir)  # noqa: F401 (fixtures)


@pytest.fixture(scope="module", autouse=True)
def _on_one_device(one_device):
  del one_device


@pytest.mark.parametrize("method", NEW_METHODS)
def test_smoke_config_trains_every_new_preset_on_synthetic_data(method, smoke_runs):  # noqa: F811
  check_smoke_run(method, smoke_runs)
