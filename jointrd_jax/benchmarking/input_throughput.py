"""Throughput of the input pipelines (images/s): what `experiments.data_throughput` reports
(its docstring says what each row measures).

- `in_memory_rate`: CIFAR-sized data on the devices (`datasets.in_memory`);
- `streamed_rows`: the streamed ImageNet pipeline (`datasets.streamed`), decode included,
  and its stages alone, on this process's cores (`pin_cores` first); one core also times
  PIL (torchvision's loader) for comparison;
- `generated_folder`: the ImageNet-sized JPEGs these run on when no folder is given, made
  once in a cache folder and reused.
"""
import math
import os
import statistics
import time

import jax
import numpy as np
from PIL import Image

from jointrd_jax import caches, datasets, tensorflow_support
from jointrd_jax.benchmarking import timing
from jointrd_jax.datasets import synthetic_folder
from jointrd_jax.sharding import make_mesh

GENERATED_CLASSES = 8


def generated_folder(num_images: int, height: int, width: int) -> tuple:
  """`(path, made_now)`: an imagefolder of `num_images` training JPEGs of height x width
  (8 classes, a third as many validation images) in the project's cache
  (`caches.generated`), keyed by those parameters: made on first use, reused afterwards."""
  path = caches.generated(f"throughput_{num_images}_{height}x{width}")
  made_now = not os.path.isdir(path)
  per_class = max(1, num_images // GENERATED_CLASSES)
  synthetic_folder.ensure_image_folder(
      path, num_classes=GENERATED_CLASSES, train_per_class=per_class,
      val_per_class=max(1, per_class // 3), seed=0, height_range=(height, height),
      width_range=(width, width))
  return path, made_now


def folder_size(path: str) -> tuple:
  """(number of files, bytes) under `path`."""
  files = size = 0
  for root, _, names in os.walk(path):
    for name in names:
      files += 1
      size += os.path.getsize(os.path.join(root, name))
  return files, size


# ------------------------------------------------------------------- in-memory


def in_memory_rate(data, batch_size: int, steps: int, warmup: int, dtype) -> float:
  """Median images/s over `steps` blocked batches after `warmup` batches."""
  datasets.steps_per_epoch(data.num_train, batch_size)  # validates batch_size
  times = []
  epoch, it = 0, None
  for i in range(warmup + steps):
    if it is None:
      it = datasets.train_batches(data, seed=0, epoch=epoch, batch_size=batch_size,
                                  dtype=dtype)
    t = time.perf_counter()
    batch = next(it, None)
    if batch is None:  # epoch exhausted: next epoch (its permutation is cheap)
      epoch, it = epoch + 1, None
      it = datasets.train_batches(data, seed=0, epoch=epoch, batch_size=batch_size,
                                  dtype=dtype)
      t = time.perf_counter()
      batch = next(it)
    jax.block_until_ready(batch)
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return batch_size / statistics.median(times)


# --------------------------------------------------------------------- streamed


def pin_cores(cores: str) -> int:
  """Pins this process to `cores` ('all' or a count) of its allowed cores; call it before
  TensorFlow or JAX start threads (they inherit it). Returns the count."""
  allowed = sorted(os.sched_getaffinity(0))
  n = len(allowed) if cores == "all" else int(cores)
  os.sched_setaffinity(0, allowed[:n])
  return n


def _stage_datasets(data, tf, image_ops, threads, batch_size: int) -> dict:
  """tf.data pipelines of single stages over the training files (for the profile)."""
  files = data._source.folder.train  # pylint: disable=protected-access
  paths = [files.path(i) for i in range(len(files))]
  size = data.image_shape[0]
  options = tf.data.Options()
  options.threading.max_intra_op_parallelism = 1
  if threads:
    options.threading.private_threadpool_size = threads

  def pipe(ds, fn):
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).with_options(options)

  def window(path, i):  # the training crop window of example i, decoded
    u = image_ops.crop_uniforms(image_ops.example_key(0, 0, i))
    return image_ops.decode_window(tf.io.read_file(path),
                                   lambda h, w: image_ops.random_resized_crop_window(h, w, u))

  files_ds = tf.data.Dataset.from_tensor_slices((paths, tf.range(len(paths), dtype=tf.int64)))
  crops = tf.ragged.stack([tf.cast(window(tf.constant(p), tf.constant(i, tf.int64)), tf.float32)
                           for i, p in enumerate(paths[:32])])
  crops_ds = tf.data.Dataset.from_tensor_slices(crops).repeat(max(1, len(paths) // 32))
  return {
      "stage: read files only": pipe(files_ds, lambda p, i: tf.strings.length(tf.io.read_file(p))),
      "stage: + fused decode of the crop window": pipe(files_ds, lambda p, i: window(p, i)[0, 0]),
      "stage: + decode of the whole JPEG": pipe(
          files_ds, lambda p, i: tf.io.decode_jpeg(tf.io.read_file(p), channels=3)[0, 0]),
      "stage: bilinear resize of a crop only": pipe(crops_ds, lambda c: tf.saturate_cast(
          tf.round(tf.image.resize(c.to_tensor(), [size, size])), tf.uint8)[0, 0]),
      "stage: antialiased resize of a crop only (the default)": pipe(
          crops_ds, lambda c: _antialiased(tf, image_ops, c.to_tensor(), size)[0, 0]),
  }


def _antialiased(tf, image_ops, crop, size: int):
  """The training pipeline's default resize of a crop (PIL's antialiased bilinear)."""
  shape = tf.shape(crop)[:2]
  weights = image_ops.pil_weights(shape, [size, size], [0, 0], [False, False], size)
  return tf.saturate_cast(tf.round(image_ops.resample(crop, (0, 0), weights, size)), tf.uint8)


def pil_rate(paths, size: int, draft: bool, seconds: float, repeats: int) -> tuple:
  """torchvision-style RandomResizedCrop + flip with PIL, one image at a time (with `draft`:
  JPEG DCT-scaled decoding, as fast PyTorch loaders do)."""
  rng = np.random.default_rng(0)

  def params(h, w):  # torchvision's RandomResizedCrop.get_params
    for _ in range(10):
      area = h * w * rng.uniform(0.08, 1.0)
      ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
      cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
      if 0 < cw <= w and 0 < ch <= h:
        return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    return 0, 0, h, w

  def one(path):
    with open(path, "rb") as f:
      img = Image.open(f)
      w, h = img.size
      top, left, ch, cw = params(h, w)
      if draft:  # decode at 1/2, 1/4 or 1/8 scale while the crop stays >= size
        scale = max(1.0, min(cw, ch) / size)
        img.draft("RGB", (int(w / scale), int(h / scale)))
      img = img.convert("RGB")
      f = img.size[0] / w
      box = (left * f, top * f, (left + cw) * f, (top + ch) * f)
      out = img.resize((size, size), Image.BILINEAR, box=box)
      if rng.random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
      return np.asarray(out)

  return timing.best_rate(lambda: paths[:1] + paths, lambda p: int(one(p).shape[0] > 0),
                          repeats, seconds)


def streamed_rows(folder: str, cores: str, n: int, batch_size: int, repeats: int,
                  seconds: float) -> dict:
  """{row name: (images per wall second, per CPU second)} of the streamed pipeline over
  `folder` on `n` pinned cores (`cores` 'all' or the count, `pin_cores` called before)."""
  tf = tensorflow_support.import_tensorflow()
  from jointrd_jax.datasets import image_ops, streamed  # imports TensorFlow
  threads = n if cores != "all" else None
  if cores != "all":
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)
  data = streamed.load(f"imagefolder:{folder}", mesh=make_mesh(jax.local_devices()[:1]),
                       threads=threads, num_parallel_calls=n if cores != "all" else -1)
  b, reps, secs = batch_size, repeats, seconds
  epoch = iter(range(1 << 30))
  rows = {}
  rows["train augmentation (host batches)"] = timing.best_rate(
      lambda: data.host_train_batches(seed=0, epoch=next(epoch), batch_size=b),
      lambda x: len(x["label"]), reps, secs)
  rows["train augmentation (to device)"] = timing.best_rate(
      lambda: data.train_batches(seed=0, epoch=next(epoch), batch_size=b),
      lambda x: jax.block_until_ready(x)["label"].shape[0], reps, secs)
  fast = streamed.load(f"imagefolder:{folder}", mesh=make_mesh(jax.local_devices()[:1]),
                       threads=threads, num_parallel_calls=n if cores != "all" else -1,
                       train_resize="fast")
  rows["train augmentation, resize=fast (host batches)"] = timing.best_rate(
      lambda: fast.host_train_batches(seed=0, epoch=next(epoch), batch_size=b),
      lambda x: len(x["label"]), reps, secs)
  rows["eval: resize 256, centre crop 224"] = timing.best_rate(
      lambda: data.host_eval_batches(batch_size=b), lambda x: int(x["mask"].sum()), reps, secs)
  for name, ds in _stage_datasets(data, tf, image_ops, threads, b).items():
    rows[name] = timing.best_rate(lambda ds=ds: ds, lambda x: int(x.shape[0]), reps, secs)
  if n == 1:
    files = data._source.folder.train  # pylint: disable=protected-access
    paths = [files.path(i) for i in range(len(files))]
    rows["PIL, whole image decoded (torchvision)"] = pil_rate(paths, 224, False, secs, reps)
    rows["PIL with draft (DCT-scaled) decoding"] = pil_rate(paths, 224, True, secs, reps)
  return rows
