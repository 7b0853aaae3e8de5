"""python -m experiments.main --config=configs/kd_mse_all_dirac.py --workdir=runs/kd_mse_all_dirac

KD(MSE_ALL) + Dirac: CE + 1e-3 * squared distance of all four stage outputs
(summed per example, averaged over the batch) to the frozen teacher's.
Smoke run (tiny network, synthetic data, seconds): --config=configs/kd_mse_all_dirac.py:smoke
"""
from configs import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "kd_mse_all_dirac"
  return c
