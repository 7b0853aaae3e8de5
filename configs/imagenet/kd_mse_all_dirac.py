"""python -m experiments.main --config=configs/imagenet/kd_mse_all_dirac.py --workdir=runs/in_kd_mse_all_dirac \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
KD(MSE_ALL) + Dirac: CE + 1e-3 * squared distance of all four stage outputs
(summed per example, averaged over the batch) to the frozen teacher's.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/kd_mse_all_dirac.py:smoke
"""
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_mse_all_dirac"
  return c
