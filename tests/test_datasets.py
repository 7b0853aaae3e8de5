"""The input pipeline: loading, augmentation, order, sharding invariance, errors.

Never downloads: TFDS is only used under `tfds.testing.mock_data` or with
download=False. tests/conftest.py provides 8 fake CPU devices.
"""
import logging
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jointrd_jax import datasets as ip
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import make_mesh

N_TRAIN = 1000
N_EVAL = 10_007
CIFAR = {"cifar100": (100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
         "cifar10": (10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))}


def _cpu(n):
  devices = jax.devices("cpu")
  if len(devices) < n:
    pytest.skip(f"needs {n} CPU devices (tests/conftest.py sets XLA_FLAGS before jax starts)")
  return make_mesh(devices[:n])


@pytest.fixture(scope="module")
def mesh1():
  return _cpu(1)


@pytest.fixture(scope="module")
def mesh8():
  return _cpu(8)


def _images(rng, n, h=32, w=32, c=3):
  """Random uint8 images with no zero pixel, so zero padding is unambiguous."""
  return rng.integers(1, 256, (n, h, w, c), dtype=np.uint8)


@pytest.fixture(scope="module")
def npz_arrays():
  """Train labels equal the example index, eval labels the index mod N_TRAIN (every test
  label is a training class, as the loader requires)."""
  rng = np.random.default_rng(123)
  return dict(x_train=_images(rng, N_TRAIN), y_train=np.arange(N_TRAIN, dtype=np.int64),
              x_test=_images(rng, N_EVAL), y_test=np.arange(N_EVAL, dtype=np.int64) % N_TRAIN)


@pytest.fixture(scope="module")
def npz_path(tmp_path_factory, npz_arrays):
  path = tmp_path_factory.mktemp("npz") / "data.npz"
  np.savez(path, **npz_arrays)
  return str(path)


@pytest.fixture(scope="module")
def data1(npz_path, mesh1):
  return ip.load(f"npz:{npz_path}", mesh=mesh1)


@pytest.fixture(scope="module")
def data8(npz_path, mesh8):
  return ip.load(f"npz:{npz_path}", mesh=mesh8)


def _to_u8(images, data):
  """Undo the normalisation: back to the exact uint8 pixels."""
  x = np.asarray(images, np.float32) * data.std + data.mean
  u = np.round(x * 255)
  assert np.abs(x * 255 - u).max() < 0.01  # really an integer pixel value
  return u.astype(np.uint8)


def _windows(image, pad):
  """Every (dy, dx, flip) -> the window of the zero-padded image, [K, H, W, C]."""
  h, w, _ = image.shape
  p = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
  keys, wins = [], []
  for dy in range(2 * pad + 1):
    for dx in range(2 * pad + 1):
      win = p[dy:dy + h, dx:dx + w]
      for flip in (False, True):
        keys.append((dy, dx, flip))
        wins.append(win[:, ::-1] if flip else win)
  return keys, np.stack(wins)


def _match(out_u8, source_u8, pad):
  """The (dy, dx, flip) whose window of `source` equals `out` exactly (asserts one)."""
  keys, wins = _windows(source_u8, pad)
  hits = [k for k, hit in zip(keys, (wins == out_u8).all(axis=(1, 2, 3))) if hit]
  assert hits, "output is not a (flipped) window of the zero-padded source image"
  return hits[0]


def _batches(it):
  return [jax.tree.map(np.asarray, b) for b in it]


# ------------------------------------------------------------------------- TFDS


