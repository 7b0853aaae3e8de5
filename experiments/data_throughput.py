r"""Throughput of the input pipelines on this machine (images/s; a script, not a test).

  python -m experiments.data_throughput [--batch_sizes=128,512] [--dataset=synthetic]
  python -m experiments.data_throughput --pipeline=imagenet [--cores=1,all] [--folder=PATH]
"""
# What is measured:
# `--pipeline=in_memory` (default; CIFAR-sized data on the devices): for each batch size,
# builds the pipeline over all local devices, runs `--warmup` steps (compilation
# included), then times `--steps` batches, blocking on each one, and prints the median
# images/s.
#
# `--pipeline=imagenet`: the streamed ImageNet pipeline (`datasets.streamed`), decode
# included, on generated ImageNet-sized JPEGs (`--image_shape`, default 375x500, ~110 KB,
# or a real `--folder=PATH` in imagefolder layout). For each `--cores` setting it runs a
# child process pinned to that many cores (`1`: one core, tf.data private threadpool of 1
# and intra-op parallelism 1; `all`: every core) and reports images/s and images/s per
# core for: training augmentation (host batches; and to the devices), evaluation,
# and, to show what limits them, the stages alone: reading the files, JPEG decode of the
# crop window (fused decode-and-crop), full decode, and the resize of a crop. One core
# also runs PIL (torchvision's default loader: decode the whole image) and PIL with draft
# decoding (JPEG DCT scaling, as fast PyTorch loaders do) for comparison. Two figures per
# row, each the best of `--repeats` timed passes over `--seconds` or more: images per
# wall-clock second, and images per CPU-second of the measuring process (all its
# threads): the rate of one fully used core, which other jobs on a shared machine do not
# lower (they only steal wall-clock time).

import os
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from jointrd_jax import datasets
from jointrd_jax.datasets import streamed, synthetic_folder
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import make_mesh

_PIPELINE = flags.DEFINE_enum("pipeline", "in_memory", ["in_memory", "imagenet"],
                              "in_memory: CIFAR-sized data on the devices; imagenet: streamed.")
_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["128", "512"], "Global batch sizes to time.")
_DATASET = flags.DEFINE_string("dataset", "synthetic", "cifar100, cifar10, npz:PATH or synthetic.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir (CIFAR only).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per batch size.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Image dtype.")
# --pipeline=imagenet
_CORES = flags.DEFINE_list("cores", ["1", "all"], "Core counts to measure ('all': every core).")
_FOLDER = flags.DEFINE_string("folder", "", "An imagefolder PATH; default: generated images.")
_IMAGES = flags.DEFINE_integer("images", 768, "Generated training images (3/4 of them; "
                               "1/4 more for eval).")
_IMAGE_SHAPE = flags.DEFINE_list("image_shape", ["375", "500"], "Generated images' H,W.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size of the imagenet measurement.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed passes per figure (the best counts).")
_SECONDS = flags.DEFINE_float("seconds", 3.0, "Minimum length of a timed pass.")


# ------------------------------------------------------------------- in-memory


def throughput(data, batch_size: int, steps: int, warmup: int, dtype) -> float:
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


def main_in_memory():
  mesh = make_mesh()
  data = datasets.load(_DATASET.value, mesh=mesh, data_dir=_DATA_DIR.value, download=False)
  print(f"dataset={data.name} train={data.num_train} image={data.image_shape} "
        f"devices={mesh.devices.size} ({jax.devices()[0].platform}) dtype={_DTYPE.value}")
  for b in _BATCH_SIZES.value:
    ips = throughput(data, int(b), _STEPS.value, _WARMUP.value, jnp.dtype(_DTYPE.value))
    print(f"batch_size={int(b):6d}  {ips:12,.0f} images/s  (median of {_STEPS.value} steps)")


# --------------------------------------------------------------------- imagenet


def best_rate(make_iter, count_fn, repeats: int, seconds: float) -> tuple[float, float]:
  """(items per wall second, items per CPU second of this process), each the best of
  `repeats` passes; a pass runs whole iterators for >= `seconds` of wall time.

  The first element of each iterator is untimed (pipeline start-up and fill). CPU time
  counts every thread of this process, so items per CPU second is the rate per fully
  used core, whatever else runs on the machine (idle TF threads that spin count too:
  it can only be an underestimate).
  """
  best_wall = best_cpu = 0.0
  for _ in range(repeats):
    n, wall, cpu = 0, 0.0, 0.0
    while wall < seconds:
      it = iter(make_iter())
      if next(it, None) is None:
        raise UserError("nothing to measure: too few images for one batch.")
      t, c = time.perf_counter(), time.process_time()
      for item in it:
        n += count_fn(item)
      wall += time.perf_counter() - t
      cpu += time.process_time() - c
    best_wall, best_cpu = max(best_wall, n / wall), max(best_cpu, n / cpu)
  return best_wall, best_cpu


