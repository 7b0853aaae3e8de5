"""Datasets that fit in memory, as numpy arrays (`Arrays`), and the loaders the in-memory
sources (`sources/`) read them with: CIFAR from TFDS (`load_tfds`), a user `.npz`
(`load_npz`), generated (synthetic) data (`synthetic_arrays`); `channel_stats` gives the
per-channel normalisation statistics of images. `in_memory` puts them on the devices.

TensorFlow / TFDS are imported lazily, only to read CIFAR, so synthetic and npz data work
on machines without TensorFlow.
"""
from __future__ import annotations

import dataclasses
import os
import socket
import zipfile

from absl import logging
from etils import epath
import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.errors import UserError

_NPZ_FORMAT = ("expected an .npz with x_train, x_test: uint8 NHWC [N,H,W,C], C = 1, 3 or 4 "
               "(same H,W,C) and "
               "y_train, y_test: integer [N] labels 0..K-1, each class in y_train")
_SYNTHETIC_SEED = 20240917


@dataclasses.dataclass(eq=False)
class Arrays:
  name: str  # the dataset's name (`sources.Dataset.name`): 'cifar100', 'npz:/path', ...
  num_classes: int
  mean: np.ndarray  # float32 (C,), [0, 1] pixel scale
  std: np.ndarray
  x_train: np.ndarray  # uint8 [N,H,W,C]
  y_train: np.ndarray  # int32 [N]
  x_test: np.ndarray
  y_test: np.ndarray


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per-channel mean and std of uint8 images, in [0, 1] pixel scale (exact)."""
  c = x.shape[-1]
  counts = np.zeros((c, 256), np.int64)  # per-channel histogram
  offsets = (np.arange(c) * 256).astype(np.uint16 if c <= 256 else np.uint32)
  flat = x.reshape(-1, c)
  for i in range(0, len(flat), 1 << 20):
    code = flat[i:i + (1 << 20)].astype(offsets.dtype) + offsets
    counts += np.bincount(code.ravel(), minlength=c * 256).reshape(c, 256)
  values = np.arange(256, dtype=np.float64) / 255
  n = np.maximum(counts.sum(1), 1)
  mean = counts @ values / n
  std = np.sqrt(np.maximum(counts @ values**2 / n - mean**2, 0.0))
  std = np.where(std > 0, std, 1.0)  # a constant channel: avoid dividing by zero
  return mean.astype(np.float32), std.astype(np.float32)


# The seconds a download host is probed for before a download is tried, as TFDS itself
# retries an unreachable host for minutes.
_PROBE_TIMEOUT_S = 5.0


def _reachable(host: str, timeout: float = _PROBE_TIMEOUT_S) -> bool:
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _listing(root: epath.Path) -> set:
  """The paths in `root` and one level below (where TFDS puts a dataset's version folders
  and its downloads)."""
  out = set()
  if root.is_dir():
    for p in root.iterdir():
      out.add(str(p))
      if p.is_dir():
        out.update(str(q) for q in p.iterdir())
  return out


def load_tfds(name: str, pretty: str, data_dir: str, download: bool, host: str = ""):
  """A TFDS image dataset (CIFAR) as numpy (x_train, y_train, x_test, y_test); `host`: where
  TFDS downloads it from, probed first."""
  tfds = tensorflow_support.import_tfds()
  data_dir = data_dir or None
  builder = tfds.builder(name, data_dir=data_dir)
  where = data_dir or builder.data_dir_root
  offline = (f"prepare it on a machine with internet with `tfds build {name} --data_dir=DIR` "
             f"(or python -c 'import tensorflow_datasets as tfds; "
             f"tfds.load(\"{name}\", data_dir=\"DIR\")'), copy DIR here and pass "
             f"--config.data_dir=DIR --config.download=False")
  if not builder.is_prepared():
    if not download:
      raise UserError(f"{pretty} is not prepared in {where} and --config.download=False; "
                      f"{offline}.")
    if host and not _reachable(host):
      raise UserError(f"{pretty} is not prepared in {where} and its download source {host} "
                      f"cannot be reached (no network?); {offline}.")
    logging.warning("Downloading and preparing %s into %s (needs internet).", pretty, where)
    root = epath.Path(where)
    root_existed = root.exists()
    before = _listing(root)
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      # Leave nothing half-downloaded behind: TFDS would warn about it on every later run.
      for p in sorted(_listing(root) - before, key=len, reverse=True):
        p = epath.Path(p)
        if p.is_dir():
          p.rmtree()
        elif p.exists():
          p.unlink()
      if not root_existed and root.is_dir() and not list(root.iterdir()):
        root.rmdir()
      reason = " ".join(str(e).split())
      reason = reason if len(reason) <= 160 else reason[:157].rsplit(" ", 1)[0] + " ..."
      raise UserError(f"downloading {pretty} into {where} failed (no network? "
                      f"{type(e).__name__}: {reason}); nothing was kept; to work offline, "
                      f"{offline}.") from e
  arrays = []
  for split in ("train", "test"):
    # Batches of 10,000 rather than batch_size=-1: the latter needs the split
    # sizes from the metadata, which `tfds.testing.mock_data` does not have.
    ds = tfds.load(name, split=split, data_dir=data_dir, download=False,
                   batch_size=10000, as_supervised=True, shuffle_files=False)
    xs, ys = zip(*tfds.as_numpy(ds))
    arrays += [np.concatenate(xs).astype(np.uint8), np.concatenate(ys).astype(np.int32)]
  return tuple(arrays)


def load_npz(path: str):
  """Validated (x_train, y_train, x_test, y_test) from an .npz file."""
  where = f"npz:{path}"
  arrays = _read_npz(path, where)
  for split in ("train", "test"):
    arrays[f"y_{split}"] = _checked_split(where, split, arrays[f"x_{split}"],
                                          arrays[f"y_{split}"])
  if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
    raise UserError(f"{where}: x_train images are {arrays['x_train'].shape[1:]} but x_test "
                    f"images are {arrays['x_test'].shape[1:]}; {_NPZ_FORMAT}.")
  if not len(arrays["y_train"]) or not len(arrays["y_test"]):
    raise UserError(f"{where}: empty split (x_train {len(arrays['y_train'])}, x_test "
                    f"{len(arrays['y_test'])} images); {_NPZ_FORMAT}.")
  if min(arrays["x_train"].shape[1:]) == 0:
    raise UserError(f"{where}: empty image shape {arrays['x_train'].shape[1:]}; {_NPZ_FORMAT}.")
  return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def _read_npz(path: str, where: str) -> dict:
  """The four arrays of the file, or one line saying why it cannot be read."""
  if not path or not os.path.isfile(path):
    raise UserError(f"{where}: no such file; {_NPZ_FORMAT}.")
  if not zipfile.is_zipfile(path):
    raise UserError(f"{where}: cannot be read: not an .npz (zip) file, e.g. from "
                    f"np.savez; {_NPZ_FORMAT}.")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
      if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(missing)} (has "
                        f"{', '.join(f.files) or 'none'}); {_NPZ_FORMAT}.")
      return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  except UserError:
    raise
  except ValueError as e:
    if "pickle" in str(e).lower():
      raise UserError(f"{where}: contains a pickled object array, which is refused "
                      f"(allow_pickle=False); {_NPZ_FORMAT}.") from e
    raise UserError(f"{where}: cannot be read as .npz ({e}); {_NPZ_FORMAT}.") from e
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{where}: cannot be read as .npz ({type(e).__name__}: {e}); "
                    f"{_NPZ_FORMAT}.") from e


def _checked_split(where: str, split: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Checks one split's images and labels; returns the labels as rank 1 ([N, 1] allowed)."""
  if x.dtype != np.uint8:
    raise UserError(f"{where}: x_{split} has dtype {x.dtype}, not uint8; {_NPZ_FORMAT}.")
  if x.ndim != 4:
    raise UserError(f"{where}: x_{split} has shape {x.shape}, not rank 4 [N,H,W,C]; "
                    f"{_NPZ_FORMAT}.")
  if x.shape[-1] not in (1, 3, 4):
    hint = (" (NCHW? transpose it with x.transpose(0, 2, 3, 1))"
            if x.shape[1] in (1, 3, 4) else "")
    raise UserError(f"{where}: x_{split} has shape {x.shape}, whose last axis "
                    f"({x.shape[-1]}) is not a channel count: images must be NHWC{hint}; "
                    f"{_NPZ_FORMAT}.")
  if not np.issubdtype(y.dtype, np.integer):
    raise UserError(f"{where}: y_{split} has dtype {y.dtype}, not an integer type; "
                    f"{_NPZ_FORMAT}.")
  if y.ndim == 2 and y.shape[1] == 1:  # keras-style [N, 1] labels
    y = y[:, 0]
  if y.ndim != 1:
    raise UserError(f"{where}: y_{split} has shape {y.shape}, not rank 1 [N]; "
                    f"{_NPZ_FORMAT}.")
  if len(y) != len(x):
    raise UserError(f"{where}: y_{split} has {len(y)} labels but x_{split} has "
                    f"{len(x)} images; {_NPZ_FORMAT}.")
  if len(y) and y.min() < 0:
    raise UserError(f"{where}: y_{split} has negative labels (min {y.min()}); "
                    f"{_NPZ_FORMAT}.")
  if len(y) and y.max() >= 2**31 - 1:
    raise UserError(f"{where}: y_{split} has labels too large for int32 "
                    f"(max {y.max()}); {_NPZ_FORMAT}.")
  return y


