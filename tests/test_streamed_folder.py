"""Streamed `imagefolder:PATH` / `synthetic` input (datasets/streamed.py): order, sharding
and thread invariance, exact resumption, exact evaluation, one-line errors.

Real JPEG (and PNG) files of varied sizes, written here; never a download.
"""
import io
import logging
import os
import shutil

import jax
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
from PIL import Image  # noqa: E402

from jointrd_jax.datasets import image_ops, imagefolder, streamed  # noqa: E402
from jointrd_jax.datasets.synthetic_folder import make_image_folder  # noqa: E402
from jointrd_jax.errors import UserError  # noqa: E402
from jointrd_jax.sharding import make_mesh  # noqa: E402

SIZE = 32  # output side: small, so the tests are fast
N_CLASSES, TRAIN_PER, VAL_PER = 5, 13, 5  # 65 train, 25 val


def _mesh(n):
  devices = jax.devices("cpu")
  if len(devices) < n:
    pytest.skip(f"needs {n} CPU devices (tests/conftest.py)")
  return make_mesh(devices[:n])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("imagefolder"))
  return make_image_folder(path, N_CLASSES, TRAIN_PER, VAL_PER, seed=3,
                           height_range=(40, 120), width_range=(40, 120))


@pytest.fixture(scope="module")
def data(folder):
  return streamed.load(f"imagefolder:{folder}", mesh=_mesh(1), image_size=SIZE,
                       eval_resize=36)


def _host(data, **kw):
  return list(data.host_train_batches(**kw))


def _equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def _cat(parts):
  """Per-process batch lists -> global batches (rows of process 0 first)."""
  return [{k: np.concatenate([p[i][k] for p in parts]) for k in parts[0][i]}
          for i in range(len(parts[0]))]


# ----------------------------------------------------------------------- training


def test_metadata(data, folder):
  assert data.name == f"imagefolder:{folder}" and data.num_classes == N_CLASSES
  assert data.class_names == tuple(f"class{c:04d}" for c in range(N_CLASSES))
  assert data.num_train == 65 and data.num_eval == 25 and data.eval_split == "val"
  assert data.image_shape == (SIZE, SIZE, 3)
  np.testing.assert_allclose(data.mean, (0.485, 0.456, 0.406))
  np.testing.assert_allclose(data.std, (0.229, 0.224, 0.225))
  assert data.mean.dtype == np.float32 and data.std.dtype == np.float32
  assert data.steps_per_epoch(16) == 4 and data.steps_per_epoch(65) == 1
  with pytest.raises(UserError, match="larger than"):
    data.steps_per_epoch(66)


