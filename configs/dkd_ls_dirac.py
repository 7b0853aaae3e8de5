"""python -m experiments.main --config=configs/dkd_ls_dirac.py --workdir=runs/dkd_ls_dirac

Decoupled KD on standardised logits (Sun et al., CVPR 2024, with Zhao et al.'s DKD) into
the plain Dirac student, as the logit-standardisation authors ran it: alpha and beta times
their KD weight 9, base temperature 2.
Loss: CE(z_S, y) + min((e+1)/W, 1) T^2 (alpha TCKD + beta NCKD) on Z(z), Z the per-example
z-score of the logits; alpha 9, beta 72, T 2, W 0.1 of the run (20 of 200 epochs; the smoke
run keeps 20 epochs) (docs/method.md §10).
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/dkd_ls_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dkd_ls_dirac"
  default.keep_smoke_epochs(c, arg, "dkd")
  return c
