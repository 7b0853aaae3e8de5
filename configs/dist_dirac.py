"""python -m experiments.main --config=configs/dist_dirac.py --workdir=runs/dist_dirac

DIST (Huang et al., NeurIPS 2022) into the plain Dirac student.
Loss: CE(z_S, y) + 2 tau^2 (inter + intra), 1 - Pearson correlation of softmax(z/tau) over
the classes per example and per class over groups of 64 images (the reference's one-GPU
batch: 2 groups of the batch of 128), tau 4 (the reference's CIFAR recipe; docs/method.md
§10). The smoke run's batch of 32 is one group.
With no --config.teacher.checkpoint the ResNet teacher is trained first into WORKDIR/teacher.
Smoke run (tiny network, synthetic data, seconds): --config=configs/dist_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dist_dirac"
  return c
