"""python -m experiments.main --config=configs/imagenet/dkd_ls_dirac.py \
    --workdir=runs/in_dkd_ls_dirac --config.dataset=imagefolder:/data/imagenet \
    --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
Decoupled KD on standardised logits into the plain Dirac student.
ImageNet: DKD's ImageNet recipe (beta 0.5, warm-up 1 epoch) with the logit-standardisation
scaling: alpha 1 x 9, beta 0.5 x 9, base temperature 2.
Smoke run (tiny network, generated JPEGs, seconds):
--config=configs/imagenet/dkd_ls_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "dkd_ls_dirac"
  c.loss.dkd.beta = 4.5
  c.loss.dkd.warmup_epochs = 1
  return c
