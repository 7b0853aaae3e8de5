"""The int8 export's calibration images: uint8 [N, H, W, C] as evaluation preprocesses them.

- By default the run's TRAINING images (its config.json dataset keys, `download=False`):
  - in-memory data (CIFAR, npz, synthetic): a seeded random sample (`SEED`) of N training
    images, as they are (evaluation takes the arrays unchanged); a sample rather than the
    first N, because a user's npz may be sorted by class;
  - streamed (ImageNet-style) data: the first N images of epoch 0's seeded order (`SEED`)
    of the train split, resized + centre-cropped as evaluation does (not augmented).
- `calibration_dir=DIR`: for runs whose data is not on this machine, the first N image
  files under DIR (recursively, sorted by path), read and resized like
  `experiments.predict` reads an image (`predict.load_image` with the export's
  preprocessing).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.deploy import checks, predict
from jointrd_jax.deploy.quantize import MIN_CALIBRATION_IMAGES
from jointrd_jax.errors import UserError

SEED = 0
DEFAULT_NUM_IMAGES = 512
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DIR_HINT = (" Pass image files of the training distribution with --calibration_dir=DIR "
            f"(at least {MIN_CALIBRATION_IMAGES}).")


@dataclasses.dataclass(eq=False)
class Calibration:
  images: np.ndarray  # uint8 [N, H, W, C]
  source: str  # export.json int8.calibration.source


def check_count(num_images: int) -> None:
  if int(num_images) < MIN_CALIBRATION_IMAGES:
    raise UserError(f"--calibration_images={num_images} is too few: int8 calibration needs at "
                    f"least {MIN_CALIBRATION_IMAGES} images (default "
                    f"{DEFAULT_NUM_IMAGES}).")


def _enough(images: np.ndarray, where: str) -> np.ndarray:
  if len(images) < MIN_CALIBRATION_IMAGES:
    raise UserError(f"{where} holds only {len(images)} calibration images; int8 calibration "
                    f"needs at least {MIN_CALIBRATION_IMAGES}.")
  return images


def image_files(directory: str) -> list:
  """Image files under `directory` (by extension, recursively), sorted by path."""
  found = []
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    found += [os.path.join(root, f) for f in sorted(files)
              if f.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(found)


def _from_dir(directory: str, num_images: int, image_shape, preprocessing: dict):
  if not os.path.isdir(directory):
    raise UserError(f"--calibration_dir={directory} is not a directory; pass a folder of image "
                    "files (JPEG, PNG, ...) like the training images.")
  files = image_files(directory)[:int(num_images)]
  where = f"--calibration_dir={directory}"
  if len(files) < MIN_CALIBRATION_IMAGES:
    raise UserError(f"{where} holds {len(files)} image files ({', '.join(IMAGE_EXTENSIONS)}); "
                    f"int8 calibration needs at least {MIN_CALIBRATION_IMAGES}.")
  images = np.stack([predict.load_image(f, image_shape, preprocessing) for f in files])
  how = (f"resized to {preprocessing['resize']} and centre-cropped" if
         preprocessing.get("method") == "center_crop" else "resized")
  return Calibration(images, f"the first {len(files)} image files under {directory} (sorted "
                             f"by path), {how} as experiments.predict does")


def _streamed(run_dir: str, cfg: dict, dataset: str, num_images: int, image_shape):
  try:
    data = checks.open_streamed(cfg, dataset, image_shape)
    n = min(int(num_images), data.num_train)
    batch = next(iter(data.host_train_batches(seed=SEED, epoch=0, batch_size=n,
                                              process_index=0, process_count=1,
                                              preprocess="eval")))
  except UserError as e:
    raise UserError(f"the calibration images of {run_dir} (dataset {dataset!r} from its "
                    f"config.json, train split) cannot be loaded: {e}{DIR_HINT}") from None
  images = _enough(np.asarray(batch["image"], np.uint8), f"the train split of {data.name}")
  return Calibration(images, f"the first {len(images)} images of the seeded order (seed "
                             f"{SEED}, epoch 0) of the train split of {data.name}, resized to "
                             f"{data.options.eval_resize} and centre-cropped as in evaluation")


def calibration_images(run_dir: str, num_images: int, image_shape,
                       calibration_dir: str | None = None) -> Calibration:
  """The calibration images of run `run_dir` (see the module doc)."""
  check_count(num_images)
  cfg = workdir_lib.read_config(run_dir)
  image_shape = tuple(int(d) for d in image_shape)
  if calibration_dir:
    return _from_dir(calibration_dir, num_images, image_shape,
                     checks.preprocessing(cfg, image_shape))
  dataset = str(cfg.get("dataset", "")).strip()
  if checks.is_streamed(cfg):
    return _streamed(run_dir, cfg, dataset, num_images, image_shape)
  a = checks.load_arrays(run_dir, cfg, dataset, "calibration images", hint=DIR_HINT)
  if tuple(a.x_train.shape[1:]) != image_shape:
    raise UserError(f"the training images of {a.name!r} are {tuple(a.x_train.shape[1:])} but "
                    f"the network in {run_dir} was trained on {image_shape}.")
  n = min(int(num_images), len(a.x_train))
  index = np.sort(np.random.default_rng(SEED).choice(len(a.x_train), n, replace=False))
  images = _enough(a.x_train[index], f"the train split of {a.name}")
  return Calibration(images, f"{n} training images of {a.name} (a random sample, seed "
                             f"{SEED}), as evaluation takes them (the arrays unchanged)")
