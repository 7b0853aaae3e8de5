"""python -m experiments.main --config=configs/imagenet/plain.py --workdir=runs/in_plain \
    --config.dataset=imagefolder:/data/imagenet

On ImageNet (the recipe: configs/imagenet/default.py).
Plain CNN from scratch: identity shortcuts removed (the release's plain-CNN). Loss: CE.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/plain.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain"
  return c
