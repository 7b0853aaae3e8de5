"""python -m experiments.main --config=configs/imagenet/kd_logits_repvgg.py --workdir=runs/in_kd_logits_repvgg \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
KD(logits) + RepVGG: Hinton distillation into the plain CNN with RepVGG-style 3x3 convs
(3x3 conv + BN, 1x1 conv + BN, BN(x), summed; folded into one 3x3 conv for export).
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/kd_logits_repvgg.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits_repvgg"
  return c
