"""python -m experiments.main --config=configs/plain_repvgg.py --workdir=runs/plain_repvgg

Plain CNN with RepVGG-style convs (Ding et al. 2021), from scratch. Loss: CE.
Each 3x3 conv of the student trains as 3x3 conv + BN, 1x1 conv + BN and BN(x) (where shapes
agree), summed; export folds them into one biased 3x3 conv (docs/method.md).
Smoke run (tiny network, synthetic data, seconds): --config=configs/plain_repvgg.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain_repvgg"
  return c
