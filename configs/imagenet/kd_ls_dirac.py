"""python -m experiments.main --config=configs/imagenet/kd_ls_dirac.py --workdir=runs/in_kd_ls_dirac \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
KD with logit standardisation (Sun et al., CVPR 2024) into the plain Dirac student.
ImageNet: CE weight 1 (the reference's ResNet-34 -> ResNet-18 recipe).
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/kd_ls_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_ls_dirac"
  c.loss.ce.weight = 1.0
  return c