def test_batches_follow_the_documented_global_order(data, folder):
  seed, epoch, b = 5, 2, 16
  perm = np.random.default_rng([seed, epoch]).permutation(65)
  order = data.train_order(seed=seed, epoch=epoch, batch_size=b)
  np.testing.assert_array_equal(order, perm[:64].reshape(4, 16))
  files = imagefolder.scan(folder)
  batches = _host(data, seed=seed, epoch=epoch, batch_size=b)
  assert len(batches) == 4
  for step, batch in enumerate(batches):
    assert batch["image"].shape == (b, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32
    np.testing.assert_array_equal(batch["label"], files.train.labels[order[step]])
  # Each image is its file's augmentation keyed by (seed, epoch, example id).
  for row in (0, 7, 15):
    i = order[2, row]
    want = image_ops.train_image(tf.io.read_file(files.train.path(i)),
                                 image_ops.example_key(seed, epoch, i), SIZE)
    np.testing.assert_array_equal(batches[2]["image"][row], want.numpy())


def test_epochs_and_seeds_differ_and_repeat(data):
  first = lambda **kw: next(data.host_train_batches(batch_size=16, **kw))
  a = first(seed=0, epoch=0)
  _equal([a], [first(seed=0, epoch=0)])
  for other in (first(seed=0, epoch=1), first(seed=1, epoch=0)):
    assert not np.array_equal(a["label"], other["label"])
    assert not np.array_equal(a["image"], other["image"])


def test_same_batches_for_any_process_count_and_thread_count(folder):
  mesh = _mesh(1)
  one = streamed.load(f"imagefolder:{folder}", mesh=mesh, image_size=SIZE, threads=1,
                      num_parallel_calls=1)
  many = streamed.load(f"imagefolder:{folder}", mesh=mesh, image_size=SIZE, threads=2)
  kw = dict(seed=9, epoch=4, batch_size=16)
  ref = _host(one, **kw)
  _equal(ref, _host(many, **kw))
  parts = [_host(many, process_index=p, process_count=2, **kw) for p in range(2)]
  assert {len(p[0]["label"]) for p in parts} == {8}
  _equal(ref, _cat(parts))


def test_global_arrays_on_one_and_eight_devices(folder):
  kw = dict(seed=1, epoch=0, batch_size=16)
  d1 = streamed.load(f"imagefolder:{folder}", mesh=_mesh(1), image_size=SIZE)
  d8 = streamed.load(f"imagefolder:{folder}", mesh=_mesh(8), image_size=SIZE)
  n = 0
  for x, y in zip(d1.train_batches(**kw), d8.train_batches(**kw)):
    assert y["image"].shape == (16, SIZE, SIZE, 3) and y["image"].dtype == np.uint8
    assert y["label"].shape == (16,) and y["label"].dtype == np.int32
    shards = y["image"].addressable_shards
    assert len(shards) == 8 and {s.data.shape for s in shards} == {(2, SIZE, SIZE, 3)}
    for k in ("image", "label"):
      np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))
    n += 1
  assert n == 4
  with pytest.raises(UserError, match="8 devices"):
    d8.train_batches(seed=0, epoch=0, batch_size=12)


def test_resume_mid_epoch_is_the_tail_and_skips_reading(folder, tmp_path):
  copy = str(tmp_path / "copy")
  shutil.copytree(folder, copy)
  data = streamed.load(f"imagefolder:{copy}", mesh=_mesh(1), image_size=SIZE)
  kw = dict(seed=3, epoch=7, batch_size=16)
  full = _host(data, **kw)
  files = imagefolder.scan(copy)
  # Delete the files of the first two batches: resuming at step 2 never opens them.
  for i in data.train_order(**kw)[:2].ravel():
    os.remove(files.train.path(i))
  _equal(full[2:], _host(data, start_step=2, **kw))
  _equal(full[2:], [{k: np.asarray(v) for k, v in b.items()}
                    for b in data.train_batches(start_step=2, **kw)])
  assert _host(data, start_step=4, **kw) == []
  with pytest.raises(ValueError, match="start_step"):
    _host(data, start_step=5, **kw)
  with pytest.raises(UserError, match="cannot read or decode"):  # from the start: refused
    _host(data, **kw)


# --------------------------------------------------------------------- evaluation


@pytest.mark.parametrize("count", [1, 2])
def test_eval_covers_every_image_once(data, folder, count):
  files = imagefolder.scan(folder)
  parts = [list(data.host_eval_batches(batch_size=8, process_index=p, process_count=count))
           for p in range(count)]
  batches = _cat(parts)
  assert len(batches) == 4  # ceil(25 / 8)
  mask = np.concatenate([b["mask"] for b in batches])
  assert mask.dtype == np.float32 and mask.sum() == 25
  np.testing.assert_array_equal(mask, np.arange(32) < 25)  # global row r = example r
  labels = np.concatenate([b["label"] for b in batches])[:25]
  np.testing.assert_array_equal(labels, files.val.labels)
  images = np.concatenate([b["image"] for b in batches])
  assert (images[25:] == 0).all()
  for i in (0, 13, 24):
    want = image_ops.eval_image(tf.io.read_file(files.val.path(i)), SIZE, 36)
    np.testing.assert_array_equal(images[i], want.numpy())


def test_eval_global_arrays(folder):
  d8 = streamed.load(f"imagefolder:{folder}", mesh=_mesh(8), image_size=224)
  batches = list(d8.eval_batches(batch_size=16))
  assert len(batches) == 2
  b = batches[1]
  assert b["image"].shape == (16, 224, 224, 3) and b["image"].dtype == np.uint8
  assert b["label"].dtype == np.int32 and b["mask"].dtype == np.float32
  assert len(b["mask"].addressable_shards) == 8
  assert float(sum(np.asarray(x["mask"]).sum() for x in batches)) == 25


