"""`digits`: scikit-learn's handwritten digits (`datasets/digits.py`: 1,437 training and
360 test images, 32x32x3, classes '0'..'9'), in memory, shipped inside scikit-learn (no
download); the normalisation from the training images' statistics, as `npz:` gives the
same arrays written by `python -m experiments.make_digits`."""
from __future__ import annotations

import importlib.util

from jointrd_jax.datasets import digits
from jointrd_jax.datasets.sources import core
from jointrd_jax.errors import UserError


class Digits(core.Source):
  name = "digits"

  def check_present(self, path: str, *, data_dir: str, download: bool) -> None:
    if importlib.util.find_spec("sklearn") is None:
      raise UserError(digits.MISSING)

  def class_names(self, path: str, spec: str):
    return digits.CLASS_NAMES, "digits 0-9 (scikit-learn's load_digits)"

  def load_arrays(self, path: str, settings, *, data_dir: str, download: bool):
    a = digits.arrays()
    return core.make_arrays(self.name, len(digits.CLASS_NAMES), a["x_train"], a["y_train"],
                            a["x_test"], a["y_test"])


core.register(Digits())
