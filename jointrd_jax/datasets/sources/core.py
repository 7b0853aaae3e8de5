"""What a data source is, and `get(spec)`: the one place a `--config.dataset=` spelling is
parsed.

A source is one module of this package that registers a `Source` (`register`): its name
(`cifar100`; `npz` spelled `npz:PATH`), whether it is held in memory or streamed, its own
typed settings (`Settings`, read from the config section `settings_key`), its loader
(`load_arrays` for in-memory data, `open_stream` for streamed data), its classes and class
names, its normalisation, and how to tell that its data is present (`check_present`, one
line that says how to get it). `get('npz:/data/x.npz')` returns a `Dataset`: the source and
its path, which answers every question about the data (the trainer's setup, class names,
export checks and calibration, the model card, the benchmarks).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from jointrd_jax.datasets import arrays
from jointrd_jax.errors import UserError
from jointrd_jax.registry import Registry

MEMORY, STREAMED, BY_ARCH = "memory", "streamed", "by arch"  # `Source.storage`
# torchvision's ImageNet normalisation: every streamed (ImageNet-style) source's.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class NoSettings:
  """The settings of a source that has none of its own."""


@dataclasses.dataclass(frozen=True)
class Stream:
  """A streamed source, opened: the reader `datasets.streamed` batches (an
  `imagefolder.FolderSource` or `imagenet_tfds.TfdsSource`) and what it holds."""
  reader: Any
  class_names: tuple
  num_train: int
  num_eval: int
  eval_split: str  # 'val' (image folders) or 'validation' (imagenet2012)


class Source:
  """A data source; a module of this package subclasses it and `register`s an instance."""
  name = ""  # the registered name: what `--config.dataset=` starts with
  placeholder = ""  # 'PATH' / 'DIR': spelled NAME:PLACEHOLDER; '' for a plain name
  storage = MEMORY  # MEMORY (arrays on the devices), STREAMED, or BY_ARCH (the arch's kind)
  tfds = False  # read through TFDS: reads --config.data_dir
  settings_key = ""  # the config section of its own settings (e.g. 'synthetic')
  Settings = NoSettings  # a frozen dataclass of those settings, with their defaults
  mean = std = None  # normalisation constants; None: the training images' statistics
  labels_from_data = False  # the class count is read off the labels (checked, `in_memory`)
  hub = ""  # the Hugging Face dataset id of the same data (the model card's)

  @property
  def spelling(self) -> str:
    return f"{self.name}:{self.placeholder}" if self.placeholder else self.name

  def streamed(self, family: str | None) -> bool:
    """Whether it is streamed for an arch of `family` ('cifar', 'imagenet', None)."""
    return self.storage == STREAMED

  def reads_data_dir(self, streamed: bool) -> bool:
    return self.tfds

  def normalization(self, streamed: bool):
    """(mean, std) constants, or None when they are the training images' statistics."""
    return None if self.mean is None else (self.mean, self.std)

  def check_present(self, path: str, *, data_dir: str, download: bool) -> None:
    """A UserError naming how to get the data, when it is known to be absent (cheap)."""

  def class_names(self, path: str, spec: str) -> tuple[tuple | None, str]:
    """(names, where they come from), or (None, why there are none: 'generic: ...')."""
    return None, f"generic: dataset {spec!r} has no class names"

  def load_arrays(self, path: str, settings, *, data_dir: str, download: bool):
    """The data as `arrays.Arrays` (in-memory sources)."""
    raise UserError(f"unknown dataset {self.spelling!r} for in-memory data; valid choices: "
                    f"{choices(MEMORY)}.")

  def open_stream(self, path: str, settings, *, data_dir: str) -> Stream:
    """The data as a `Stream` (streamed sources)."""
    raise UserError(f"unknown streamed dataset {self.spelling!r}; valid choices: "
                    f"{choices(STREAMED)}.")


SOURCES = Registry("dataset", spell=lambda name, source: source.spelling)


def register(source: Source) -> Source:
  return SOURCES.register(source.name, source)


