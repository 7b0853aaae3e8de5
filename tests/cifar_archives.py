"""Small CIFAR archives written in the official formats, for the tests: the python version
(pickles, protocol 2, bytes keys: what torchvision downloads) and the binary version (what
TFDS's cifar builders read)."""
import os
import pickle

import numpy as np


def images(rng, n: int, num_classes: int):
  """`n` random uint8 NHWC 32x32x3 images with labels, each class's images tinted so that a
  network can learn them."""
  y = rng.integers(0, num_classes, n).astype(np.int64)
  tint = rng.integers(0, 160, (num_classes, 1, 1, 3))
  x = (rng.integers(0, 96, (n, 32, 32, 3)) + tint[y]).astype(np.uint8)
  return x, y


def _rows(x):
  """NHWC images as the archives' rows: R, G, B planes, each 32x32 row-major."""
  return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), 3072))


def _dump(path, obj):
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=2)


def write_python(root, kind: str, train, test, names) -> str:
  """`root/cifar-100-python/` (kind 'cifar100') or `root/cifar-10-batches-py/` ('cifar10')
  holding `train` and `test` ((x, y) each); CIFAR-10's training images split over five
  batches as in the official archive. Returns the folder."""
  enc = [n.encode() for n in names]
  if kind == "cifar100":
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder)
    for split, (x, y) in (("train", train), ("test", test)):
      _dump(os.path.join(folder, split), {
          b"filenames": [f"{i}.png".encode() for i in range(len(y))],
          b"batch_label": f"{split} batch 1 of 1".encode(),
          b"fine_labels": [int(v) for v in y],
          b"coarse_labels": [int(v) // 5 for v in y], b"data": _rows(x)})
    _dump(os.path.join(folder, "meta"), {b"fine_label_names": enc,
                                         b"coarse_label_names": [b"c%d" % i for i in range(20)]})
    return folder
  folder = os.path.join(root, "cifar-10-batches-py")
  os.makedirs(folder)
  x, y = train
  for i, part in enumerate(np.array_split(np.arange(len(y)), 5), 1):
    _dump(os.path.join(folder, f"data_batch_{i}"), {
        b"batch_label": f"training batch {i} of 5".encode(), b"labels": [int(v) for v in y[part]],
        b"data": _rows(x[part]), b"filenames": [b"x.png"] * len(part)})
  _dump(os.path.join(folder, "test_batch"), {
      b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in test[1]],
      b"data": _rows(test[0]), b"filenames": [b"x.png"] * len(test[1])})
  _dump(os.path.join(folder, "batches.meta"), {b"num_cases_per_batch": 10000,
                                               b"label_names": enc, b"num_vis": 3072})
  return folder


def write_binary_cifar100(root, train, test, names) -> str:
  """`root/cifar-100-binary/` as in cifar-100-binary.tar.gz: train.bin and test.bin of
  records <coarse label byte><fine label byte><3072 image bytes>, and the label-name files.
  Returns `root` (TFDS's download_and_extract result)."""
  folder = os.path.join(root, "cifar-100-binary")
  os.makedirs(folder)
  for split, (x, y) in (("train", train), ("test", test)):
    labels = np.stack([y // 5, y], axis=1).astype(np.uint8)
    records = np.concatenate([labels, _rows(x)], axis=1)
    records.tofile(os.path.join(folder, f"{split}.bin"))
  with open(os.path.join(folder, "fine_label_names.txt"), "w") as f:
    f.write("\n".join(names) + "\n")
  with open(os.path.join(folder, "coarse_label_names.txt"), "w") as f:
    f.write("\n".join(f"c{i}" for i in range(20)) + "\n")
  return root
