"""python -m experiments.main --config=configs/kd_ls_dirac.py --workdir=runs/kd_ls_dirac

KD with logit standardisation (Sun et al., CVPR 2024) into the plain Dirac student.
Loss: 0.1 CE(z_S, y) + 9 t^2 KL(softmax(Z(z_T)/t) || softmax(Z(z_S)/t)), Z the per-example
z-score of the logits, base temperature t 2 (the reference's CIFAR recipe; docs/method.md §10).
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/kd_ls_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_ls_dirac"
  return c
