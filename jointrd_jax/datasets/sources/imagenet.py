"""`imagenet2012`: ImageNet from TFDS, prepared in --config.data_dir (never downloaded:
it needs a manual download; `datasets/imagenet_tfds.py`), streamed with ImageNet's
normalisation; the class names are TFDS's synset ids."""
from __future__ import annotations

from jointrd_jax.datasets import class_names, imagenet_tfds
from jointrd_jax.datasets.sources import core


class Imagenet2012(core.Source):
  name, storage, tfds = imagenet_tfds.NAME, core.STREAMED, True
  mean, std = core.IMAGENET_MEAN, core.IMAGENET_STD
  hub = "ILSVRC/imagenet-1k"

  def class_names(self, path: str, spec: str):
    names = class_names.imagenet2012_synsets()
    if names is None:
      return None, ("generic: TFDS's imagenet2012 label file was not found, "
                    "tensorflow_datasets is not installed")
    return names, "imagenet2012 synset ids from TFDS"

  def open_stream(self, path: str, settings, *, data_dir: str) -> core.Stream:
    data = imagenet_tfds.open_builder(data_dir)
    return core.Stream(imagenet_tfds.TfdsSource(data, self.name), tuple(data.class_names),
                       data.num_train, data.num_eval, "validation")


core.register(Imagenet2012())
