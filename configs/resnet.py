"""python -m experiments.main --config=configs/resnet.py --workdir=runs/resnet

The ResNet baseline (shortcuts everywhere): how every teacher is trained. Loss: CE.
Smoke run (tiny network, synthetic data, seconds): --config=configs/resnet.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "resnet"
  return c
