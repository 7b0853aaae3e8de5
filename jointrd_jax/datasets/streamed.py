"""Streamed input for datasets that do not fit in device memory: ImageNet.

    data = streamed.load('imagefolder:PATH' | 'imagenet2012' | 'synthetic', mesh=mesh)
    for batch in data.train_batches(seed=0, epoch=e, batch_size=1024, start_step=s): ...

Images are read and augmented on the host by tf.data workers (TensorFlow imported
lazily, GPUs hidden from it) and reach the devices as global jax.Arrays split over the
mesh's `data` axis: 'image' uint8 [B, H, W, 3] (the trainer normalises on device with
`data.mean`, `data.std`), 'label' int32 [B], and for eval 'mask' float32 [B].
Transforms: `image_ops` (torchvision's RandomResizedCrop + flip for training;
Resize(256) + CenterCrop(224) for evaluation), with torchvision's pixels: JPEGs decoded
as PIL decodes them, PIL's antialiased bilinear resize (`train_resize='fast'`: bilinear
without antialiasing for training, faster).

Order and sharding (`imagefolder:` and `synthetic`):
- epoch e of seed s uses ONE global permutation of the N training examples,
  perm = np.random.default_rng([s, e]).permutation(N); global batch b is
  perm[b*B:(b+1)*B], and there are N // B batches (the remainder dropped, a different
  one each epoch). A process reads only its own rows of each global batch (the rows its
  devices hold: [p*B/P, (p+1)*B/P) on the usual mesh), and an example's crop and flip are
  keyed by (s, e, example id) with stateless ops. A batch is therefore bit-identical
  whatever the number of processes, devices and tf.data threads.
- `start_step=k` continues an epoch at global batch k, exactly as if it had not been
  interrupted, without reading the files of the skipped batches. The iterator's whole
  state is (epoch, step), which the trainer already stores in its checkpoints.
- `imagenet2012` (TFRecords, no random access): see `imagenet_tfds`; deterministic per
  (seed, epoch) and resumable, but the order depends on the number of processes.

Evaluation: every eval image exactly once, in a fixed order, in global batches padded
with mask-0 rows (imagefolder: global row r of batch b is example b*B + r).

Corrupt or unreadable images are REFUSED when met, with the file named (a `UserError`
raised by the batch iterator), not skipped: skipping at decode time would change which
examples form every later batch, and with it the determinism and exact resumption
above. Listing the folder does not open files; a bad file stops the run at the batch
that contains it.

Host memory is bounded whatever the dataset size: the file lists are compact numpy
arrays, a few images are in flight per worker thread, `prefetch` host batches and
`device_prefetch` device batches are buffered, nothing decoded is cached (imagenet2012
adds its shuffle buffer of encoded images).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import jax
from jax.sharding import Mesh
import numpy as np

from jointrd_jax.datasets import imagefolder, sources
from jointrd_jax.datasets.device_prefetch import DevicePrefetcher, local_rows
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import check_batch_size

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow
RESIZES = ("antialias", "fast")  # = image_ops.RESIZES, without importing TensorFlow


def _tf():
  """TensorFlow, GPUs hidden (importing image_ops hides them before TF uses a device)."""
  # image_ops imports TensorFlow (heavy, optional): only when batches are made
  from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
  return image_ops.tf


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
  image_size: int = 224
  eval_resize: int = 256
  num_parallel_calls: int = AUTOTUNE  # images decoded at once per process
  threads: int | None = None  # tf.data private threadpool size; None: TF's default
  prefetch: int = 2  # host batches buffered by tf.data
  device_prefetch: int = 2  # device batches kept ready by a background thread
  train_resize: str = "antialias"  # image_ops.RESIZES: 'antialias' (torchvision's) | 'fast'
  shuffle_buffer: int = 8192  # imagenet2012 only


@dataclasses.dataclass(eq=False)
class StreamedData:
  """A streamed dataset. Build it with `load`."""
  name: str
  num_classes: int
  class_names: tuple = dataclasses.field(repr=False)
  image_shape: tuple  # (H, W, 3) of the batches
  mean: np.ndarray  # float32 (3,), [0, 1] pixel scale
  std: np.ndarray
  num_train: int
  num_eval: int
  eval_split: str  # 'val' (imagefolder, synthetic) or 'validation' (imagenet2012)
  mesh: Mesh = dataclasses.field(repr=False)
  options: PipelineOptions = dataclasses.field(repr=False)
  _source: Any = dataclasses.field(repr=False)

  # ------------------------------------------------------------------ training

  def steps_per_epoch(self, batch_size: int) -> int:
    """Global batches per epoch: N // B (imagenet2012: (N // P) // (B / P))."""
    return self._steps(batch_size, jax.process_count())

  def _steps(self, batch_size: int, process_count: int) -> int:
    if batch_size <= 0:
      raise UserError(f"batch size {batch_size} must be positive.")
    if batch_size > self.num_train:
      raise UserError(f"batch size {batch_size} is larger than the {self.num_train} "
                      "training examples; use a smaller batch size.")
    return self._source.steps(batch_size, process_count)

  def train_order(self, *, seed: int, epoch: int, batch_size: int) -> np.ndarray:
    """Example ids of each global batch of the epoch, int64 [steps, B] (imagefolder)."""
    if not isinstance(self._source, imagefolder.FolderSource):
      raise ValueError(f"{self.name} is read as a stream: no global order to show.")
    return self._source.order(seed, epoch, batch_size)

  def train_batches(self, *, seed: int, epoch: int, batch_size: int, start_step: int = 0,
                    what: str = "config.batch_size") -> DevicePrefetcher:
    """Global batches {'image': uint8 [B,H,W,3], 'label': int32 [B]} of one epoch,
    from `start_step` on; `batch_size` is global."""
    check_batch_size(batch_size, self.mesh, what)
    rows = local_rows(self.mesh, batch_size)
    host = self.host_train_batches(seed=seed, epoch=epoch, batch_size=batch_size,
                                   start_step=start_step, rows=rows)
    return DevicePrefetcher(host, self.mesh, batch_size, self.options.device_prefetch)

  def host_train_batches(self, *, seed: int, epoch: int, batch_size: int, start_step: int = 0,
                         rows: tuple | None = None, process_index: int | None = None,
                         process_count: int | None = None,
                         preprocess: str = "train") -> Iterator[dict]:
    """This process's rows of each training batch, as numpy (what `train_batches`
    puts on the devices). `process_index`/`process_count` simulate another process
    (rows default to [p*B/P, (p+1)*B/P)). `preprocess='eval'`: each image resized and
    centre-cropped as evaluation does, instead of the training augmentation (the int8
    export's calibration images)."""
    p, count, rows = _layout(batch_size, rows, process_index, process_count)
    seed, epoch = _non_negative(seed, "seed"), _non_negative(epoch, "epoch")
    steps = self._steps(batch_size, count)
    if not 0 <= start_step <= steps:
      raise ValueError(f"start_step={start_step} is outside [0, {steps}].")
    elements, names = self._source.train_elements(
        seed=seed, epoch=epoch, batch_size=batch_size, start_step=start_step, rows=rows,
        process_index=p, process_count=count, shuffle_buffer=self.options.shuffle_buffer)
    # image_ops imports TensorFlow (heavy, optional): only when batches are made
    from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
    o = self.options

    def transform(x):
      if preprocess == "eval":
        image = image_ops.eval_image(self._source.contents(x["source"]), o.image_size,
                                     o.eval_resize)
        return {"image": image, "label": x["label"]}
      key = image_ops.example_key(seed, epoch, x["key"])
      image = image_ops.train_image(self._source.contents(x["source"]), key, o.image_size,
                                    resize=o.train_resize)
      return {"image": image, "label": x["label"]}

    return _host_batches(elements, transform, rows[1] - rows[0], o, names, self._source,
                         "train")

  # ---------------------------------------------------------------- evaluation

  def eval_batches(self, *, batch_size: int, what: str = "config.eval_batch_size"
                   ) -> DevicePrefetcher:
    """The whole eval split once: {'image', 'label', 'mask' float32 [B]}, padded."""
    check_batch_size(batch_size, self.mesh, what)
    host = self.host_eval_batches(batch_size=batch_size, rows=local_rows(self.mesh, batch_size))
    return DevicePrefetcher(host, self.mesh, batch_size, self.options.device_prefetch)

  def host_eval_batches(self, *, batch_size: int, rows: tuple | None = None,
                        process_index: int | None = None,
                        process_count: int | None = None) -> Iterator[dict]:
    p, count, rows = _layout(batch_size, rows, process_index, process_count)
    if batch_size <= 0:
      raise UserError(f"eval batch size {batch_size} must be positive.")
    elements, names = self._source.eval_elements(batch_size=batch_size, rows=rows,
                                                 process_index=p, process_count=count)
    # image_ops imports TensorFlow (heavy, optional): only when batches are made
    from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
    tf = _tf()
    o = self.options
    blank = tf.zeros([o.image_size, o.image_size, 3], tf.uint8)

    def transform(x):
      image = tf.cond(
          x["mask"] > 0,
          lambda: image_ops.eval_image(self._source.contents(x["source"]), o.image_size,
                                       o.eval_resize),
          lambda: blank)
      return {"image": image, "label": x["label"], "mask": x["mask"]}

    return _host_batches(elements, transform, rows[1] - rows[0], o, names, self._source,
                         "eval")