def test_early_close_stops_the_prefetch_thread(data):
  it = data.train_batches(seed=0, epoch=0, batch_size=16)
  next(it)
  it.close()
  assert not it._thread.is_alive()
  with pytest.raises(StopIteration):
    next(it)


# -------------------------------------------------------------------- bad input


def _tree(root, files):
  for rel, content in files.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(content)
  return str(root)


@pytest.fixture(scope="module")
def jpeg_bytes(folder):
  with open(imagefolder.scan(folder).train.path(1), "rb") as f:
    return f.read()


@pytest.mark.parametrize("case", ["missing", "file", "no_val", "no_classes", "empty_class",
                                  "class_sets_differ", "gif_only_class"])
def test_bad_folder_is_one_line(case, tmp_path, jpeg_bytes):
  j = jpeg_bytes
  layouts = {
      "missing": ({}, "no such directory"),
      "file": (None, "not a directory"),
      "no_val": ({"train/a/1.jpg": j}, "no val/ folder"),
      "no_classes": ({"train/x.jpg": j, "val/y.jpg": j}, "has no class folders"),
      "empty_class": ({"train/a/1.jpg": j, "train/b/notes.txt": b"x", "val/a/1.jpg": j,
                       "val/b/1.jpg": j}, "train/b has no image files (it has 1 other"),
      "class_sets_differ": ({"train/a/1.jpg": j, "train/b/1.jpg": j, "val/a/1.jpg": j,
                             "val/c/1.jpg": j}, "only in train/: b; only in val/: c"),
      "gif_only_class": ({"train/a/1.jpg": j, "train/b/1.gif": j, "val/a/1.jpg": j,
                          "val/b/1.jpg": j}, "train/b has no image files (it has 1 other"),
  }
  files, expected = layouts[case]
  root = tmp_path / "data"
  if files is None:
    root.write_bytes(b"x")
  elif files:
    _tree(root, files)
  with pytest.raises(UserError) as e:
    streamed.load(f"imagefolder:{root}", mesh=_mesh(1))
  msg = str(e.value)
  assert "\n" not in msg and expected in msg, msg
  if case in ("missing", "no_val", "no_classes"):
    assert "PATH/train/<class>" in msg


def test_unknown_dataset_and_sizes():
  with pytest.raises(UserError, match="choose one of .*imagefolder:PATH, imagenet2012, "):
    streamed.load("imagenet", mesh=_mesh(1))
  with pytest.raises(UserError, match="eval_resize"):
    streamed.load("imagefolder:/nonexistent", mesh=_mesh(1), image_size=224, eval_resize=200)
  with pytest.raises(UserError, match="'antialias' .* or 'fast'") as e:
    streamed.load("imagefolder:/nonexistent", mesh=_mesh(1), train_resize="area")
  assert "\n" not in str(e.value)


def test_fast_training_resize(folder):
  """train_resize='fast': the same crops and flips, bilinear without antialiasing."""
  fast = streamed.load(f"imagefolder:{folder}", mesh=_mesh(1), image_size=SIZE,
                       eval_resize=36, train_resize="fast")
  files = imagefolder.scan(folder)
  order = fast.train_order(seed=1, epoch=0, batch_size=16)
  batch = _host(fast, seed=1, epoch=0, batch_size=16)[1]
  for row in (0, 9):
    i = order[1, row]
    want = image_ops.train_image(tf.io.read_file(files.train.path(i)),
                                 image_ops.example_key(1, 0, i), SIZE, resize="fast")
    np.testing.assert_array_equal(batch["image"][row], want.numpy())


