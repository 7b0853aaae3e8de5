"""scikit-learn's handwritten digits (`sklearn.datasets.load_digits`) as CIFAR-shaped arrays.

A small real dataset that needs no download (it ships inside scikit-learn): 1,797 grayscale
8x8 images of the digits 0-9, pixel values 0..16. Here each image is scaled to 0..255
(`round(v * 255 / 16)`), enlarged 4x by pixel repetition to 32x32 and repeated over 3
channels, and the set is split into 1,437 training and 360 test images, stratified by class
with a fixed seed (`sklearn.model_selection.train_test_split(test_size=360,
random_state=0)`): every call gives the same arrays. `experiments.make_digits` writes them as
an `.npz` that `--config.dataset=npz:PATH` reads.
"""
from __future__ import annotations

import numpy as np

from jointrd_jax.errors import UserError

TEST_SIZE = 360
SPLIT_SEED = 0
SCALE = 4  # 8x8 -> 32x32
CLASS_NAMES = tuple(str(d) for d in range(10))
MISSING = "the digits dataset needs scikit-learn: pip install scikit-learn"


def arrays() -> dict[str, np.ndarray]:
  """x_train/x_test (uint8 NHWC, 32x32x3) and y_train/y_test (int64), as described above."""
  try:
    # scikit-learn (heavy, optional: scipy) only where the digits are read
    from sklearn import datasets, model_selection  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError(MISSING) from None
  d = datasets.load_digits()
  images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)           # [N, 8, 8]
  images = images.repeat(SCALE, axis=1).repeat(SCALE, axis=2)             # [N, 32, 32]
  images = np.repeat(images[..., None], 3, axis=-1)                       # [N, 32, 32, 3]
  labels = d.target.astype(np.int64)
  x_train, x_test, y_train, y_test = model_selection.train_test_split(
      images, labels, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=labels)
  return dict(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
