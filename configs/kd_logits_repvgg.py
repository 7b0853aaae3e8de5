"""python -m experiments.main --config=configs/kd_logits_repvgg.py --workdir=runs/kd_logits_repvgg

KD(logits) + RepVGG: Hinton distillation into the plain CNN with RepVGG-style convs (3x3
conv + BN, 1x1 conv + BN, BN(x), summed; folded into one 3x3 conv for export).
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/kd_logits_repvgg.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits_repvgg"
  return c
