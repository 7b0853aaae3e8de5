"""python -m experiments.main --config=configs/imagenet/jointrd.py --workdir=runs/in_jointrd \
    --config.dataset=imagefolder:/data/imagenet --config.teacher.checkpoint=runs/tv_r50

On ImageNet (the recipe: configs/imagenet/default.py).
JointRD (Residual Distillation): the plain Dirac student's stages 1-3 also feed the frozen
ResNet teacher's later stages (hybrid paths). Loss: 1/4 [m(e) sum_k CE(hybrid_k) + CE(student)].
With no --config.teacher.checkpoint the ImageNet ResNet teacher is trained first into
WORKDIR/teacher.
Smoke run (tiny network, generated JPEGs, seconds): --config=configs/imagenet/jointrd.py:smoke
"""
from configs import default as cifar
from configs.imagenet import default


def get_config(arg: str = ""):
  c = default.get_config(arg)
  c.method = "jointrd"
  c.loss.jointrd.dc = default.JOINTRD_DC
  if arg == "smoke":  # keeps its absolute horizon (configs/default.py SMOKE_EPOCHS)
    cifar.keep_smoke_epochs(c, arg, "jointrd")
  else:
    c.loss.jointrd.decay_fraction = default.JOINTRD_DECAY_FRACTION
  return c
