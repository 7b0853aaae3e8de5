"""python -m experiments.main --config=configs/jointrd_dkd.py --workdir=runs/jointrd_dkd

JointRD plus a DKD term on the student's logits, plain Dirac student.
Loss: 1/4 [m(e) sum_k CE(z_Hk, y) + CE(z_S, y)] + min((e+1)/W, 1) T^2 (TCKD + 8 NCKD),
T 4 (each term with its own recipe; docs/method.md §10): m(e)'s horizon 0.3 and W 0.1 of
the run (60 and 20 of 200 epochs; the smoke run keeps 60 and 20 epochs).
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/jointrd_dkd.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "jointrd_dkd"
  default.keep_smoke_epochs(c, arg, "jointrd", "dkd")
  return c
