"""Tiny ImageNet-like image folders, generated: for smoke runs, tests and benchmarks.

`make_image_folder(path, ...)` writes PATH/train/<class>/* and PATH/val/<class>/* as
real image files (JPEG, quality 90, with `.JPEG` names like ImageNet's; the first image
of the first class of each split is a PNG), of random sizes. Each class has a colour;
an image is that colour + a smooth random field + pixel noise, so a tiny network learns
the classes from any crop. Deterministic for a given seed (same pixels, same bytes with
the same Pillow). `ensure_image_folder` generates such a folder once into a directory
and reuses it (what `streamed.load('synthetic', ...)` streams).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from jointrd_jax.errors import UserError

_VERSION = 1  # bump when the generated content changes


def class_name(c: int) -> str:
  return f"class{c:04d}"  # sorted order = class index


def _image(rng, colour, h, w, noise):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  low = rng.normal(0.0, 25.0, (4, 4, 3)).astype(np.float32)
  field = np.stack([np.asarray(Image.fromarray(low[..., k]).resize(
      (w, h), Image.BICUBIC)) for k in range(3)], axis=-1)
  x = colour + field + rng.normal(0.0, noise, (h, w, 3))
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def make_image_folder(path: str, num_classes: int = 10, train_per_class: int = 16,
                      val_per_class: int = 4, seed: int = 0, *,
                      height_range: tuple = (48, 160), width_range: tuple = (48, 160),
                      noise: float = 20.0, quality: int = 90) -> str:
  """Writes the folder (see the module docstring) and returns `path`.

  Image h and w are drawn uniformly from `height_range`, `width_range` (inclusive;
  (375, 375) and (500, 500) give ImageNet's typical 500x375, about 100 KB per JPEG).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for what, v in (("num_classes", num_classes), ("train_per_class", train_per_class),
                  ("val_per_class", val_per_class)):
    if int(v) <= 0:
      raise UserError(f"{what}={v} must be positive.")
  colours = np.random.default_rng([seed, 0]).uniform(40, 215, (num_classes, 3))
  for s, (split, per_class) in enumerate((("train", train_per_class), ("val", val_per_class))):
    for c in range(num_classes):
      folder = os.path.join(path, split, class_name(c))
      os.makedirs(folder, exist_ok=True)
      for i in range(per_class):
        rng = np.random.default_rng([seed, 1 + s, c, i])
        h = int(rng.integers(height_range[0], height_range[1] + 1))
        w = int(rng.integers(width_range[0], width_range[1] + 1))
        image = Image.fromarray(_image(rng, colours[c], h, w, noise))
        stem = os.path.join(folder, f"{class_name(c)}_{i:05d}")
        if c == 0 and i == 0:
          image.save(stem + ".png", format="PNG")
        else:
          image.save(stem + ".JPEG", format="JPEG", quality=quality)
  return path


def ensure_image_folder(directory: str, **kwargs) -> str:
  """`make_image_folder(directory, **kwargs)` unless `directory` already holds it.

  Written into a temporary sibling and renamed into place, so concurrent processes and
  interrupted runs never see half a folder; a marker records the arguments, and a
  directory made with other arguments is refused.
  """
  params = json.dumps(dict(kwargs, version=_VERSION), sort_keys=True)
  marker = os.path.join(directory, "GENERATED.json")
  if os.path.isdir(directory):
    try:
      with open(marker) as f:
        existing = f.read()
    except OSError:
      existing = None
    if existing == params:
      return directory
    raise UserError(f"{directory} exists but is not a synthetic image folder made with "
                    f"these settings ({params}); remove it or choose another directory.")
  parent = os.path.dirname(os.path.abspath(directory))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".synthetic_tmp_", dir=parent)
  try:
    make_image_folder(tmp, **kwargs)
    with open(os.path.join(tmp, "GENERATED.json"), "w") as f:
      f.write(params)
    try:
      os.rename(tmp, directory)
    except OSError:  # another process finished first
      if not os.path.isdir(directory):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return directory
