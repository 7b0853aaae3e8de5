"""The class names the data sources (`sources/`) give their labels, where they come from:

- `cifar100`, `cifar10`: the lists below, in TFDS's label order (the order of the CIFAR
  archives' `fine_label_names.txt` / `batches.meta.txt`; alphabetical for CIFAR-100). TFDS
  reads them from the downloaded archive, so they are kept here for machines without it
  (the python-version archives' own meta files hold the same names in the same order);
- `imagenet2012`: TFDS's synset ids (`n01440764`, ...), read from the label file that
  ships inside the tensorflow_datasets package (found without importing it);
- `imagefolder:PATH`: the sorted class-folder names of PATH/train (the labels the
  imagefolder pipeline and torchvision's ImageFolder give), if PATH/train is readable.

`sources.get(dataset).class_names(num_classes)` answers for any dataset.
"""
from __future__ import annotations

import importlib.util
import os


CIFAR100 = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm")

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")

_IMAGENET_LABELS = ("datasets", "imagenet2012", "labels.txt")  # inside tensorflow_datasets


def imagenet2012_synsets() -> tuple | None:
  """TFDS imagenet2012's 1000 label names (synset ids), or None without the package."""
  try:
    spec = importlib.util.find_spec("tensorflow_datasets")
  except (ImportError, ValueError):
    return None
  for root in (spec.submodule_search_locations or []) if spec else []:
    path = os.path.join(root, *_IMAGENET_LABELS)
    try:
      with open(path, encoding="utf-8") as f:
        return tuple(line.strip() for line in f if line.strip())
    except OSError:
      continue
  return None


def image_folder_classes(path: str) -> tuple | None:
  """The sorted class-folder names of PATH/train, or None when it cannot be listed."""
  try:
    with os.scandir(os.path.join(path, "train")) as entries:
      return tuple(sorted(e.name for e in entries if e.is_dir()))
  except OSError:
    return None
