"""`npz:PATH`: a user's .npz (x_train, y_train, x_test, y_test; `arrays.load_npz` checks
it), in memory; the class count read off the labels, the normalisation from the training
images' statistics, generic class names."""
from __future__ import annotations

from jointrd_jax.datasets import arrays
from jointrd_jax.datasets.sources import core


class Npz(core.Source):
  name, placeholder = "npz", "PATH"
  labels_from_data = True

  def load_arrays(self, path: str, settings, *, data_dir: str, download: bool):
    x_train, y_train, x_test, y_test = arrays.load_npz(path)
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return core.make_arrays(f"npz:{path}", num_classes, x_train, y_train, x_test, y_test)


core.register(Npz())
