"""python -m experiments.main --config=configs/dkd_dirac.py --workdir=runs/dkd_dirac

Decoupled KD (Zhao et al., CVPR 2022) into the plain Dirac student.
Loss: CE(z_S, y) + min((e+1)/W, 1) T^2 (alpha TCKD + beta NCKD), alpha 1, beta 8, T 4
(mdistiller's CIFAR-100 recipe; docs/method.md §10), warm-up W 0.1 of the run (20 of 200
epochs; loss.dkd.warmup_fraction, or loss.dkd.warmup_epochs in epochs). The smoke run keeps
W = 20 epochs.
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/dkd_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dkd_dirac"
  default.keep_smoke_epochs(c, arg, "dkd")
  return c