@pytest.mark.parametrize("name", ["cifar100", "cifar10"])
def test_tfds_under_mock_data(name, mesh1, tmp_path, mock_tfds):
  # mock_data makes download_and_prepare a no-op and generates random examples.
  with mock_tfds(num_examples=24):
    data = ip.load(name, mesh=mesh1, data_dir=str(tmp_path), download=True)
  num_classes, mean, std = CIFAR[name]
  assert data.name == name and data.num_classes == num_classes
  assert data.image_shape == (32, 32, 3) and data.pad == 4 and data.eval_split == "test"
  np.testing.assert_allclose(data.mean, mean)
  np.testing.assert_allclose(data.std, std)
  assert data.train_images.shape == (24, 32, 32, 3) and data.train_images.dtype == np.uint8
  assert data.train_labels.shape == (24,) and data.train_labels.dtype == np.int32
  assert data.eval_images.shape == (24, 32, 32, 3) and data.eval_images.dtype == np.uint8
  assert data.eval_labels.dtype == np.int32 and data.num_eval == 24
  for labels in (np.asarray(data.train_labels), data.eval_labels):
    assert labels.min() >= 0 and labels.max() < num_classes
  assert data.train_images.sharding.is_fully_replicated


def test_tfds_not_prepared_without_download(mesh1, tmp_path, monkeypatch):
  """Refused at once: no download tried, not even the network probe."""
  tfds = pytest.importorskip("tensorflow_datasets")

  def never(*args, **kwargs):
    raise AssertionError("a download or the network probe was attempted")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
  monkeypatch.setattr(ip.arrays, "_reachable", never)
  with pytest.raises(UserError) as e:
    ip.load("cifar100", mesh=mesh1, data_dir=str(tmp_path), download=False)
  msg = str(e.value)
  assert "\n" not in msg
  assert "tfds build cifar100" in msg and str(tmp_path) in msg and "--config.data_dir" in msg


