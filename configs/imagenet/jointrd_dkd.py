"""python -m experiments.main --config=configs/imagenet/jointrd_dkd.py --workdir=runs/in_jointrd_dkd \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
JointRD plus a DKD term on the student's logits, plain Dirac student.
ImageNet: JointRD's dc 5e-3; DKD beta 0.5, T 1, warm-up 1 epoch.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/jointrd_dkd.py:smoke
"""
from configs import default as cifar
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "jointrd_dkd"
  c.loss.jointrd.dc = default.JOINTRD_DC
  if arg == "smoke":  # keeps its absolute horizon (configs/default.py SMOKE_EPOCHS)
    cifar.keep_smoke_epochs(c, arg, "jointrd")
  else:
    c.loss.jointrd.decay_fraction = default.JOINTRD_DECAY_FRACTION
  c.loss.dkd.beta = 0.5
  c.loss.dkd.temperature = 1.0
  c.loss.dkd.warmup_epochs = 1
  return c
