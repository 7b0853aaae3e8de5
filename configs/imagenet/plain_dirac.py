"""python -m experiments.main --config=configs/imagenet/plain_dirac.py --workdir=runs/in_plain_dirac \
    --config.dataset=imagefolder:/data/imagenet

On ImageNet (the recipe: configs/imagenet/default.py).
Plain CNN + Dirac re-parameterisation, from scratch. Loss: CE.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/plain_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain_dirac"
  return c