def test_tfds_failed_download_is_one_line(mesh1, tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")

  def no_network(self, *args, **kwargs):
    raise ConnectionError("Name or service not known\nsecond line")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", no_network)
  with pytest.raises(UserError) as e:
    ip.load("cifar10", mesh=mesh1, data_dir=str(tmp_path), download=True)
  msg = str(e.value)
  assert "\n" not in msg and "failed" in msg and "no network" in msg
  assert "tfds build cifar10" in msg and "--config.data_dir" in msg


def test_failed_download_leaves_nothing_behind(mesh1, tmp_path, monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(ip.arrays, "_reachable", lambda host, timeout=None: True)
  (tmp_path / "kept.txt").write_text("the user's own file")

  def partial_download(self, *args, **kwargs):
    (tmp_path / "downloads" / "x.tmp").mkdir(parents=True)
    (tmp_path / "cifar10" / "3.0.2.incomplete").mkdir(parents=True)
    (tmp_path / "cifar10" / "3.0.2.incomplete" / "part").write_bytes(b"\0" * 10)
    raise ConnectionError("connection reset")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", partial_download)
  with pytest.raises(UserError, match="nothing was kept"):
    ip.load("cifar10", mesh=mesh1, data_dir=str(tmp_path), download=True)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


def test_unreachable_download_source_fails_in_seconds(mesh1, tmp_path, monkeypatch):
  """The real probe: where the host answers (a machine with internet), skip: the download
  would start. Offline, one line after one probe of the host, bounded by the probe's
  timeout (seconds, where TFDS retries for minutes), no download tried, nothing written."""
  tfds = pytest.importorskip("tensorflow_datasets")
  if ip.arrays._reachable("www.cs.toronto.edu", 3):  # pylint: disable=protected-access
    pytest.skip("this machine reaches the CIFAR download host")

  def never(self, *args, **kwargs):
    raise AssertionError("a download was attempted")

  probes = []
  reachable = ip.arrays._reachable  # pylint: disable=protected-access
  monkeypatch.setattr(ip.arrays, "_reachable",
                      lambda host, **kw: probes.append((host, kw)) or reachable(host, **kw))
  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
  with pytest.raises(UserError) as e:
    ip.load("cifar100", mesh=mesh1, data_dir=str(tmp_path / "tfds"), download=True)
  assert probes == [("www.cs.toronto.edu", {})]  # one probe, the module's timeout
  assert ip.arrays._PROBE_TIMEOUT_S <= 5  # pylint: disable=protected-access
  msg = str(e.value)
  assert "\n" not in msg and "cannot be reached" in msg and "tfds build cifar100" in msg
  assert not (tmp_path / "tfds").exists() or not list((tmp_path / "tfds").rglob("*"))


def test_module_does_not_import_tensorflow():
  code = ("import sys, jointrd_jax.datasets; "
          "assert 'tensorflow' not in sys.modules and 'tensorflow_datasets' not in sys.modules")
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120,
                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ----------------------------------------------------------------- augmentation


@pytest.mark.parametrize("size,pad", [(32, 4), (16, 2)])
def test_augment_is_a_flipped_window_of_the_zero_padded_image(size, pad):
  rng = np.random.default_rng(size)
  x = _images(rng, 128, size, size)
  mean = np.asarray([0.3, 0.5, 0.7], np.float32)
  std = np.asarray([0.2, 0.25, 0.3], np.float32)
  out = jax.jit(lambda x, k: ip.augment(x, k, mean=mean, std=std, pad=pad))(
      x, jax.random.key(7))
  assert out.shape == x.shape and out.dtype == jnp.float32
  out = np.asarray(out)
  # Zero padding happens on the uint8 pixels: a padded pixel is (0 - mean) / std.
  u8 = np.round((out * std + mean) * 255).astype(np.uint8)
  found = [_match(u8[i], x[i], pad) for i in range(len(x))]
  # The float values are exactly the normalisation of those pixels.
  np.testing.assert_allclose(out, (u8 / 255.0 - mean) / std, rtol=1e-5, atol=1e-6)
  flips = {f for _, _, f in found}
  offsets = {(dy, dx) for dy, dx, _ in found}
  assert flips == {False, True}
  assert len(offsets) >= 20
  assert {dy for dy, _ in offsets} == set(range(2 * pad + 1))  # 0 .. 2*pad all occur
  assert {dx for _, dx in offsets} == set(range(2 * pad + 1))
  # Some crops include padding (zeros), and the identity crop is possible.
  assert (u8 == 0).any()


def test_normalize():
  x = np.arange(256, dtype=np.uint8).reshape(1, 4, 64, 1).repeat(3, -1)
  mean, std = np.asarray([0.1, 0.2, 0.3], np.float32), np.asarray([0.5, 0.6, 0.7], np.float32)
  np.testing.assert_allclose(ip.normalize(x, mean, std), (x / 255.0 - mean) / std,
                             rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------- training


def test_train_batches_follow_the_documented_order(data1):
  seed, epoch, b = 3, 2, 96
  batches = _batches(ip.train_batches(data1, seed=seed, epoch=epoch, batch_size=b))
  assert len(batches) == ip.steps_per_epoch(N_TRAIN, b) == N_TRAIN // b == 10
  epoch_key = jax.random.fold_in(jax.random.key(seed), epoch)
  perm = np.asarray(jax.jit(jax.random.permutation, static_argnums=1)(epoch_key, N_TRAIN))
  augment = jax.jit(ip.augment, static_argnames="pad")  # one compilation, not one per op
  x_train = np.asarray(data1.train_images)
  for step in (0, 7):
    batch = batches[step]
    idx = perm[step * b:(step + 1) * b]
    np.testing.assert_array_equal(batch["label"], idx)  # label == example index
    key = jax.random.fold_in(jax.random.fold_in(epoch_key, step), 1)
    ref = augment(x_train[idx], key, mean=data1.mean, std=data1.std, pad=data1.pad)
    np.testing.assert_array_equal(_to_u8(batch["image"], data1), _to_u8(ref, data1))
    for i in range(0, b, 8):  # each image is a crop/flip of ITS example
      _match(_to_u8(batch["image"][i], data1), x_train[batch["label"][i]], data1.pad)


def test_train_epoch_is_a_permutation(data1):
  labels = np.concatenate([b["label"] for b in _batches(
      ip.train_batches(data1, seed=0, epoch=0, batch_size=200))])
  np.testing.assert_array_equal(np.sort(labels), np.arange(N_TRAIN))  # B divides N
  for epoch in (0, 1):  # 1000 % 96 = 40 dropped, a different 40 each epoch
    labels = np.concatenate([b["label"] for b in _batches(
        ip.train_batches(data1, seed=0, epoch=epoch, batch_size=96))])
    assert len(labels) == len(np.unique(labels)) == 960
    assert labels.min() >= 0 and labels.max() < N_TRAIN
    if epoch == 0:
      dropped0 = set(range(N_TRAIN)) - set(labels)
  assert set(range(N_TRAIN)) - set(labels) != dropped0


def test_train_order_is_deterministic_and_keyed(data1):
  def first(seed, epoch, start_step=0):
    return _batches(ip.train_batches(data1, seed=seed, epoch=epoch, batch_size=96,
                                     start_step=start_step))

  a, again = first(0, 0), first(0, 0)
  for x, y in zip(a, again):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert not np.array_equal(a[0]["label"], first(0, 1)[0]["label"])
  assert not np.array_equal(a[0]["label"], first(1, 0)[0]["label"])
  resumed = first(0, 0, start_step=6)
  assert len(resumed) == len(a) - 6
  for x, y in zip(resumed, a[6:]):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["label"], y["label"])
  assert first(0, 0, start_step=10) == []


def test_train_dtype(data1):
  batch = next(ip.train_batches(data1, seed=0, epoch=0, batch_size=96, dtype=jnp.bfloat16))
  assert batch["image"].dtype == jnp.bfloat16 and batch["label"].dtype == jnp.int32
  assert batch["image"].shape == (96, 32, 32, 3)


def test_one_and_eight_devices_give_identical_train_batches(data1, data8):
  b1 = ip.train_batches(data1, seed=5, epoch=4, batch_size=96)
  b8 = ip.train_batches(data8, seed=5, epoch=4, batch_size=96)
  n = 0
  for x, y in zip(b1, b8):
    shards = y["image"].addressable_shards
    assert len(shards) == 8 and {s.data.shape for s in shards} == {(12, 32, 32, 3)}
    assert len({s.device for s in shards}) == 8
    np.testing.assert_array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
    np.testing.assert_array_equal(np.asarray(x["label"]), np.asarray(y["label"]))
    n += 1
  assert n == 10


# ------------------------------------------------------------------------- eval


@pytest.mark.parametrize("which", ["data1", "data8"])
def test_eval_covers_every_example_once(which, request, npz_arrays):
  data = request.getfixturevalue(which)
  b = 1024  # does not divide 10,007
  batches = _batches(ip.eval_batches(data, batch_size=b))
  assert len(batches) == 10
  mask = np.concatenate([x["mask"] for x in batches])
  assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
  assert mask.sum() == N_EVAL
  keep = mask == 1
  labels = np.concatenate([x["label"] for x in batches])[keep]
  images = _to_u8(np.concatenate([x["image"] for x in batches])[keep], data)
  index = {x.tobytes(): i for i, x in enumerate(npz_arrays["x_test"])}  # random: unique
  got = np.asarray([index[x.tobytes()] for x in images])  # KeyError: not an exact image
  np.testing.assert_array_equal(np.sort(got), np.arange(N_EVAL))  # each example once
  np.testing.assert_array_equal(labels, npz_arrays["y_test"][got])  # with its own label


def test_one_and_eight_devices_give_identical_eval_batches(data1, data8):
  for x, y in zip(ip.eval_batches(data1, batch_size=2048), ip.eval_batches(data8, batch_size=2048)):
    assert len(y["image"].addressable_shards) == 8
    for k in ("image", "label", "mask"):
      np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))


