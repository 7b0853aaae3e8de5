"""TFDS `imagenet2012` as deterministic streams of encoded JPEGs, per process.

ImageNet is never downloaded: TFDS needs the manual download, so a data_dir without a
prepared imagenet2012 stops at once with one line saying how to prepare it.

Why TFRecords through `builder.as_dataset`, not `tfds.data_source` (ArrayRecord random
access): `tfds build imagenet2012` writes TFRecords unless told otherwise, which is what
existing prepared copies are; and reading ArrayRecords inside tf.data would go through
Python (`py_function`, the GIL) per image. With TFRecords there is no random access by
index, so the imagefolder design (one global permutation) is not available, and:

- process p of P reads only its own part of the train split:
  `tfds.split_for_jax_process('train', drop_remainder=True)`, an even, disjoint split
  of N // P examples each (the N % P remainder is never read);
- each epoch shuffles that part deterministically from (seed, epoch): the shard files'
  order (TFDS `ReadConfig.shuffle_seed`), a deterministic interleave of 16 files, then
  a seeded shuffle buffer (`shuffle_buffer` encoded images, ~110 KB each). The seeds
  are tf.data op seeds; the order also assumes TF's global seed is never set
  (tf.random.set_seed), which this project never does;
- each epoch has (N // P) // (B / P) steps; the example at position q of process p's
  stream lands in row p*B/P + q % (B/P) of global batch q // (B/P), and its
  augmentation is keyed by (seed, epoch, that global position);
- resuming at step s skips s*B/P encoded examples of the shuffled stream before
  decoding (they are read, not decoded), so the remaining batches are exactly those of
  the uninterrupted epoch.

So the batches are deterministic per (seed, epoch, process count) but, unlike
imagefolder's, DEPEND ON THE PROCESS COUNT. Evaluation reads
`split_for_jax_process('validation')` in file order, padded with masked examples to the
same number of batches on every process: every validation image counts exactly once.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from jointrd_jax import tensorflow_support
from jointrd_jax.errors import UserError

NAME = "imagenet2012"
TRAIN, EVAL = "train", "validation"


def _tf():
  """TensorFlow, GPUs hidden (importing image_ops hides them before TF uses a device)."""
  from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
  return image_ops.tf


def prepare_hint(data_dir: str) -> str:
  target = data_dir or "DATA_DIR"
  return ("ImageNet needs a manual download: get ILSVRC2012_img_train.tar and "
          "ILSVRC2012_img_val.tar from https://image-net.org (registration needed), put "
          f"them in a folder MANUAL and run `tfds build imagenet2012 --manual_dir=MANUAL "
          f"--data_dir={target}` (about 150 GB, hours), then pass "
          f"--config.data_dir={target}; or use imagefolder:PATH with the extracted images")


def _tfds():
  return tensorflow_support.import_tfds()


@dataclasses.dataclass(eq=False)
class Imagenet2012:
  builder: object = dataclasses.field(repr=False)
  where: str
  num_train: int
  num_eval: int
  class_names: tuple = dataclasses.field(repr=False)


def open_builder(data_dir: str = "") -> Imagenet2012:
  """The prepared builder, or a one-line UserError saying how to prepare it."""
  tfds = _tfds()
  builder = tfds.builder(NAME, data_dir=data_dir or None)
  where = data_dir or str(builder.data_dir_root)
  if not builder.is_prepared():
    raise UserError(f"{NAME} is not prepared in {where} (it is never downloaded); "
                    f"{prepare_hint(data_dir)}.")
  splits = builder.info.splits
  missing = [s for s in (TRAIN, EVAL) if s not in splits]
  if missing:
    raise UserError(f"{NAME} in {where} has no {' or '.join(missing)} split (prepared "
                    f"without its tar file?); {prepare_hint(data_dir)}.")
  return Imagenet2012(builder=builder, where=where, num_train=splits[TRAIN].num_examples,
                      num_eval=splits[EVAL].num_examples,
                      class_names=tuple(builder.info.features["label"].names))


def local_train_count(num_train: int, process_count: int) -> int:
  return num_train // process_count


def _seed(seed: int, epoch: int, what: int) -> int:
  return int(np.random.SeedSequence([seed, epoch, what]).generate_state(1)[0])


def _read(data: Imagenet2012, split, *, shuffle_seed: int | None, cycle_length: int):
  tf = _tf()
  tfds = _tfds()
  options = tf.data.Options()
  options.deterministic = True
  read_config = tfds.ReadConfig(
      shuffle_seed=shuffle_seed, interleave_cycle_length=cycle_length,
      interleave_block_length=1, try_autocache=False, options=options)
  ds = data.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                               read_config=read_config,
                               decoders={"image": tfds.decode.SkipDecoding()})
  return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))


def train_elements(data: Imagenet2012, *, seed: int, epoch: int, batch_size: int,
                   start_step: int, rows: tuple, process_index: int, process_count: int,
                   shuffle_buffer: int = 8192, cycle_length: int = 16):
  """Process `process_index`'s examples of the epoch from `start_step` on.

  A tf.data.Dataset of {'source': encoded image, 'label': int32, 'key': int64 global
  position}; `rows` = (lo, hi), the process's rows of each global batch.
  """
  tf = _tf()
  tfds = _tfds()
  lo, hi = rows
  local = hi - lo
  steps = local_train_count(data.num_train, process_count) // local
  split = tfds.split_for_jax_process(TRAIN, process_index=process_index,
                                     process_count=process_count, drop_remainder=True)
  ds = _read(data, split, shuffle_seed=_seed(seed, epoch, 1), cycle_length=cycle_length)
  ds = ds.shuffle(shuffle_buffer, seed=_seed(seed, epoch, 2), reshuffle_each_iteration=False)
  ds = ds.take(steps * local).enumerate().skip(start_step * local)

  def element(q, pair):
    position = q // local * batch_size + lo + q % local
    return {"source": pair[0], "label": pair[1], "key": position}

  return ds.map(element), steps


def eval_elements(data: Imagenet2012, *, batch_size: int, rows: tuple, process_index: int,
                  process_count: int, cycle_length: int = 16):
  """Process `process_index`'s part of the validation split, padded: (dataset, batches).

  Elements {'source', 'label', 'mask'}; padding has source b'' and mask 0.
  """
  tf = _tf()
  tfds = _tfds()
  lo, hi = rows
  local = hi - lo
  most = math.ceil(data.num_eval / process_count)  # the largest process part
  batches = max(1, math.ceil(most / local))
  split = tfds.split_for_jax_process(EVAL, process_index=process_index,
                                     process_count=process_count, drop_remainder=False)
  mine = data.num_eval // process_count + (process_index < data.num_eval % process_count)
  ds = _read(data, split, shuffle_seed=None, cycle_length=cycle_length).take(mine)
  ds = ds.map(lambda image, label: {"source": image, "label": label,
                                    "mask": tf.constant(1.0, tf.float32)})
  pad = tf.data.Dataset.from_tensors({"source": tf.constant(b""),
                                      "label": tf.constant(0, tf.int32),
                                      "mask": tf.constant(0.0, tf.float32)}).repeat()
  return ds.concatenate(pad).take(batches * local), batches


class TfdsSource:
  """What `streamed` reads of imagenet2012: per-process streams of encoded JPEGs."""

  def __init__(self, data: Imagenet2012, where: str):
    self.data, self.where = data, where

  def contents(self, source):
    return source  # already the encoded bytes

  def steps(self, batch_size: int, process_count: int) -> int:
    local = batch_size // process_count
    return local_train_count(self.data.num_train, process_count) // local

  def train_elements(self, **kwargs):
    ds, _ = train_elements(self.data, **kwargs)
    return ds, lambda a, b: []

  def eval_elements(self, **kwargs):
    ds, _ = eval_elements(self.data, **kwargs)
    return ds, lambda a, b: []

  def decode_error(self, split: str, paths: list, error) -> UserError:
    del paths
    from jointrd_jax.datasets import image_ops  # pylint: disable=g-import-not-at-top
    return UserError(f"{self.where}: decoding a {split} image failed: "
                     f"{image_ops.tf_message(error)}; the prepared TFRecords in "
                     f"{self.data.where} may be damaged: rebuild them with `tfds build "
                     "imagenet2012 --manual_dir=MANUAL --data_dir=DATA_DIR`.")
