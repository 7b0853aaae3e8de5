"""One registry type for everything chosen by name: loss terms (`methods.terms.TERMS`),
student convolutions (`models.convs.CONVS`), presets (`methods.METHODS`) and data sources
(`datasets.sources.SOURCES`).

    TERMS = Registry("loss term")
    TERMS.register("ce", term)   # a name registered twice is a bug: ValueError
    TERMS.get("ce")              # an unknown name: one-line UserError naming the choices
    list(TERMS)                  # the names, in registration order

A registry is a dict (name -> item, in registration order), so `in`, `items()`,
`registry[name]` and test patches (`monkeypatch.setitem`) work as on any dict.
"""
from __future__ import annotations

from typing import Callable

from jointrd_jax.errors import UserError


class Registry(dict):
  """Items by name, in registration order; `get` refuses an unknown name in one line."""

  def __init__(self, what: str, items=(), *, spell: Callable | None = None):
    """`what`: the kind of item, as the error names it ('loss term'); `spell(name, item)`:
    how a choice is shown in that error (default: its name)."""
    super().__init__()
    self.what = what
    self._spell = spell or (lambda name, item: name)
    for name, item in items.items() if isinstance(items, dict) else items:
      self.register(name, item)

  def register(self, name: str, item):
    """Adds `item` under `name` and returns it; a second item of the same name is refused."""
    if name in self:
      raise ValueError(f"{self.what} {name!r} is registered twice")
    self[name] = item
    return item

  def choices(self) -> str:
    """The choices as the error shows them: 'a, b, c'."""
    return ", ".join(self._spell(name, item) for name, item in self.items())

  def get(self, name, *default):
    """The item of `name`; an unknown name is a `UserError` naming the choices (with a
    `default`, as `dict.get`, that default instead)."""
    if name in self:
      return self[name]
    if default:
      return default[0]
    raise UserError(f"unknown {self.what} {name!r}; choose one of {self.choices()}.")
