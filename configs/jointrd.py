"""python -m experiments.main --config=configs/jointrd.py --workdir=runs/jointrd

JointRD (Residual Distillation): the plain Dirac student's stages 1-3 also feed the frozen
ResNet teacher's later stages (hybrid paths). Loss: 1/4 [m(e) sum_k CE(hybrid_k) + CE(student)].
m(e) decays over 0.3 of the run (60 of 200 epochs; loss.jointrd.decay_fraction, or
loss.jointrd.decay_epochs in epochs); the smoke run keeps 60 epochs.
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/jointrd.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "jointrd"
  default.keep_smoke_epochs(c, arg, "jointrd")
  return c
