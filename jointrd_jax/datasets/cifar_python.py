"""CIFAR-10/100 from the "python version" archives PyTorch users already have on disk
(torchvision's `CIFAR100(root, download=True)` leaves `root/cifar-100-python/`):
`cifar100_python:DIR` and `cifar10_python:DIR`.

DIR is the extracted folder (`cifar-100-python/`: `train`, `test`, `meta`; `cifar-10-
batches-py/`: `data_batch_1..5`, `test_batch`, `batches.meta`) or the folder holding it.
The `.tar.gz` itself is not read: extract it with `tar xzf cifar-100-python.tar.gz`.
Each file is a pickle (protocol 2, bytes keys) of a dict with b'data' (uint8 [N, 3072], each
row an image's R, G and B planes of 32x32 in row-major order), b'fine_labels' (CIFAR-100)
or b'labels' (CIFAR-10) and, in the meta file, b'fine_label_names' / b'label_names'. The
pickles are read as data only: a restricted unpickler admits the numpy array and nothing
else (no code runs).

The result equals TFDS's `cifar100` / `cifar10` image for image. TFDS reads the binary
version of the same archive (`cifar-100-binary`: `train.bin`, `test.bin`), whose images are
those of the python version in the same file order, and its writer stores example i of
split S (keyed by its index in file order) sorted by md5(S + str(i))
(`tensorflow_datasets/core/shuffle.py`, salt = split name); that is the order TFDS reads
back (`shuffle_files=False`) and the order `tfds_order` gives here, without TFDS.
"""
from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np

from jointrd_jax.errors import UserError

# name -> (pretty, folder in the archive, train files, test file, meta file, label key,
#          names key, TFDS's name of the same data)
_KINDS = {
    "cifar100_python": ("CIFAR-100 (python version)", "cifar-100-python", ("train",), "test",
                        "meta", b"fine_labels", b"fine_label_names", "cifar100"),
    "cifar10_python": ("CIFAR-10 (python version)", "cifar-10-batches-py",
                       tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                       "batches.meta", b"labels", b"label_names", "cifar10"),
}
PREFIXES = tuple(f"{k}:" for k in _KINDS)
# The only globals a CIFAR pickle refers to: numpy's array reconstruction (numpy 1 and 2
# module names) and, in protocol 2 written by Python 3, bytes as `_codecs.encode`.
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


def parse(dataset: str):
  """`(kind, DIR)` of 'cifar100_python:DIR' / 'cifar10_python:DIR', else None."""
  name = str(dataset).strip()
  kind, sep, path = name.partition(":")
  if not sep or kind.lower() not in _KINDS:
    return None
  return kind.lower(), path


def tfds_name(dataset: str):
  """TFDS's name of the same data ('cifar100', 'cifar10') for a python-version dataset,
  else None."""
  parsed = parse(dataset)
  return _KINDS[parsed[0]][7] if parsed else None


class _DataOnly(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) not in _ALLOWED:
      raise pickle.UnpicklingError(f"refused global {module}.{name}")
    if module == "numpy.core.multiarray":  # numpy 2 moved it; same function
      module = "numpy._core.multiarray" if hasattr(np, "_core") else module
    return super().find_class(module, name)


def _folder(kind: str, path: str) -> str:
  """The folder that holds the archive's files: DIR/<archive folder> or DIR itself."""
  pretty, sub, train, test, meta = _KINDS[kind][:5]
  where = f"{kind}:{path}"
  how = (f"pass the extracted {sub}/ folder or the folder holding it (extract "
         f"{sub.replace('-batches-py', '-python')}.tar.gz with tar xzf)")
  if not path or not os.path.exists(path):
    raise UserError(f"{where}: no such directory; {how}.")
  if os.path.isfile(path):
    raise UserError(f"{where}: is a file, not a directory; {how}.")
  for folder in (os.path.join(path, sub), path):
    if os.path.isdir(folder) and any(os.path.isfile(os.path.join(folder, f))
                                     for f in train + (test, meta)):
      missing = [f for f in train + (test, meta) if not os.path.isfile(os.path.join(folder, f))]
      if missing:
        raise UserError(f"{where}: {folder} lacks {', '.join(missing)} of the {pretty} "
                        f"archive; extract the whole archive again.")
      return folder
  raise UserError(f"{where}: holds neither {sub}/ nor its files ({', '.join(train)}, {test}, "
                  f"{meta}); {how}.")


def check(dataset: str) -> None:
  """Refuses a python-version dataset whose files are not there (reads nothing)."""
  parsed = parse(dataset)
  if parsed:
    _folder(*parsed)


def _unpickle(path: str, where: str) -> dict:
  try:
    with open(path, "rb") as f:
      obj = _DataOnly(f, encoding="bytes").load()
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{where}: {path} is not a CIFAR python-version pickle ({type(e).__name__}: "
                    f"{e}); extract the archive again.") from None
  if not isinstance(obj, dict):
    raise UserError(f"{where}: {path} holds a {type(obj).__name__}, not the archive's dict; "
                    "extract the archive again.")
  return obj


def _batch(path: str, label_key: bytes, num_classes: int, where: str):
  d = _unpickle(path, where)
  if b"data" not in d or label_key not in d:
    raise UserError(f"{where}: {path} has no b'data' / {label_key!r} entry; extract the "
                    "archive again.")
  x, y = np.asarray(d[b"data"]), np.asarray(d[label_key])
  if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
    raise UserError(f"{where}: {path}: b'data' is {x.dtype} {x.shape} with {y.shape} labels, "
                    "not uint8 [N, 3072] with N labels; extract the archive again.")
  if len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise UserError(f"{where}: {path} has labels outside 0..{num_classes - 1}; extract the "
                    "archive again.")
  return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y.astype(np.int32)


def tfds_order(split: str, n: int) -> np.ndarray:
  """The file-order indices of split `split`'s `n` examples in TFDS's stored order."""
  salt = hashlib.md5(split.encode())

  def key(i):
    h = salt.copy()
    h.update(str(i).encode())
    return int(h.hexdigest(), 16)

  return np.asarray(sorted(range(n), key=key), np.int64)


def class_names(dataset: str) -> tuple:
  """The class names of the archive's meta file, in label order."""
  kind, path = parse(dataset)
  folder = _folder(kind, path)
  meta = _unpickle(os.path.join(folder, _KINDS[kind][4]), f"{kind}:{path}")
  names = meta.get(_KINDS[kind][6])
  if not isinstance(names, list) or not names:
    raise UserError(f"{kind}:{path}: its meta file has no {_KINDS[kind][6]!r} list; extract "
                    "the archive again.")
  return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def load(dataset: str):
  """`(x_train, y_train, x_test, y_test, names)` of a python-version archive, uint8 NHWC
  images and int32 labels in TFDS's order (see the module doc)."""
  kind, path = parse(dataset)
  folder = _folder(kind, path)
  _, _, train, test, _, label_key, _, _ = _KINDS[kind]
  names = class_names(dataset)
  where = f"{kind}:{path}"
  out = []
  for split, files in (("train", train), ("test", (test,))):
    parts = [_batch(os.path.join(folder, f), label_key, len(names), where) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if not len(y):
      raise UserError(f"{where}: the {split} split is empty; extract the archive again.")
    order = tfds_order(split, len(y))
    out += [np.ascontiguousarray(x[order]), y[order]]
  return (*out, names)
