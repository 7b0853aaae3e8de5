"""python -m experiments.main --config=configs/plain_dirac.py --workdir=runs/plain_dirac

Plain CNN + Dirac re-parameterisation, from scratch. Loss: CE.
Smoke run (tiny network, synthetic data, seconds): --config=configs/plain_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain_dirac"
  return c