# -------------------------------------------------------------------------- npz


def test_npz_round_trip(data1, npz_arrays):
  assert data1.num_classes == N_TRAIN  # max label + 1
  assert data1.image_shape == (32, 32, 3) and data1.pad == 4 and data1.eval_split == "test"
  np.testing.assert_array_equal(np.asarray(data1.train_images), npz_arrays["x_train"])
  np.testing.assert_array_equal(np.asarray(data1.train_labels), npz_arrays["y_train"])
  np.testing.assert_array_equal(data1.eval_images, npz_arrays["x_test"])
  np.testing.assert_array_equal(data1.eval_labels, npz_arrays["y_test"])
  assert data1.train_labels.dtype == np.int32 and data1.eval_labels.dtype == np.int32
  pixels = npz_arrays["x_train"].reshape(-1, 3) / 255.0
  np.testing.assert_allclose(data1.mean, pixels.mean(0), rtol=1e-6)
  np.testing.assert_allclose(data1.std, pixels.std(0), rtol=1e-5)


def test_npz_non_square_grey_and_keras_labels(tmp_path, mesh8):
  rng = np.random.default_rng(0)
  path = tmp_path / "grey.npz"
  np.savez(path, x_train=_images(rng, 40, 16, 24, 1), y_train=np.arange(40).reshape(40, 1),
           x_test=_images(rng, 9, 16, 24, 1), y_test=np.full((9, 1), 39, np.uint8))
  data = ip.load(f"npz:{path}", mesh=mesh8)
  assert data.image_shape == (16, 24, 1) and data.pad == 2 and data.num_classes == 40
  batch = next(ip.train_batches(data, seed=0, epoch=0, batch_size=16))
  assert batch["image"].shape == (16, 16, 24, 1)
  x_train = np.asarray(data.train_images)
  for i in range(16):
    _match(_to_u8(np.asarray(batch["image"][i]), data), x_train[batch["label"][i]], 2)


