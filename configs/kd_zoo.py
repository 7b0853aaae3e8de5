"""The CIFAR-100 distillation zoo: the standard teacher-student pairs x KD, DKD, DIST,
KD + LS and JointRD, with the published numbers beside ours (a study: its cells are Table
12 sweeps, jointrd_jax/sweep/zoo.py).

    python -m experiments.study --config=configs/kd_zoo.py --workdir=runs/kd_zoo
    python -m experiments.study --config=configs/kd_zoo.py --workdir=runs/kd_zoo --report_only
    python -m experiments.study --config=configs/kd_zoo.py:smoke --workdir=/tmp/kd_zoo

Writes `DIR/results.{md,csv,png}`: one row per pair x (teacher, student from scratch, each
method), ours (final test top-1, mean ± std over seeds) beside the published number and
its source (RepDistiller's, mdistiller's and logit-standardization-KD's READMEs; DIST has
no published CIFAR-100 number, so its column stays empty). Each cell's sweep in
`DIR/<cell>/`: `<arch>` (the network from scratch: a student's rows over every seed, a
teacher over `teacher_seed`), `<teacher>-<student>` (the logit methods),
`<teacher>-<student>-plain` (JointRD). Rerun the same command to resume.

Keys:
- `base`: the run config shared by every run (configs/default.py keys): cifar100 under
  mdistiller's recipe (240 epochs, batch 64, SGD momentum 0.9, lr 0.05 x0.1 at 150, 180 and
  210, weight decay 5e-4). Each cell sets the arch and, for a pair, `teacher.arch`.
- `pairs`: 'TEACHER:STUDENT' each; the twelve standard pairs by default (filter:
  `--config.pairs="('resnet32x4:resnet8x4', 'vgg13:vgg8')"`; one: `--config.pairs=vgg13:vgg8`).
- `methods`: of kd (Hinton KD), dkd (DKD, mdistiller's beta per pair and its 20-epoch
  warm-up), dist (DIST), kd_ls (KD on standardised logits), jointrd (filter:
  `--config.methods="('kd', 'dkd')"`).
- `seeds`; `teacher_seed`: the seed of the teachers trained here.
- `small_student_lr`: the lr of MobileNetV2 and the ShuffleNets (None: 0.01, as RepDistiller
  and mdistiller train them, from scratch and as students).
- `teachers_dir`: '' = train each teacher (cell `<arch>`, seed `teacher_seed`); else a
  folder with one run per teacher arch, `DIR/<arch>/`: a finished run, or a published
  teacher imported by `python -m experiments.convert_torch --from=mdistiller
  --arch=resnet32x4 --checkpoint=cifar_teachers/resnet32x4_vanilla/ckpt_epoch_240.pth
  --out=teachers/resnet32x4`; every teacher of the pairs must be there.
- `cells`: run only these cells ('' = all); `launcher`, `parallel`, ...: as configs/table12.py.

The student of KD, DKD, DIST and KD + LS is the reference network (`model.shortcuts=all`,
plain convs: the published numbers are theirs; the presets' own students are plain), so
the fixed networks (mobilenetv2, shufflenetv1/v2) and VGG train as they are.

JointRD runs where it makes sense: a residual teacher and the plain twin of a residual
student with stages of equal shapes (`methods/compose.py`'s check). Of the standard pairs:
resnet56->resnet20, resnet110->resnet32 (16/32/64 channels), resnet32x4->resnet8x4
(64/128/256) and wrn_40_2->wrn_16_2 (32/64/128). Not: wrn_40_2->wrn_40_1 (stages 32/64/128
against 16/32/64), vgg13->vgg8 (no shortcuts in the teacher; vgg8 is plain already),
resnet50->vgg8 (vgg8 is plain already; stages differ), and the MobileNetV2 / ShuffleNet
pairs (fixed networks, no plain twin). results.md lists each left-out pair and why.

`:smoke`: two pairs (resnet56->resnet20 with JointRD; vgg13->mobilenetv2, a cross-family
pair with a fixed student at lr 0.01) x every method, width 16, 2 epochs on synthetic data,
one seed: a check of the plumbing, not of accuracy.
"""
import ml_collections
from ml_collections import config_dict

from configs import default, table12
from jointrd_jax.sweep import zoo

SMOKE_PAIRS = ("resnet56:resnet20", "vgg13:mobilenetv2")


def get_config(arg: str = ""):
  sweep = table12.get_config("smoke" if arg == "smoke" else "")
  c = ml_collections.ConfigDict()
  c.base = default.get_config(arg)
  c.base.recipe = "mdistiller"
  for key in ("launcher", "parallel", "runs_per_device", "platform", "devices", "slurm",
              "status_every_s"):
    c[key] = sweep[key]
  c.pairs = zoo.STANDARD_PAIRS
  c.methods = tuple(zoo.METHODS)
  c.seeds = (0, 1, 2)
  c.teacher_seed = 0
  c.small_student_lr = config_dict.placeholder(float)
  c.teachers_dir = ""
  c.cells = ()
  if arg == "smoke":
    c.pairs = SMOKE_PAIRS
    c.seeds = (0,)
  return c
