"""python -m experiments.main --config=configs/plain.py --workdir=runs/plain

Plain CNN from scratch: identity shortcuts removed (the release's plain-CNN). Loss: CE.
Smoke run (tiny network, synthetic data, seconds): --config=configs/plain.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain"
  return c
