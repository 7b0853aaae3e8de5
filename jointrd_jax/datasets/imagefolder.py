"""`imagefolder:PATH`: the file lists of an ImageNet-style folder, validated up front.

Layout (torchvision's ImageFolder, the one PyTorch users have)::

    PATH/train/<class>/**/<image>      PATH/val/<class>/**/<image>

- Classes are the sub-folders of train/ (every sub-folder, hidden ones included, as
  torchvision's `find_classes`); class index = position in the sorted folder names, so a
  torchvision teacher's labels line up (for ImageNet: the sorted synsets, as TFDS's
  imagenet2012 labels). train/ and val/ must have the same class folders.
- Examples are listed in torchvision's order (classes sorted, then `os.walk` of each class
  folder sorted, file names sorted, symlinks followed): example i is torchvision's
  `ImageFolder(...).samples[i]`.
- Images are recognised by extension, case-insensitively, exactly as torchvision's
  ImageFolder does (its IMG_EXTENSIONS): .jpg .jpeg .png .ppm .bmp .pgm .tif .tiff
  .webp. Other files, .gif included (torchvision skips it too), are skipped and counted
  in a warning, so example i is the same file as in torchvision. The content decides
  the decoder (`image_ops`: TensorFlow for JPEG, PNG, BMP, WebP; PIL for TIFF, PPM,
  PGM), so a PNG named .JPEG works.
- Refused at load time with one line (`UserError`), before anything is trained: PATH
  missing, no train/ or val/, no class folders, a class folder without images (named),
  train/val class sets that differ (a few named). Corrupt images are found when decoded
  (listing does not open files) and then refused; see `streamed`.

The lists are compact numpy arrays: relative paths as fixed-width bytes ('S') and int32
labels, about 50 MB for ImageNet's 1.28 M training files.
"""
from __future__ import annotations

import dataclasses
import os

from absl import logging
import numpy as np

from jointrd_jax.errors import UserError

# torchvision.datasets.folder.IMG_EXTENSIONS, in its order (not .gif).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val")
LAYOUT = ("expected PATH/train/<class>/<images> and PATH/val/<class>/<images> "
          "(torchvision's ImageFolder layout)")


def _tf():
  """TensorFlow, GPUs hidden (importing image_ops hides them before TF uses a device)."""
  from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
  return image_ops.tf


@dataclasses.dataclass(frozen=True, eq=False)
class FileList:
  """One split: `root`/`paths[i]` is example i, of class `labels[i]`."""
  root: str  # e.g. PATH/train
  paths: np.ndarray = dataclasses.field(repr=False)  # 'S' bytes, relative to root
  labels: np.ndarray = dataclasses.field(repr=False)  # int32

  def __len__(self) -> int:
    return int(len(self.labels))

  def path(self, i: int) -> str:
    return os.path.join(self.root, os.fsdecode(bytes(self.paths[i])))


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolder:
  path: str
  classes: tuple  # sorted class-folder names; label = index
  train: FileList
  val: FileList


def _names(items, limit=3) -> str:
  items = sorted(items)
  more = f" and {len(items) - limit} more" if len(items) > limit else ""
  return ", ".join(items[:limit]) + more


def _classes(where: str, split_dir: str) -> list[str]:
  try:
    with os.scandir(split_dir) as entries:
      return sorted(e.name for e in entries if e.is_dir())
  except OSError as e:
    raise UserError(f"{where}: cannot list {split_dir}: {e.strerror or e}.") from e


def _list_split(where: str, split_dir: str, classes: list[str]) -> tuple[FileList, dict]:
  """The split's FileList, and what was skipped."""
  paths, labels = [], []
  skipped = []
  try:
    with os.scandir(split_dir) as entries:  # loose files next to the class folders
      skipped += [e.name for e in entries if not e.is_dir()]
  except OSError:
    pass
  for label, name in enumerate(classes):
    class_dir = os.path.join(split_dir, name)
    found = 0
    for root, _, files in sorted(os.walk(class_dir, followlinks=True)):
      prefix = os.path.relpath(root, split_dir) + os.sep  # once per folder: fast
      for fname in sorted(files):
        rel = prefix + fname
        if fname.lower().endswith(IMAGE_EXTENSIONS):  # torchvision's test (".jpg" counts)
          paths.append(os.fsencode(rel))
          found += 1
        else:
          skipped.append(rel)
    if not found:
      others = sum(1 for s in skipped if s.startswith(name + os.sep))
      extra = f" (it has {others} other file(s))" if others else ""
      raise UserError(
          f"{where}: class folder {os.path.join(split_dir, name)} has no image files"
          f"{extra}; every class needs at least one image ({' '.join(IMAGE_EXTENSIONS)}).")
    labels.append(np.full(found, label, np.int32))
  file_list = FileList(split_dir, np.array(paths, dtype=np.bytes_),
                       np.concatenate(labels) if labels else np.zeros(0, np.int32))
  return file_list, {"skipped": skipped}


