"""python -m experiments.main --config=configs/imagenet/kd_logits.py --workdir=runs/in_kd_logits \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
KD(logits): Hinton distillation from a frozen ResNet teacher into the plain CNN.
Loss: 0.1 CE + 0.9 * 4^2 * KL(teacher || student) at temperature 4.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/kd_logits.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_logits"
  return c