# ------------------------------------------------------------------ the pipeline


def _non_negative(v, what: str) -> int:
  v = int(v)
  if not 0 <= v < 2**63:
    raise UserError(f"{what}={v} must be a non-negative integer (below 2**63).")
  return v


def _layout(batch_size: int, rows, process_index, process_count):
  """(process index, process count, (lo, hi) rows of each global batch)."""
  p = jax.process_index() if process_index is None else int(process_index)
  count = jax.process_count() if process_count is None else int(process_count)
  if batch_size % count:
    raise UserError(f"batch size {batch_size} does not divide over {count} processes.")
  local = batch_size // count
  return p, count, tuple(rows) if rows is not None else (p * local, (p + 1) * local)


def _host_batches(elements, transform, local: int, o: PipelineOptions, names, source,
                  split: str):
  """map(transform) on `threads` workers, in order; batches of `local`, as numpy."""
  tf = _tf()
  ds = elements.map(transform, num_parallel_calls=o.num_parallel_calls, deterministic=True)
  ds = ds.batch(local, drop_remainder=True).prefetch(o.prefetch)
  options = tf.data.Options()
  options.deterministic = True
  options.threading.max_intra_op_parallelism = 1  # parallel over images, not inside ops
  if o.threads:
    options.threading.private_threadpool_size = int(o.threads)
  ds = ds.with_options(options)

  def generate():
    it = iter(ds)
    k = 0
    while True:
      try:
        batch = next(it)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        raise source.decode_error(split, names(k * local, (k + 1) * local), e) from None
      yield {key: value.numpy() for key, value in batch.items()}
      k += 1

  return generate()