class _Evil:
  """Unpickling this creates a marker file."""

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (open, (self.marker, "w"))


def _bad_npz_cases(tmp_path):
  rng = np.random.default_rng(0)
  good = dict(x_train=_images(rng, 8), y_train=np.arange(8), x_test=_images(rng, 4),
              y_test=np.arange(4))

  def with_(**kw):
    d = dict(good, **kw)
    return {k: v for k, v in d.items() if v is not None}

  return {
      "missing_key": (with_(y_test=None), "missing key"),
      "float_images": (with_(x_train=good["x_train"].astype(np.float32)), "not uint8"),
      "float_labels": (with_(y_test=np.arange(4.0)), "not an integer"),
      "rank3_images": (with_(x_test=good["x_test"][..., 0]), "not rank 4"),
      "nchw_images": (with_(x_train=good["x_train"].transpose(0, 3, 1, 2).copy()),
                      "must be NHWC (NCHW? transpose it with x.transpose(0, 2, 3, 1))"),
      "rank2_labels": (with_(y_train=np.zeros((8, 2), np.int64)), "not rank 1"),
      "shape_mismatch": (with_(x_test=_images(rng, 4, 28, 28)), "x_test images are"),
      "count_mismatch": (with_(y_train=np.arange(7)), "7 labels but x_train has 8 images"),
      "negative_labels": (with_(y_test=np.asarray([0, 1, -1, 2])), "negative labels"),
      "empty_split": (with_(x_test=good["x_test"][:0], y_test=good["y_test"][:0]), "empty"),
      "pickled": (with_(y_train=np.asarray([_Evil(str(tmp_path / "pwned"))] * 8,
                                           dtype=object)), "pickled object array"),
  }


@pytest.mark.parametrize("case", ["missing_key", "float_images", "float_labels", "rank3_images",
                                  "nchw_images", "rank2_labels", "shape_mismatch", "count_mismatch",
                                  "negative_labels", "empty_split", "pickled"])
def test_bad_npz_is_a_one_line_user_error(case, tmp_path, mesh1):
  arrays, expected = _bad_npz_cases(tmp_path)[case]
  path = tmp_path / f"{case}.npz"
  np.savez(path, **arrays)
  with pytest.raises(UserError) as e:
    ip.load(f"npz:{path}", mesh=mesh1)
  msg = str(e.value)
  assert "\n" not in msg and expected in msg and "expected an .npz" in msg, msg
  assert not (tmp_path / "pwned").exists()  # the pickle was never executed


def test_npz_missing_or_garbage_file(tmp_path, mesh1):
  with pytest.raises(UserError, match="no such file"):
    ip.load(f"npz:{tmp_path}/nothing.npz", mesh=mesh1)
  (tmp_path / "garbage.npz").write_bytes(b"not a zip file\n" * 10)
  np.save(tmp_path / "array.npy", np.zeros(3))
  for name in ("garbage.npz", "array.npy"):
    with pytest.raises(UserError, match="not an .npz") as e:
      ip.load(f"npz:{tmp_path}/{name}", mesh=mesh1)
    assert "\n" not in str(e.value)


