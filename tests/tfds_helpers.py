"""A tiny imagenet2012 PREPARED with TFDS's own builder from fake manual-download tars (3
synsets of real JPEGs), in about a second: shared by tests/test_streamed_tfds.py and
tests/test_imagenet.py (`prepare`)."""
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

SYNSETS = ("n01440764", "n01443537", "n01484850")  # ImageNet classes 0, 1, 2
N_TRAIN, N_VAL, SIZE = 3 * 20, 11, 32


def _jpeg(rng, h, w):
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def prepare(root) -> str:
  """data_dir of a prepared 3-class imagenet2012 (4 train shards) under `root` (a pathlib
  directory). Skips the calling test without TFDS."""
  # TFDS: a heavy optional dependency, imported where it is needed.
  tfds = pytest.importorskip("tensorflow_datasets")
  manual = root / "manual"
  manual.mkdir()
  rng = np.random.default_rng(0)
  with tarfile.open(manual / "ILSVRC2012_img_train.tar", "w") as train:
    for synset in SYNSETS:
      sub = io.BytesIO()
      with tarfile.open(fileobj=sub, mode="w") as t:
        for i in range(N_TRAIN // 3):
          _add(t, f"{synset}_{i}.JPEG", _jpeg(rng, 30 + i, 40))
      _add(train, f"{synset}.tar", sub.getvalue())
  with tarfile.open(manual / "ILSVRC2012_img_val.tar", "w") as val:
    for i in range(N_VAL):
      _add(val, f"ILSVRC2012_val_{i + 1:08d}.JPEG", _jpeg(rng, 36, 30 + i))
  data_dir = str(root / "data")
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual), num_shards=4,
      compute_stats=tfds.download.ComputeStatsMode.SKIP))
  return data_dir
