"""CIFAR from the python-version archives (`cifar100_python:DIR`, `cifar10_python:DIR`):
the format, TFDS's order and labels, the class names, and bad folders.

The archives are small ones written in the official formats (tests/cifar_archives.py); the
TFDS comparison builds TFDS's own cifar100 from the same images in the binary format (its
download replaced by the folder), so the order is TFDS's writer's, not a re-implementation.
"""
import os
import pickle

import numpy as np
import pytest

from jointrd_jax.datasets import cifar_python, class_names, sources
from jointrd_jax.deploy import checks
from jointrd_jax.errors import UserError
import cifar_archives

NAMES100 = class_names.CIFAR100
NAMES10 = tuple(f"thing{i}" for i in range(10))  # not CIFAR-10's: read from the meta file


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
  """A small cifar-100-python archive and the same images as cifar-100-binary."""
  root = tmp_path_factory.mktemp("cifar100")
  rng = np.random.default_rng(7)
  train, test = cifar_archives.images(rng, 70, 100), cifar_archives.images(rng, 40, 100)
  cifar_archives.write_python(str(root), "cifar100", train, test, NAMES100)
  cifar_archives.write_binary_cifar100(str(root / "binary"), train, test, NAMES100)
  return root, train, test


def test_reads_the_archive_in_tfds_order(archive):
  root, (x_train, y_train), (x_test, y_test) = archive
  a = sources.get(f"cifar100_python:{root}").load_arrays()
  assert a.num_classes == 100 and a.x_train.dtype == np.uint8
  np.testing.assert_allclose(a.mean, (0.5071, 0.4865, 0.4409))  # TFDS cifar100's constants
  for x, y, got_x, got_y, split in ((x_train, y_train, a.x_train, a.y_train, "train"),
                                    (x_test, y_test, a.x_test, a.y_test, "test")):
    order = cifar_python.tfds_order(split, len(y))
    assert sorted(order) == list(range(len(y))) and list(order) != list(range(len(y)))
    np.testing.assert_array_equal(got_x, x[order])
    np.testing.assert_array_equal(got_y, y[order])
  # DIR may also be the extracted folder itself
  b = sources.get(f"cifar100_python:{root / 'cifar-100-python'}").load_arrays()
  np.testing.assert_array_equal(b.x_test, a.x_test)


def test_equals_tfds_cifar100_built_from_the_binary_archive(archive, tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  root = archive[0]
  tfds.disable_progress_bar()
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      lambda self, url: str(root / "binary"))  # no download: our files
  tfds.builder("cifar100", data_dir=str(tmp_path)).download_and_prepare()
  want = sources.get("cifar100").load_arrays(data_dir=str(tmp_path), download=False)
  got = sources.get(f"cifar100_python:{root}").load_arrays()
  for key in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
  np.testing.assert_array_equal(got.mean, want.mean)
  np.testing.assert_array_equal(got.std, want.std)


def test_cifar10_batches_and_names_from_the_meta_file(tmp_path):
  rng = np.random.default_rng(3)
  (x, y), test = cifar_archives.images(rng, 23, 10), cifar_archives.images(rng, 9, 10)
  cifar_archives.write_python(str(tmp_path), "cifar10", (x, y), test, NAMES10)
  name = f"cifar10_python:{tmp_path}"
  a = sources.get(name).load_arrays()
  order = cifar_python.tfds_order("train", 23)  # over the five batches in file order
  np.testing.assert_array_equal(a.x_train, x[order])
  np.testing.assert_array_equal(a.y_train, y[order])
  np.testing.assert_allclose(a.std, (0.2470, 0.2435, 0.2616))
  assert sources.get(name).class_names(10) == (NAMES10, f"meta file of {name}")
  missing = sources.get(f"cifar100_python:{tmp_path}/gone").class_names(100)  # e.g. at export
  assert missing[0] == NAMES100 and "cannot be read" in missing[1]
  assert checks.normalization("run", {}, name)[0].tolist() == pytest.approx(
      [0.4914, 0.4822, 0.4465])
  assert sources.get(name).source.hub == "uoft-cs/cifar10"  # the model card's dataset id


def test_tfds_order_is_tfds_writers_md5_order():
  # Independently: TFDS's shuffler sorts by md5(salt=split name, key=str(index)).
  import hashlib  # pylint: disable=g-import-not-at-top
  want = sorted(range(50), key=lambda i: hashlib.md5(b"test" + str(i).encode()).hexdigest())
  assert cifar_python.tfds_order("test", 50).tolist() == want


@pytest.mark.parametrize("case, expect", [
    ("missing_dir", "no such directory"),
    ("empty_dir", "holds neither cifar-100-python/ nor its files (train, test, meta)"),
    ("no_meta", "lacks meta of the CIFAR-100 (python version) archive"),
    ("a_file", "is a file, not a directory"),
    ("code", "is not a CIFAR python-version pickle (UnpicklingError: refused global "),
    ("not_a_pickle", "is not a CIFAR python-version pickle"),
    ("bad_shape", "not uint8 [N, 3072]"),
])
def test_bad_folders_are_one_line_naming_what_is_missing(tmp_path, case, expect):
  rng = np.random.default_rng(0)
  root = tmp_path / "data"
  if case != "missing_dir":
    root.mkdir()
  if case in ("no_meta", "code", "not_a_pickle", "bad_shape"):
    cifar_archives.write_python(str(root), "cifar100", cifar_archives.images(rng, 4, 100),
                                cifar_archives.images(rng, 4, 100), NAMES100)
    folder = root / "cifar-100-python"
    if case == "no_meta":
      os.remove(folder / "meta")
    elif case == "code":
      with open(folder / "train", "wb") as f:
        pickle.dump(os.system, f, protocol=2)  # a pickle that would call a function
    elif case == "not_a_pickle":
      (folder / "train").write_text("hello")
    else:
      with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"fine_labels": [0, 1]}, f)
  if case == "a_file":
    root = tmp_path / "cifar-100-python.tar.gz"
    root.write_bytes(b"")
  with pytest.raises(UserError) as e:
    sources.get(f"cifar100_python:{root}").load_arrays()
  assert expect in str(e.value) and "\n" not in str(e.value)
