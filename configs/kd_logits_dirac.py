"""python -m experiments.main --config=configs/kd_logits_dirac.py --workdir=runs/kd_logits_dirac

KD(logits) + Dirac: Hinton distillation into the plain CNN with Dirac convs.
Smoke run (tiny network, synthetic data, seconds): --config=configs/kd_logits_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits_dirac"
  return c