def _stage_datasets(data, tf, image_ops, threads: int | None):
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
    return ds.batch(_BATCH.value).with_options(options)

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
      "stage: antialiased resize of a crop only": pipe(crops_ds, lambda c: tf.saturate_cast(
          tf.round(tf.image.resize(c.to_tensor(), [size, size], antialias=True)), tf.uint8)[0, 0]),
  }


def _pil_rate(paths, size: int, draft: bool, seconds: float, repeats: int) -> float:
  """torchvision-style RandomResizedCrop + flip with PIL, one image at a time."""
  import math  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
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

  return best_rate(lambda: paths[:1] + paths, lambda p: int(one(p).shape[0] > 0), repeats, seconds)


def child_imagenet(folder: str, cores: str):
  """Measures one `cores` setting in this (pinned) process and prints the rows."""
  allowed = sorted(os.sched_getaffinity(0))
  n = len(allowed) if cores == "all" else int(cores)
  os.sched_setaffinity(0, allowed[:n])  # before TF starts its threads: they inherit it
  threads = n if cores != "all" else None
  from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if cores != "all":
    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)
  mesh = make_mesh(jax.local_devices()[:1])
  data = streamed.load(f"imagefolder:{folder}", mesh=mesh, threads=threads,
                                num_parallel_calls=n if cores != "all" else -1)
  b, reps, secs = _BATCH.value, _REPEATS.value, _SECONDS.value
  epoch = iter(range(1 << 30))
  rows = {}
  rows["train augmentation (host batches)"] = best_rate(
      lambda: data.host_train_batches(seed=0, epoch=next(epoch), batch_size=b),
      lambda x: len(x["label"]), reps, secs)
  rows["train augmentation (to device)"] = best_rate(
      lambda: data.train_batches(seed=0, epoch=next(epoch), batch_size=b),
      lambda x: jax.block_until_ready(x)["label"].shape[0], reps, secs)
  rows["eval: resize 256, centre crop 224"] = best_rate(
      lambda: data.host_eval_batches(batch_size=b), lambda x: int(x["mask"].sum()), reps, secs)
  for name, ds in _stage_datasets(data, tf, image_ops, threads).items():
    rows[name] = best_rate(lambda ds=ds: ds, lambda x: int(x.shape[0]), reps, secs)
  if n == 1:
    files = data._source.folder.train  # pylint: disable=protected-access
    paths = [files.path(i) for i in range(len(files))]
    rows["PIL, whole image decoded (torchvision)"] = _pil_rate(paths, 224, False, secs, reps)
    rows["PIL with draft (DCT-scaled) decoding"] = _pil_rate(paths, 224, True, secs, reps)
  for name, (wall, cpu) in rows.items():
    print(f"  cores={cores:>3}  {name:42s} {wall:8,.0f} images/s  {cpu:6,.0f} per CPU-second",
          flush=True)


def main_imagenet():
  folder = _FOLDER.value
  if not folder:
    h, w = (int(v) for v in _IMAGE_SHAPE.value)
    folder = os.path.join(tempfile.gettempdir(),
                          f"jointrd_throughput_{_IMAGES.value}_{h}x{w}")
    per_class = max(1, _IMAGES.value // 8)
    synthetic_folder.ensure_image_folder(
        folder, num_classes=8, train_per_class=per_class, val_per_class=max(1, per_class // 3),
        seed=0, height_range=(h, h), width_range=(w, w))
  with open("/proc/cpuinfo") as f:
    model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                 "unknown CPU")
  print(f"imagenet pipeline on {folder}: batch {_BATCH.value}, 224x224 output; "
        f"{model}, {len(os.sched_getaffinity(0))} cores; best of {_REPEATS.value} passes; "
        f"load average {open('/proc/loadavg').read().split()[0]}")
  for cores in _CORES.value:
    argv = [sys.executable, "-m", "experiments.data_throughput", "--pipeline=imagenet",
            f"--folder={folder}", f"--cores={cores}", "--_child",
            f"--batch={_BATCH.value}", f"--repeats={_REPEATS.value}",
            f"--seconds={_SECONDS.value}"]
    if subprocess.run(argv, check=False, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).returncode:
      raise UserError(f"the measurement with --cores={cores} failed (see above).")


_CHILD = flags.DEFINE_bool("_child", False, "(internal: the measuring child process)")


def main(argv):
  del argv
  try:
    if _PIPELINE.value == "in_memory":
      main_in_memory()
    elif _CHILD.value:
      child_imagenet(_FOLDER.value, _CORES.value[0])
    else:
      main_imagenet()
  except UserError as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  app.run(main)
