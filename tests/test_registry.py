"""jointrd_jax/registry.py: the one registry type, and its users (loss terms, student convs,
presets, data sources) keeping their public names."""
import pytest

from jointrd_jax import methods, models, registry
from jointrd_jax.datasets import sources
from jointrd_jax.errors import UserError
from jointrd_jax.methods import presets, terms
from jointrd_jax.models import convs


def test_register_get_and_the_order_of_the_names():
  r = registry.Registry("fruit")
  assert r.register("pear", 1) == 1 and r.register("apple", 2) == 2
  r.register("fig", 3)
  assert list(r) == ["pear", "apple", "fig"]  # registration order, not sorted
  assert r.get("apple") == 2 and r["fig"] == 3 and "pear" in r and "plum" not in r
  assert r.get("plum", None) is None and r.get("plum", 7) == 7  # dict.get's default form
  with pytest.raises(UserError) as e:
    r.get("plum")
  assert str(e.value) == "unknown fruit 'plum'; choose one of pear, apple, fig."
  with pytest.raises(ValueError, match="fruit 'pear' is registered twice"):
    r.register("pear", 4)
  assert r["pear"] == 1  # the first one stays


def test_items_given_at_construction_and_how_a_choice_is_shown():
  r = registry.Registry("dataset", {"a": "x", "b": "y"},
                        spell=lambda name, item: f"{name}:{item.upper()}")
  assert dict(r) == {"a": "x", "b": "y"} and r.choices() == "a:X, b:Y"
  with pytest.raises(UserError, match=r"^unknown dataset 'c'; choose one of a:X, b:Y\.$"):
    r.get("c")
  with pytest.raises(ValueError, match="registered twice"):
    registry.Registry("fruit", [("a", 1), ("a", 2)])


def test_patched_like_a_dict(monkeypatch):
  r = registry.Registry("fruit", {"pear": 1})
  with monkeypatch.context() as m:
    m.setitem(r, "plum", 2)
    assert r.get("plum") == 2
  assert list(r) == ["pear"]


def test_the_registries_of_the_library_are_this_type_under_their_public_names():
  for reg, what in ((terms.TERMS, "loss term"), (convs.CONVS, "conv"),
                    (presets.METHODS, "method"), (sources.SOURCES, "dataset")):
    assert isinstance(reg, registry.Registry) and reg.what == what
  assert methods.TERMS is terms.TERMS and models.CONVS is convs.CONVS
  assert methods.METHODS is presets.METHODS
  assert terms.get("ce").name == "ce" and convs.get("repvgg").name == "repvgg"
  assert presets.get_spec("jointrd") is methods.METHODS["jointrd"]
  for get, bad, what, names in ((terms.get, "dkdd", "loss term", terms.TERMS),
                                (convs.get, "rep", "conv", convs.CONVS),
                                (presets.get_spec, "resnet51", "method", methods.METHODS)):
    with pytest.raises(UserError) as e:
      get(bad)
    assert str(e.value) == f"unknown {what} {bad!r}; choose one of {', '.join(names)}."
  # A second registration of a built-in name is a bug, refused.
  with pytest.raises(ValueError, match="registered twice"):
    terms.register(terms.TERMS["ce"])
