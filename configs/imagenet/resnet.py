"""python -m experiments.main --config=configs/imagenet/resnet.py --workdir=runs/in_resnet \
    --config.dataset=imagefolder:/data/imagenet

On ImageNet (the recipe: configs/imagenet/default.py).
The ResNet baseline (shortcuts everywhere): how every teacher is trained. Loss: CE.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/resnet.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "resnet"
  return c
