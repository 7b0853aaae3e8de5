"""python -m experiments.main --config=configs/imagenet/plain_repvgg.py --workdir=runs/in_plain_repvgg \
    --config.dataset=imagefolder:/data/imagenet

On ImageNet (the recipe: configs/imagenet/default.py).
Plain CNN with RepVGG-style convs (Ding et al. 2021), from scratch. Loss: CE.
Each 3x3 conv of the student trains as 3x3 conv + BN, 1x1 conv + BN and BN(x) (where shapes
agree), summed; its 1x1 convs stay plain; export folds each into one biased conv.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/plain_repvgg.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "plain_repvgg"
  return c