def choices(storage: str) -> str:
  """The spellings of the sources that can be `storage` (MEMORY or STREAMED)."""
  return ", ".join(s.spelling for s in SOURCES.values() if s.storage in (storage, BY_ARCH))


def make_arrays(name: str, num_classes: int, x_train, y_train, x_test, y_test, mean=None,
                std=None) -> arrays.Arrays:
  """`arrays.Arrays`, int32 labels; mean/std default to the training images' statistics."""
  if mean is None:
    mean, std = arrays.channel_stats(x_train)
  return arrays.Arrays(name, int(num_classes), np.asarray(mean, np.float32),
                       np.asarray(std, np.float32), x_train, np.asarray(y_train, np.int32),
                       x_test, np.asarray(y_test, np.int32))


def generic(num_classes: int) -> tuple:
  return tuple(f"class_{i}" for i in range(int(num_classes)))


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A source and its path: what `get(spec)` parses a `--config.dataset=` spelling into."""
  source: Source
  path: str = ""
  spec: str = ""  # as the user spelled it (stripped)

  @property
  def name(self) -> str:
    """'cifar100', 'npz:/data/x.npz': the source's name, and its path where it has one."""
    return f"{self.source.name}:{self.path}" if self.source.placeholder else self.source.name

  def settings(self, given=None):
    """The source's `Settings` from `given`: None (the defaults), a `Settings`, or a
    mapping (a config section, a saved config.json's) of which its fields are read."""
    kind = self.source.Settings
    if given is None or isinstance(given, kind):
      return kind() if given is None else given
    given = given.to_dict() if hasattr(given, "to_dict") else dict(given)
    fields = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(given) - set(fields))
    if unknown:
      raise UserError(f"{', '.join(unknown)}: not a setting of dataset {self.source.name!r} "
                      f"(its settings: {', '.join(fields) or 'none'}).")
    return kind(**given)

  def settings_of(self, config: Mapping):
    """Its settings from a run's config (a ConfigDict or a saved config.json's dict)."""
    key = self.source.settings_key
    return self.settings(config.get(key) if key else None)

  def streamed(self, family: str | None = None) -> bool:
    return self.source.streamed(family)

  def reads_data_dir(self, streamed: bool) -> bool:
    return self.source.reads_data_dir(streamed)

  def normalization(self, streamed: bool):
    return self.source.normalization(streamed)

  def check_present(self, *, data_dir: str = "", download: bool = True) -> None:
    self.source.check_present(self.path, data_dir=data_dir, download=download)

  def load_arrays(self, *, data_dir: str = "", download: bool = True, settings=None):
    return self.source.load_arrays(self.path, self.settings(settings), data_dir=data_dir,
                                   download=download)

  def open_stream(self, *, data_dir: str = "", settings=None) -> Stream:
    return self.source.open_stream(self.path, self.settings(settings), data_dir=data_dir)

  def class_names(self, num_classes: int) -> tuple[tuple, str]:
    """`(names, where)`: the `num_classes` names of the labels and where they come from (a
    short phrase, recorded in export.json); `class_0`, ... where it has none or their
    count differs from the network's classes."""
    names, where = self.source.class_names(self.path, self.spec or self.name)
    if names is None:
      return generic(num_classes), where
    if len(names) != int(num_classes):
      return generic(num_classes), (f"generic: {where} has {len(names)} names but the network "
                                    f"has {num_classes} classes")
    return tuple(names), where


def get(spec: str) -> Dataset:
  """The dataset of a `--config.dataset=` spelling: 'cifar100', 'npz:PATH', ...; an
  unknown one is a one-line UserError naming the choices."""
  text = str(spec).strip()
  name, sep, path = text.partition(":")
  source = SOURCES.get(name.lower(), None)
  if source is None or bool(sep) != bool(source.placeholder):
    raise UserError(f"unknown dataset {text!r}; choose one of {SOURCES.choices()}.")
  return Dataset(source, path, text)
