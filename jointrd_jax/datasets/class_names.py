"""The class names of each dataset, in label order, without needing its data.

`for_dataset(dataset, num_classes)` gives `(names, source)`:
- `cifar100`, `cifar10`: the lists below, in TFDS's label order (the order of the CIFAR
  archives' `fine_label_names.txt` / `batches.meta.txt`; alphabetical for CIFAR-100). TFDS
  reads them from the downloaded archive, so they are kept here for machines without it;
- `cifar100_python:DIR`, `cifar10_python:DIR`: the archive's meta file (the same names in
  the same order), or the lists below when it cannot be read;
- `imagenet2012`: TFDS's synset ids (`n01440764`, ...), read from the label file that
  ships inside the tensorflow_datasets package (found without importing it);
- `imagefolder:PATH`: the sorted class-folder names of PATH/train (the labels the
  imagefolder pipeline and torchvision's ImageFolder give), if PATH/train is readable;
- anything else (`synthetic`, `npz:PATH`), or names whose count differs from the
  network's classes: `class_0`, `class_1`, ...
"""
from __future__ import annotations

import importlib.util
import os

from jointrd_jax.datasets import cifar_python
from jointrd_jax.errors import UserError

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


def generic(num_classes: int) -> tuple:
  return tuple(f"class_{i}" for i in range(int(num_classes)))


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


def for_dataset(dataset: str, num_classes: int) -> tuple[tuple, str]:
  """`(names, source)`: the `num_classes` names of `dataset`'s labels and where they
  come from (a short phrase, recorded in export.json)."""
  name = str(dataset).strip()
  key = name.lower()
  names, source = None, None
  if key == "cifar100":
    names, source = CIFAR100, "CIFAR-100 names, TFDS label order"
  elif key == "cifar10":
    names, source = CIFAR10, "CIFAR-10 names, TFDS label order"
  elif cifar_python.parse(name):
    try:
      names, source = cifar_python.class_names(name), f"meta file of {name}"
    except UserError:
      names = CIFAR100 if cifar_python.tfds_name(name) == "cifar100" else CIFAR10
      source = f"CIFAR names, TFDS label order ({name} cannot be read)"
  elif key == "imagenet2012":
    names, source = imagenet2012_synsets(), "imagenet2012 synset ids from TFDS"
    if names is None:
      return generic(num_classes), ("generic: TFDS's imagenet2012 label file was not found, "
                                    "tensorflow_datasets is not installed")
  elif key.startswith("imagefolder:"):
    path = name[len("imagefolder:"):]
    names, source = image_folder_classes(path), f"class folders of {path}/train"
    if names is None:
      return generic(num_classes), f"generic: {path}/train cannot be listed"
  else:
    return generic(num_classes), f"generic: dataset {name!r} has no class names"
  if len(names) != int(num_classes):
    return generic(num_classes), (f"generic: {source} has {len(names)} names but the network "
                                  f"has {num_classes} classes")
  return tuple(names), source