# ------------------------------------------------------------------------- load


def load(dataset: str, *, mesh: Mesh, data_dir: str = "", download: bool = False,
         image_size: int = 224, eval_resize: int = 256, num_parallel_calls: int = AUTOTUNE,
         threads: int | None = None, prefetch: int = 2, device_prefetch: int = 2,
         train_resize: str = "antialias", shuffle_buffer: int = 8192,
         settings=None) -> StreamedData:
  """'imagefolder:PATH', 'imagenet2012' (TFDS, prepared in `data_dir`) or 'synthetic'
  (`sources`); `settings`: the source's own (`sources.Dataset.settings`: its `Settings`,
  or a mapping such as the config section `synthetic`).

  Every check of the data happens here (one-line `UserError`s), before training.
  'synthetic' generates a small ImageNet-like image folder once into `data_dir` (default:
  `caches.generated(...)`, reused by later runs) and streams it. `download` is accepted for
  symmetry with `datasets.load`: ImageNet is never downloaded (it needs a manual download).
  """
  del download
  if int(image_size) <= 0 or int(eval_resize) < int(image_size):
    raise UserError(f"image_size={image_size} must be positive and eval_resize="
                    f"{eval_resize} at least as large.")
  if int(num_parallel_calls) != AUTOTUNE and int(num_parallel_calls) <= 0:
    raise UserError(f"num_parallel_calls={num_parallel_calls} must be positive or "
                    f"{AUTOTUNE} (autotune).")
  if threads is not None and int(threads) <= 0:
    raise UserError(f"threads={threads} must be positive, or None for TF's default.")
  if train_resize not in RESIZES:
    raise UserError(f"training resize {train_resize!r} (streamed.resize) must be 'antialias' "
                    "(torchvision's antialiased bilinear) or 'fast' (bilinear without "
                    "antialiasing).")
  options = PipelineOptions(
      image_size=int(image_size), eval_resize=int(eval_resize),
      num_parallel_calls=int(num_parallel_calls), threads=threads, prefetch=int(prefetch),
      device_prefetch=int(device_prefetch), train_resize=str(train_resize),
      shuffle_buffer=int(shuffle_buffer))
  ds = sources.get(dataset)
  stream = ds.open_stream(data_dir=data_dir, settings=settings)
  mean, std = ds.normalization(streamed=True)
  return StreamedData(
      name=ds.name, num_classes=len(stream.class_names), class_names=stream.class_names,
      image_shape=(options.image_size, options.image_size, 3),
      mean=np.asarray(mean, np.float32), std=np.asarray(std, np.float32),
      num_train=int(stream.num_train), num_eval=int(stream.num_eval),
      eval_split=stream.eval_split, mesh=mesh, options=options, _source=stream.reader)
