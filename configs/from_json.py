"""A full run config from JSON: `--config=configs/from_json.py:/abs/path/config.json`.

How `experiments.table12` hands each run its config (it writes `DIR/configs/<run>.json`),
and a way to repeat any finished run exactly: a run's own `WORKDIR/config.json` loads the
same way. The JSON is merged into `configs/default.py`'s config, so every key keeps its type
(tuples stay tuples, `half_precision` stays an optional bool) and `--config.KEY=VALUE`
overrides still work; a key the defaults do not have is refused; a key the JSON lacks keeps
its default. A config.json of an earlier version loads too (its renamed keys are moved).
"""
import json

import ml_collections

from configs import default
from jointrd_jax.training import workdir


def _merge(node: ml_collections.ConfigDict, data: dict, prefix: str) -> None:
  for key, value in data.items():
    if key not in node:
      raise ValueError(f"unknown config key {prefix}{key} in the JSON config")
    current = node[key]
    if isinstance(current, ml_collections.ConfigDict):
      if not isinstance(value, dict):
        raise ValueError(f"config key {prefix}{key} must be an object in the JSON config")
      _merge(current, value, f"{prefix}{key}.")
      continue
    if isinstance(current, tuple) and isinstance(value, list):
      value = tuple(value)
    node[key] = value


def get_config(path: str = ""):
  if not path:
    raise ValueError("usage: --config=configs/from_json.py:/path/to/config.json")
  with open(path) as f:
    data = workdir.migrate(json.load(f))  # keys of earlier versions too
  c = default.get_config()
  _merge(c, data, "")
  return c
