"""python -m experiments.main --config=configs/jointrd_repvgg.py --workdir=runs/jointrd_repvgg

JointRD with a RepVGG-style student: the student's 3x3 convs train as 3x3 conv + BN, 1x1
conv + BN and BN(x), summed (folded into one 3x3 conv for export); its stages 1-3 also feed
the frozen ResNet teacher's later stages (hybrid paths).
Loss: 1/4 [m(e) sum_k CE(hybrid_k) + CE(student)].
m(e) decays over 0.3 of the run (60 of 200 epochs; loss.jointrd.decay_fraction, or
loss.jointrd.decay_epochs in epochs); the smoke run keeps 60 epochs.
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/jointrd_repvgg.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "jointrd_repvgg"
  default.keep_smoke_epochs(c, arg, "jointrd")
  return c