def synthetic_arrays(train_size: int, test_size: int, num_classes: int, image_size: int):
  """A deterministic, easily learnable dataset: (x_train, y_train, x_test, y_test).

  Each class has a fixed random base colour (0..159 per channel) and a fixed random 4x4
  pattern (0..47 on top of it) upsampled to the image size; every image is its class's
  colour and pattern plus uniform noise 0..42. The colours make the classes separable by
  any network that works at all (a smoke run's ResNet reaches > 90 % test accuracy within
  a few dozen steps, a broken pipeline stays near chance); pattern and noise make the
  images more than flat colours.
  """
  for what, v in (("synthetic_train_size", train_size), ("synthetic_test_size", test_size),
                  ("synthetic_num_classes", num_classes), ("synthetic_image_size", image_size)):
    if int(v) <= 0:
      raise UserError(f"{what}={v} must be positive.")
  s = int(image_size)
  rng = np.random.default_rng(_SYNTHETIC_SEED)
  base = rng.integers(0, 160, (num_classes, 1, 1, 3), dtype=np.uint8)
  low = rng.integers(0, 48, (num_classes, 4, 4, 3), dtype=np.uint8) + base
  y_train = rng.integers(0, num_classes, train_size).astype(np.int32)
  y_test = rng.integers(0, num_classes, test_size).astype(np.int32)
  rows = np.arange(s) * 4 // s  # nearest-neighbour upsampling 4 -> s
  pattern = low[:, rows][:, :, rows].reshape(num_classes, s * s * 3)
  bits = np.random.SFC64(_SYNTHETIC_SEED)
  out = []
  for y in (y_train, y_test):
    n = len(y)
    words = -(-n * s * s * 3 // 8)
    x = bits.random_raw(words).view(np.uint8)[:n * s * s * 3].reshape(n, s * s * 3)
    np.floor_divide(x, 6, out=x)  # noise in 0..42
    for i in range(0, n, 256):  # in cache-sized chunks: 10x faster than all at once
      x[i:i + 256] += pattern[y[i:i + 256]]
    x = x.reshape(n, s, s, 3)
    out += [x, y]
  return tuple(out)
