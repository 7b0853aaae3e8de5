"""Every former name that still works, in one place, each with its deprecation note.

Only what a user's saved work or code needs is kept:
- workdirs and exports written before conv kinds had their own name: a network description
  whose `dirac` field is the conv kind (`network_fields`), a config whose conv kind is
  `model.dirac` (`conv_of_model`);
- the config key `model.dirac` (`conv_of_model`);
- the Library API's former module paths (`MOVED_MODULES`: `from jointrd_jax import fold`)
  and `models.build`'s former keyword `dirac=` (`renamed_keywords`).
Each warns (`DeprecationWarning`) where a user's code calls it; saved files are read
silently.
"""
import functools
import importlib
import warnings
from typing import Mapping

from jointrd_jax.errors import UserError

# former module -> where it lives now (deprecated: import it from there).
MOVED_MODULES = {
    "batchnorm": "jointrd_jax.models.batchnorm",  # deprecated: jointrd_jax.models.batchnorm
    "dirac": "jointrd_jax.models.dirac",  # deprecated: jointrd_jax.models.dirac
    "fold": "jointrd_jax.models.fold",  # deprecated: jointrd_jax.models.fold
    "losses": "jointrd_jax.methods.losses",  # deprecated: jointrd_jax.methods.losses
    "steps": "jointrd_jax.training.steps",  # deprecated: jointrd_jax.training.steps
    "train": "jointrd_jax.training.train",  # deprecated: jointrd_jax.training.train
}


def moved_module(name: str):
  """The module `jointrd_jax.<name>` moved to, with a DeprecationWarning; AttributeError for
  a name that never was a module of the package (the package's `__getattr__`)."""
  if name not in MOVED_MODULES:
    raise AttributeError(f"module 'jointrd_jax' has no attribute {name!r}")
  warnings.warn(f"jointrd_jax.{name} moved to {MOVED_MODULES[name]}; import it from there.",
                DeprecationWarning, stacklevel=3)
  return importlib.import_module(MOVED_MODULES[name])


def renamed_keywords(**renamed):
  """A decorator: each former keyword (`former="new"`) still works, with a
  DeprecationWarning; giving both with different values is an error."""

  def decorate(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      for former, new in renamed.items():
        if former not in kwargs:
          continue
        value = kwargs.pop(former)
        warnings.warn(f"{fn.__name__}({former}=) is deprecated; write {new}= (same meaning).",
                      DeprecationWarning, stacklevel=2)
        if kwargs.get(new) is not None and value is not None and kwargs[new] != value:
          raise UserError(f"{new} {kwargs[new]!r} and {former} {value!r} disagree; "
                          f"give {new} only.")
        if kwargs.get(new) is None:
          kwargs[new] = value
      return fn(*args, **kwargs)

    return wrapper

  return decorate


def network_fields(desc: Mapping) -> dict:
  """A network description's fields; a description written before conv kinds had their own
  name has the conv kind in `dirac` (deprecated: read from old checkpoints and exports)."""
  kw = dict(desc)
  if "dirac" in kw:
    kw.setdefault("conv", kw.pop("dirac"))
  return kw


def conv_of_model(model, what: str = "model") -> str:
  """The conv kind a config's `model` section (a dict, or a ConfigDict or other object with
  attributes) sets: `conv`, or its former key `dirac` (deprecated: write model.conv); ''
  when neither is set. Both set and different is an error."""
  get = model.get if isinstance(model, Mapping) else lambda k: getattr(model, k, "")
  conv, dirac = get("conv") or "", get("dirac") or ""
  if conv and dirac and conv != dirac:
    raise UserError(f"{what}.conv {conv!r} and {what}.dirac {dirac!r} disagree; "
                    "set conv only.")
  return conv or dirac
