"""`synthetic`: generated data, learnable and deterministic, no files needed: arrays in
memory for the CIFAR archs (`arrays.synthetic_arrays`, the training images' statistics as
normalisation), a folder of JPEGs generated once and streamed like ImageNet for the
imagenet_* archs (`synthetic_folder`, ImageNet's normalisation). Its own settings are the
config section `synthetic` (`Settings`)."""
from __future__ import annotations

import dataclasses
import os

from absl import logging

from jointrd_jax import caches
from jointrd_jax.datasets import arrays, synthetic_folder
from jointrd_jax.datasets import imagefolder as imagefolder_lib
from jointrd_jax.datasets.sources import core, imagefolder
from jointrd_jax.errors import UserError

STREAM_SEED = 0  # the generated folder's


@dataclasses.dataclass(frozen=True)
class Settings:
  train_size: int = 50_000
  test_size: int = 10_000
  num_classes: int = 100
  image_size: int = 32  # in memory; a streamed folder's crops are `config.streamed`'s


class Synthetic(core.Source):
  name, storage, settings_key, Settings = "synthetic", core.BY_ARCH, "synthetic", Settings

  def streamed(self, family: str | None) -> bool:
    return family == "imagenet"

  def reads_data_dir(self, streamed: bool) -> bool:
    return streamed  # where the folder is generated

  def normalization(self, streamed: bool):
    return (core.IMAGENET_MEAN, core.IMAGENET_STD) if streamed else None

  def load_arrays(self, path: str, settings: Settings, *, data_dir: str, download: bool):
    s = settings
    x_train, y_train, x_test, y_test = arrays.synthetic_arrays(
        s.train_size, s.test_size, s.num_classes, s.image_size)
    # The statistics of these i.i.d. images are estimated on (at most) the
    # first 4,096, which keeps generation under a second.
    mean, std = arrays.channel_stats(x_train[:4096])
    logging.warning(
        "SYNTHETIC DATA: %d train / %d test random %dx%d images of %d classes "
        "(class colour + pattern + noise); results say nothing about CIFAR.",
        len(y_train), len(y_test), s.image_size, s.image_size, s.num_classes)
    return core.make_arrays(self.name, s.num_classes, x_train, y_train, x_test, y_test,
                            mean, std)

  def open_stream(self, path: str, settings: Settings, *, data_dir: str) -> core.Stream:
    return imagefolder.folder_stream(_folder(data_dir, settings), self.name)


def _folder(data_dir: str, s: Settings) -> imagefolder_lib.ImageFolder:
  """The generated folder (into `data_dir`, default `caches.generated(...)`, reused by
  later runs), scanned."""
  num_classes = int(s.num_classes)
  if num_classes <= 0:
    raise UserError(f"synthetic_num_classes={num_classes} must be positive.")
  per_train = max(1, int(s.train_size) // num_classes)
  per_val = max(1, int(s.test_size) // num_classes)
  name = f"jointrd_synthetic_imagefolder_{num_classes}x{per_train}x{per_val}_seed{STREAM_SEED}"
  directory = os.path.join(data_dir, name) if data_dir else caches.generated(name)
  synthetic_folder.ensure_image_folder(directory, num_classes=num_classes,
                                       train_per_class=per_train, val_per_class=per_val,
                                       seed=STREAM_SEED)
  logging.warning("SYNTHETIC DATA: %d train / %d val generated images of %d classes in %s "
                  "(kept for later runs; class colour + noise); results say nothing about "
                  "ImageNet.",
                  per_train * num_classes, per_val * num_classes, num_classes, directory)
  return imagefolder_lib.scan(directory, dataset="synthetic")


core.register(Synthetic())
