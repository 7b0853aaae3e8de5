"""`imagefolder:PATH`: a folder of images, PATH/train/<class>/* and PATH/val/<class>/*
(torchvision's ImageFolder layout; `datasets/imagefolder.py`), streamed with ImageNet's
normalisation; the class names are the sorted class-folder names of PATH/train."""
from __future__ import annotations

from jointrd_jax.datasets import class_names, imagefolder
from jointrd_jax.datasets.sources import core
from jointrd_jax.errors import UserError


def folder_stream(folder: imagefolder.ImageFolder, where: str) -> core.Stream:
  """A scanned folder as a `Stream`; fewer than 2 classes is refused."""
  classes = folder.classes
  if len(classes) < 2:
    raise UserError(f"{where}: {len(classes)} class folder ({classes[0]}); a classifier needs "
                    "at least 2 class folders under train/ and val/.")
  return core.Stream(imagefolder.FolderSource(folder, where), tuple(classes),
                     len(folder.train), len(folder.val), "val")


class ImageFolder(core.Source):
  name, placeholder, storage = "imagefolder", "PATH", core.STREAMED
  mean, std = core.IMAGENET_MEAN, core.IMAGENET_STD

  def class_names(self, path: str, spec: str):
    names = class_names.image_folder_classes(path)
    if names is None:
      return None, f"generic: {path}/train cannot be listed"
    return names, f"class folders of {path}/train"

  def open_stream(self, path: str, settings, *, data_dir: str) -> core.Stream:
    where = f"{self.name}:{path}"
    return folder_stream(imagefolder.scan(path, dataset=where), where)


core.register(ImageFolder())