# -------------------------------------------------------------- holdout, synthetic


def test_holdout(npz_path, mesh1):
  data = ip.load(f"npz:{npz_path}", mesh=mesh1, holdout=100, holdout_seed=1)
  assert data.eval_split == "holdout" and data.num_eval == 100 and data.num_train == 900
  train = set(np.asarray(data.train_labels).tolist())
  held = set(data.eval_labels.tolist())
  assert not train & held and train | held == set(range(N_TRAIN))
  again = ip.load(f"npz:{npz_path}", mesh=mesh1, holdout=100, holdout_seed=1)
  np.testing.assert_array_equal(again.eval_labels, data.eval_labels)
  other = ip.load(f"npz:{npz_path}", mesh=mesh1, holdout=100, holdout_seed=2)
  assert set(other.eval_labels.tolist()) != held
  for bad in (N_TRAIN, N_TRAIN + 1, -1):
    with pytest.raises(UserError, match="holdout"):
      ip.load(f"npz:{npz_path}", mesh=mesh1, holdout=bad)


def test_fewer_than_two_classes_is_refused(tmp_path, mesh1):
  # A one-class dataset would train to loss 0 and 100 % without a word: refused, whether
  # the file has one class, or the holdout leaves the training split one.
  rng = np.random.default_rng(0)
  x = _images(rng, 8)
  for name, y_train, holdout, expected in (
      ("zeros", np.zeros(8, np.int64), 0, "the training labels hold only class 0"),
      ("threes", np.full(8, 3), 0, "the training labels hold only class 3"),
      ("held", np.asarray([0, 1, 1, 1, 1, 1, 1, 1]), 7,
       "the training examples left after the holdout hold only class")):
    np.savez(tmp_path / f"{name}.npz", x_train=x, y_train=y_train, x_test=x[:4],
             y_test=np.arange(4))
    with pytest.raises(UserError, match="at least 2 classes") as e:
      ip.load(f"npz:{tmp_path}/{name}.npz", mesh=mesh1, holdout=holdout)
    assert expected in str(e.value) and "\n" not in str(e.value)
  # Two classes are enough.
  np.savez(tmp_path / "two.npz", x_train=x, y_train=np.arange(8) % 2, x_test=x[:4],
           y_test=np.arange(4) % 2)
  assert ip.load(f"npz:{tmp_path}/two.npz", mesh=mesh1).num_classes == 2
  # An image folder (and so the generated one of the ImageNet smoke configs) likewise.
  from jointrd_jax.datasets import streamed, synthetic_folder  # pylint: disable=g-import-not-at-top
  folder = synthetic_folder.make_image_folder(str(tmp_path / "folder"), num_classes=1,
                                              train_per_class=2, val_per_class=1)
  with pytest.raises(UserError, match="1 class folder .class0000.; a classifier needs at "
                                      "least 2 class folders"):
    streamed.load(f"imagefolder:{folder}", mesh=mesh1)


def test_npz_classes_must_all_be_trained(tmp_path, mesh1):
  # The model has max label + 1 outputs: a test label without training examples, or a class
  # below the largest label without any, cannot be learned; refused with the count.
  rng = np.random.default_rng(0)
  x = _images(rng, 8)
  for name, y_train, y_test, expected in (
      ("unseen", np.arange(8) % 4, np.asarray([0, 1, 4, 5, 5, 9, 2, 3]),
       "y_test has label(s) 4, 5, 9 (4 images) that y_train never has"),
      ("gaps", np.asarray([0, 1, 1, 3, 3, 6, 6, 0]), np.asarray([0, 1, 3, 6] * 2),
       "y_train has no example of class 2, 4, 5 below its largest label 6")):
    np.savez(tmp_path / f"{name}.npz", x_train=x, y_train=y_train, x_test=x, y_test=y_test)
    with pytest.raises(UserError, match="relabel the classes to 0..K-1") as e:
      ip.load(f"npz:{tmp_path}/{name}.npz", mesh=mesh1)
    assert expected in str(e.value) and "\n" not in str(e.value), str(e.value)
  # A test split with fewer classes than the training split is fine.
  np.savez(tmp_path / "ok.npz", x_train=x, y_train=np.arange(8) % 4, x_test=x[:2],
           y_test=np.asarray([3, 3]))
  assert ip.load(f"npz:{tmp_path}/ok.npz", mesh=mesh1).num_classes == 4


