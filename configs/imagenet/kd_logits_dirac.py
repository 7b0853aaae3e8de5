"""python -m experiments.main --config=configs/imagenet/kd_logits_dirac.py --workdir=runs/in_kd_logits_dirac \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
KD(logits) + Dirac: Hinton distillation into the plain CNN with Dirac convs.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/kd_logits_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits_dirac"
  return c
