"""The config files' recipe keys: `recipe` and the training keys it sets
(`jointrd_jax.training.recipes.RECIPE_KEYS`), each an ml_collections reference computed lazily from
`recipe`, so that a key set explicitly (a `:smoke` variant, the command line) wins whatever
the order. The recipes' values live in `jointrd_jax.training.recipes`."""
import functools

import ml_collections
from ml_collections.config_dict import config_dict

from jointrd_jax.training.recipes import DEFAULT, RECIPE_KEYS, RECIPES

# A reference's lazily computed op (what FieldReference.to_int and the like build).
_OP = config_dict._Op  # pylint: disable=protected-access


def _value(family: str, key: str, _, name: str):
  """`key` of recipe `name` of `family`; None for a name the family lacks (`check`
  refuses it before anything reads the value)."""
  return RECIPES[family].get(name, {}).get(key)


def install(c: ml_collections.ConfigDict, family: str) -> None:
  """`c.recipe` ('jointrd') and each of `RECIPE_KEYS` computed from it, for `family`."""
  if "recipe" not in c:
    c.recipe = ml_collections.FieldReference(DEFAULT)
  ref = c.get_ref("recipe")
  for section, key in RECIPE_KEYS:
    kind = type(RECIPES[family][DEFAULT][key])
    # Built as ml_collections builds its own casts (FieldReference.to_int): a reference of
    # the key's type whose op computes fn(unused, recipe name) whenever it is read.
    op = _OP(functools.partial(_value, family, key), [ref])
    derived = ml_collections.FieldReference(kind(), field_type=kind, op=op)
    (c[section] if section else c)[key] = derived
