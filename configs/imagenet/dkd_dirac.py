"""python -m experiments.main --config=configs/imagenet/dkd_dirac.py --workdir=runs/in_dkd_dirac \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
Decoupled KD (Zhao et al., CVPR 2022) into the plain Dirac student.
ImageNet: beta 0.5, T 1, warm-up 1 epoch (mdistiller's ResNet-34 -> ResNet-18 recipe).
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/dkd_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dkd_dirac"
  c.loss.dkd.beta = 0.5
  c.loss.dkd.temperature = 1.0
  c.loss.dkd.warmup_epochs = 1
  return c
