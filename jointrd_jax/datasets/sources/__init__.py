"""Data sources by name (big_vision style): one module per source, each registering a
`core.Source` (`cifar.py`: cifar100, cifar10; `cifar_python.py`; `npz.py`; `digits.py`;
`imagefolder.py`; `imagenet.py`; `synthetic.py`); `get(spec)` parses a `--config.dataset=`
spelling into a `core.Dataset` that answers every question about the data.

Every module of this package is imported here (in name order: the order of the choices in
messages), so a source registers itself by being a module of the package: adding one is
adding its module plus its test.
"""
import importlib
import pkgutil

from jointrd_jax.datasets.sources.core import (BY_ARCH, IMAGENET_MEAN, IMAGENET_STD, MEMORY,
                                               SOURCES, STREAMED, Dataset, Source, Stream,
                                               get, register)

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