def scan(path: str, *, dataset: str | None = None) -> ImageFolder:
  """Lists and validates PATH/train and PATH/val (see the module docstring)."""
  where = dataset or f"imagefolder:{path}"
  if not path:
    raise UserError(f"{where}: empty path; {LAYOUT}.")
  if not os.path.isdir(path):
    what = "is not a directory" if os.path.exists(path) else "no such directory"
    raise UserError(f"{where}: {what}; {LAYOUT}.")
  missing = [s for s in SPLITS if not os.path.isdir(os.path.join(path, s))]
  if missing:
    try:
      found = sorted(os.listdir(path))
    except OSError:
      found = []
    has = f" (it has: {_names(found, 5)})" if found else " (it is empty)"
    raise UserError(f"{where}: no {' or '.join(m + '/' for m in missing)} folder in {path}"
                    f"{has}; {LAYOUT}.")
  classes = {}
  for split in SPLITS:
    split_dir = os.path.join(path, split)
    classes[split] = _classes(where, split_dir)
    if not classes[split]:
      raise UserError(f"{where}: {split_dir} has no class folders; {LAYOUT}.")
  if classes["train"] != classes["val"]:
    only_train = set(classes["train"]) - set(classes["val"])
    only_val = set(classes["val"]) - set(classes["train"])
    parts = [f"only in {s}/: {_names(v)}" for s, v in (("train", only_train), ("val", only_val))
             if v]
    raise UserError(f"{where}: train/ and val/ have different class folders "
                    f"({'; '.join(parts)}); both need the same classes.")
  lists = {}
  for split in SPLITS:
    lists[split], info = _list_split(where, os.path.join(path, split), classes[split])
    if info["skipped"]:
      logging.warning("%s: skipped %d non-image file(s) in %s/ (by extension), e.g. %s",
                      where, len(info["skipped"]), split, info["skipped"][0])
  logging.info("%s: %d train / %d val images of %d classes", where, len(lists["train"]),
               len(lists["val"]), len(classes["train"]))
  return ImageFolder(path=path, classes=tuple(classes["train"]), train=lists["train"],
                     val=lists["val"])


class FolderSource:
  """What `streamed` reads of a folder: random access by example id.

  Training: the epoch's global permutation (`order`), this process's rows of each
  global batch, from `start_step` on; elements {'source': full path, 'label', 'key':
  example id}. Evaluation: global row r of batch b is example b*B + r, padded with
  mask-0 rows (source b'').
  """

  def __init__(self, folder: ImageFolder, where: str):
    self.folder, self.where = folder, where
    self._root = {"train": os.fsencode(os.path.join(folder.train.root, "")),
                  "eval": os.fsencode(os.path.join(folder.val.root, ""))}

  def contents(self, source):
    tf = _tf()
    return tf.io.read_file(source)

  def steps(self, batch_size: int, process_count: int) -> int:
    del process_count  # one global order
    return len(self.folder.train) // batch_size

  def order(self, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """Example ids of each global batch of the epoch: int64 [N // B, B]."""
    n = len(self.folder.train)
    steps = n // batch_size
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[:steps * batch_size].reshape(steps, batch_size)

  def train_elements(self, *, seed, epoch, batch_size, start_step, rows, process_index,
                     process_count, shuffle_buffer):
    del process_index, process_count, shuffle_buffer
    tf = _tf()
    ids = self.order(seed, epoch, batch_size)[start_step:, rows[0]:rows[1]].ravel()
    paths = np.char.add(self._root["train"], self.folder.train.paths[ids])
    ds = tf.data.Dataset.from_tensor_slices(
        {"source": paths, "label": self.folder.train.labels[ids], "key": ids.astype(np.int64)})
    return ds, lambda a, b: [os.fsdecode(bytes(p)) for p in paths[a:b]]

  def eval_elements(self, *, batch_size, rows, process_index, process_count):
    del process_index, process_count
    tf = _tf()
    n = len(self.folder.val)
    batches = max(1, -(-n // batch_size))
    ids = (np.arange(batches)[:, None] * batch_size + np.arange(*rows)[None, :]).ravel()
    real = ids < n
    safe = np.where(real, ids, 0)
    paths = np.where(real, np.char.add(self._root["eval"], self.folder.val.paths[safe]), b"")
    labels = np.where(real, self.folder.val.labels[safe], 0).astype(np.int32)
    ds = tf.data.Dataset.from_tensor_slices(
        {"source": paths, "label": labels, "mask": real.astype(np.float32)})
    return ds, lambda a, b: [os.fsdecode(bytes(p)) for p in paths[a:b] if p]

  def decode_error(self, split: str, paths: list, error) -> UserError:
    """Names the first file of the failing batch that cannot be read or decoded."""
    from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
    tf = _tf()
    for path in paths:
      try:
        image_ops.eval_image(tf.io.read_file(path), 8, 8)
      except (tf.errors.OpError, ValueError) as e:  # ValueError: PIL's formats, run eagerly
        return UserError(
            f"{self.where}: cannot read or decode {path}: {image_ops.tf_message(e)}. Corrupt "
            "or unreadable images are refused, not skipped (skipping would change every later "
            "batch); replace it with a readable image (removing it renumbers the examples).")
    return UserError(f"{self.where}: reading a {split} batch failed: "
                     f"{image_ops.tf_message(error)}.")
