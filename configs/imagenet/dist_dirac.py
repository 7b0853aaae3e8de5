"""python -m experiments.main --config=configs/imagenet/dist_dirac.py --workdir=runs/in_dist_dirac \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
DIST (Huang et al., NeurIPS 2022) into the plain Dirac student.
ImageNet: tau 1 and the intra-class term over groups of 32 images, the reference's per-GPU
batch (its ImageNet recipe).
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/dist_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dist_dirac"
  c.loss.dist.tau = 1.0
  c.loss.dist.intra_group = 32
  return c