def test_generated_image_folder_goes_to_the_cache_and_is_reused(tmp_path, monkeypatch,
                                                                 mesh1, caplog):
  # The ImageNet smoke configs' generated folder: in the project's cache folder (said in
  # the log), made once and reused; nothing in the system temp directory.
  from jointrd_jax.datasets import streamed  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("JOINTRD_JAX_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
  (tmp_path / "tmp").mkdir()
  monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
  kw = dict(mesh=mesh1, image_size=16, eval_resize=16,
            settings=dict(num_classes=2, train_size=4, test_size=2))
  with caplog.at_level(logging.WARNING):
    streamed.load("synthetic", **kw)
  (folder,) = (tmp_path / "cache" / "generated").iterdir()
  assert f"in {folder} (kept for later runs" in caplog.text
  stamp = (folder / "GENERATED.json").stat().st_mtime_ns
  streamed.load("synthetic", **kw)
  assert (folder / "GENERATED.json").stat().st_mtime_ns == stamp
  assert list((tmp_path / "tmp").iterdir()) == []


def test_synthetic(mesh1, caplog):
  kw = dict(settings=dict(train_size=2000, test_size=500, num_classes=10, image_size=16))
  with caplog.at_level(logging.WARNING):
    data = ip.load("synthetic", mesh=mesh1, **kw)
  assert "SYNTHETIC DATA" in caplog.text
  assert data.image_shape == (16, 16, 3) and data.num_classes == 10 and data.pad == 2
  assert data.num_train == 2000 and data.num_eval == 500
  assert data.train_images.dtype == np.uint8 and data.eval_labels.dtype == np.int32
  again = ip.load("synthetic", mesh=mesh1, **kw)
  np.testing.assert_array_equal(np.asarray(again.train_images), np.asarray(data.train_images))
  np.testing.assert_array_equal(again.eval_labels, data.eval_labels)
  x = np.asarray(data.train_images).reshape(2000, -1).astype(np.float32)
  y = np.asarray(data.train_labels)
  assert set(np.unique(y)) == set(range(10))
  np.testing.assert_allclose(data.mean, x.reshape(-1, 3).mean(0) / 255, atol=0.01)
  # Learnable: nearest class mean classifies the test split almost perfectly.
  centroids = np.stack([x[y == c].mean(0) for c in range(10)])
  xt = data.eval_images.reshape(500, -1).astype(np.float32)
  pred = np.argmin(((xt[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert (pred == data.eval_labels).mean() > 0.95


def test_synthetic_full_size():
  x_train, y_train, x_test, y_test = ip.synthetic_arrays(50000, 10000, 100, 32)
  assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
  assert y_train.max() < 100 and y_test.min() >= 0
  # Colour (0..159) + pattern (0..47) + noise (0..42): uint8 never wraps around.
  assert x_train.max() <= 159 + 47 + 42


# ----------------------------------------------------------------------- errors


def test_unknown_dataset(mesh1):
  with pytest.raises(UserError) as e:
    ip.load("imagenet", mesh=mesh1)
  for choice in ("cifar100", "cifar10", "npz:PATH", "synthetic"):
    assert choice in str(e.value)


def test_batch_size_must_divide_over_devices(data8):
  with pytest.raises(UserError, match="8 devices"):
    ip.train_batches(data8, seed=0, epoch=0, batch_size=12)
  with pytest.raises(UserError, match="8 devices"):
    ip.eval_batches(data8, batch_size=12)


def test_steps_per_epoch():
  assert ip.steps_per_epoch(50000, 128) == 390
  assert ip.steps_per_epoch(1000, 200) == 5
  with pytest.raises(UserError, match="larger than"):
    ip.steps_per_epoch(100, 128)