def test_labels_are_sorted_folder_names_and_non_images_are_skipped(tmp_path, jpeg_bytes, caplog):
  j = jpeg_bytes
  files = {}
  for name in ("zebra", "Mango", "apple", "n01440764"):  # created unsorted
    files[f"train/{name}/{name}_0.JPEG"] = j
    files[f"train/{name}/sub/{name}_1.jpg"] = j  # nested folders count (torchvision)
    files[f"val/{name}/v.jpeg"] = j
  files["train/zebra/.DS_Store"] = b"x"
  files["train/apple/readme.txt"] = b"x"
  files["train/LICENSE"] = b"x"
  root = _tree(tmp_path / "sorted", files)
  with caplog.at_level(logging.WARNING):
    data = streamed.load(f"imagefolder:{root}", mesh=_mesh(1), image_size=SIZE)
  assert "skipped 3 non-image file(s) in train/" in caplog.text
  assert data.class_names == ("Mango", "apple", "n01440764", "zebra")  # sorted(), as torchvision
  scan = imagefolder.scan(root)
  assert [os.fsdecode(bytes(p)) for p in scan.train.paths] == [
      "Mango/Mango_0.JPEG", "Mango/sub/Mango_1.jpg", "apple/apple_0.JPEG",
      "apple/sub/apple_1.jpg", "n01440764/n01440764_0.JPEG", "n01440764/sub/n01440764_1.jpg",
      "zebra/zebra_0.JPEG", "zebra/sub/zebra_1.jpg"]  # sorted(os.walk(...)): folder by folder
  np.testing.assert_array_equal(scan.train.labels, [0, 0, 1, 1, 2, 2, 3, 3])
  np.testing.assert_array_equal(scan.val.labels, [0, 1, 2, 3])


def _torchvision_samples(split_dir):
  """torchvision's ImageFolder.samples, from its documented rules (torchvision is not a
  dependency): classes = sorted sub-folders; per class, sorted(os.walk(..., followlinks
  =True)) and sorted file names; a file counts when its lower-cased name ends with one
  of IMG_EXTENSIONS."""
  extensions = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
  classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
  samples = []
  for label, name in enumerate(classes):
    for root, _, fnames in sorted(os.walk(os.path.join(split_dir, name), followlinks=True)):
      samples += [(os.path.relpath(os.path.join(root, f), split_dir), label)
                  for f in sorted(fnames) if f.lower().endswith(extensions)]
  return samples


