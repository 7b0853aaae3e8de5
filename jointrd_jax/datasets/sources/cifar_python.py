"""`cifar100_python:DIR`, `cifar10_python:DIR`: CIFAR from the python-version archives
(`datasets/cifar_python.py`), in memory. They hold TFDS's images in TFDS's order, so they
take TFDS CIFAR's normalisation constants (`cifar.py`): a run on them is a run on TFDS's."""
from __future__ import annotations

from jointrd_jax.datasets import cifar_python as archive
from jointrd_jax.datasets.sources import cifar, core
from jointrd_jax.errors import UserError


class CifarPython(core.Source):
  placeholder = "DIR"

  def __init__(self, same: cifar.TfdsCifar):
    self.same = same  # the TFDS dataset of the same images
    self.name, self.mean, self.std, self.hub = f"{same.name}_python", same.mean, same.std, same.hub

  def check_present(self, path: str, *, data_dir: str, download: bool) -> None:
    archive.check(f"{self.name}:{path}")  # its files, before anything is loaded

  def class_names(self, path: str, spec: str):
    try:
      return archive.class_names(spec), f"meta file of {spec}"
    except UserError:
      return self.same.names, f"CIFAR names, TFDS label order ({spec} cannot be read)"

  def load_arrays(self, path: str, settings, *, data_dir: str, download: bool):
    name = f"{self.name}:{path}"
    x_train, y_train, x_test, y_test, names = archive.load(name)
    return core.make_arrays(name, len(names), x_train, y_train, x_test, y_test, self.mean,
                            self.std)


core.register(CifarPython(cifar.CIFAR100))
core.register(CifarPython(cifar.CIFAR10))
