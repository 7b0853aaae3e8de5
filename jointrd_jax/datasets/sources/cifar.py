"""`cifar100`, `cifar10`: CIFAR from TFDS (downloaded and prepared into --config.data_dir
on first use unless --config.download=False; `arrays.load_tfds`), in memory, with TFDS's
normalisation constants and the class names in TFDS's label order (`class_names.py`)."""
from __future__ import annotations

from etils import epath

from jointrd_jax.datasets import arrays, class_names
from jointrd_jax.datasets.sources import core
from jointrd_jax.errors import UserError


class TfdsCifar(core.Source):
  tfds = True
  host = "www.cs.toronto.edu"  # where TFDS downloads it from (probed before a download)

  def __init__(self, name: str, pretty: str, names: tuple, mean: tuple, std: tuple):
    self.name, self.pretty, self.names, self.mean, self.std = name, pretty, names, mean, std
    self.hub = f"uoft-cs/{name}"

  def check_present(self, path: str, *, data_dir: str, download: bool) -> None:
    """With download=False and an explicit data_dir, a CIFAR that TFDS has not prepared
    there is refused before TensorFlow is even imported (seconds). TFDS keeps a prepared
    dataset in DATA_DIR/NAME/[CONFIG/]VERSION/ with a dataset_info.json; without one
    anywhere under DATA_DIR/NAME, TFDS would refuse too (it checks the exact version)."""
    if download or not data_dir:
      return
    root = epath.Path(data_dir) / self.name
    if not any(any(root.glob(pattern)) for pattern in ("*/dataset_info.json",
                                                       "*/*/dataset_info.json")):
      raise UserError(f"{self.name} is not prepared in {data_dir} and --config.download=False; "
                      f"prepare it on a machine with internet with `tfds build {self.name} "
                      "--data_dir=DIR`, copy DIR here and pass --config.data_dir=DIR (or set "
                      "--config.download=True).")

  def class_names(self, path: str, spec: str):
    return self.names, f"{self.pretty} names, TFDS label order"

  def load_arrays(self, path: str, settings, *, data_dir: str, download: bool):
    x_train, y_train, x_test, y_test = arrays.load_tfds(self.name, self.pretty, data_dir,
                                                        download, self.host)
    return core.make_arrays(self.name, len(self.names), x_train, y_train, x_test, y_test,
                            self.mean, self.std)


CIFAR100 = core.register(TfdsCifar("cifar100", "CIFAR-100", class_names.CIFAR100,
                                   (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)))
CIFAR10 = core.register(TfdsCifar("cifar10", "CIFAR-10", class_names.CIFAR10,
                                  (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