def test_extensions_and_order_are_torchvisions(tmp_path, jpeg_bytes, caplog):
  """Same files, same order, same labels as torchvision's ImageFolder: .gif is skipped,
  .tif/.TIFF/.ppm/.pgm/.webp count; the TIFF/PPM/PGM files are decoded (by PIL)."""
  x = np.asarray(Image.open(io.BytesIO(jpeg_bytes)).convert("RGB"))
  encoded = {}
  for fmt, ext in (("TIFF", ".tif"), ("TIFF", ".TIFF"), ("PPM", ".ppm"), ("WEBP", ".webp"),
                   ("GIF", ".gif"), ("PNG", ".Png")):
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, fmt)
    encoded[ext] = buf.getvalue()
  buf = io.BytesIO()
  Image.fromarray(x[..., 0]).save(buf, "PPM")
  encoded[".pgm"] = buf.getvalue()
  files = {"train/b/z.jpg": jpeg_bytes, "train/b/a.gif": encoded[".gif"],
           "train/b/m.tif": encoded[".tif"], "train/b/M.TIFF": encoded[".TIFF"],
           "train/a/2.pgm": encoded[".pgm"], "train/a/1.ppm": encoded[".ppm"],
           "train/a/sub/0.webp": encoded[".webp"], "train/a/3.Png": encoded[".Png"],
           "train/a/.jpg": jpeg_bytes, "train/a/notes.txt": b"x",
           "val/a/v.gif": encoded[".gif"], "val/a/v.tiff": encoded[".tif"],
           "val/b/w.JPEG": jpeg_bytes}
  root = _tree(tmp_path / "formats", files)
  with caplog.at_level(logging.WARNING):
    data = streamed.load(f"imagefolder:{root}", mesh=_mesh(1), image_size=SIZE, eval_resize=36)
  assert "skipped 2 non-image file(s) in train/" in caplog.text  # a.gif, notes.txt
  scan = imagefolder.scan(root)
  for split, files_ in (("train", scan.train), ("val", scan.val)):
    got = [(os.fsdecode(bytes(p)), int(c)) for p, c in zip(files_.paths, files_.labels)]
    assert got == _torchvision_samples(os.path.join(root, split)), split
  assert [p for p, _ in _torchvision_samples(os.path.join(root, "train"))] == [
      "a/.jpg", "a/1.ppm", "a/2.pgm", "a/3.Png", "a/sub/0.webp", "b/M.TIFF", "b/m.tif",
      "b/z.jpg"]  # the rules above, spelled out
  # Every listed file decodes, to PIL's pixels (torchvision's loader).
  batch = next(iter(data.host_train_batches(seed=0, epoch=0, batch_size=8)))
  assert batch["image"].shape == (8, SIZE, SIZE, 3)
  for i in range(len(scan.train)):
    got = image_ops.decode_rgb(tf.io.read_file(scan.train.path(i))).numpy()
    np.testing.assert_array_equal(got, np.asarray(Image.open(scan.train.path(i)).convert("RGB")))
  assert sum(b["mask"].sum() for b in data.host_eval_batches(batch_size=2)) == 2


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "tiff"])
def test_corrupt_image_is_refused_with_its_name(tmp_path, jpeg_bytes, damage):
  j = jpeg_bytes
  bad = {"truncated": j[:len(j) // 2], "empty": b"", "text": b"<html>404</html>",
         "tiff": b"II*\x00 not a tiff"}[damage]
  files = {f"{s}/{c}/{i}.jpg": j for s in ("train", "val") for c in "ab" for i in range(4)}
  files["train/b/2.jpg"] = bad
  files["val/a/3.jpg"] = bad
  root = _tree(tmp_path / "corrupt", files)
  data = streamed.load(f"imagefolder:{root}", mesh=_mesh(1), image_size=SIZE)
  for batches, name in ((lambda: data.train_batches(seed=0, epoch=0, batch_size=4), "b/2.jpg"),
                        (lambda: data.eval_batches(batch_size=4), "a/3.jpg")):
    with pytest.raises(UserError) as e:
      list(batches())
    msg = str(e.value)
    assert "\n" not in msg and os.path.join(root, "train" if name == "b/2.jpg" else "val",
                                            name) in msg, msg
    assert "refused, not skipped" in msg


# ---------------------------------------------------------------------- synthetic


def test_synthetic_is_generated_once_and_learnable(tmp_path, caplog):
  kw = dict(mesh=_mesh(1), data_dir=str(tmp_path), image_size=SIZE,
            settings=dict(num_classes=4, train_size=48, test_size=24))
  with caplog.at_level(logging.WARNING):
    data = streamed.load("synthetic", **kw)
  assert "SYNTHETIC DATA" in caplog.text
  assert data.name == "synthetic" and data.num_classes == 4
  assert data.num_train == 48 and data.num_eval == 24 and data.eval_split == "val"
  (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("jointrd_synthetic")]
  names = sorted(p.name for p in (folder / "train" / "class0000").iterdir())
  assert names[0].endswith(".png") and names[1].endswith(".JPEG")  # real JPEGs and a PNG
  stamp = os.path.getmtime(folder / "GENERATED.json")
  again = streamed.load("synthetic", **kw)  # reused, not regenerated
  assert os.path.getmtime(folder / "GENERATED.json") == stamp
  _equal(list(data.host_eval_batches(batch_size=8)), list(again.host_eval_batches(batch_size=8)))
  # Learnable: the mean colour of a training crop classifies the eval images.
  train = _host(data, seed=0, epoch=0, batch_size=48)[0]
  colour = train["image"].reshape(48, -1, 3).mean(1)
  centroids = np.stack([colour[train["label"] == c].mean(0) for c in range(4)])
  ev = list(data.host_eval_batches(batch_size=24))[0]
  test_colour = ev["image"].reshape(24, -1, 3).mean(1)
  pred = np.argmin(((test_colour[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
  assert (pred == ev["label"]).mean() >= 0.9
