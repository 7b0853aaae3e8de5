"""python -m experiments.main --config=configs/kd_logits.py --workdir=runs/kd_logits

KD(logits): Hinton distillation from a frozen ResNet teacher into the plain CNN.
Loss: 0.1 CE + 0.9 * 4^2 * KL(teacher || student) at temperature 4.
Smoke run (tiny network, synthetic data, seconds): --config=configs/kd_logits.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits"
  return c
