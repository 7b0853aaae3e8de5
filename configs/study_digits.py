"""The real-data study: methods x epoch budget x depth on scikit-learn's digits, on a CPU.

    python -m experiments.make_digits --out=digits32.npz     # once: the data (seconds)
    python -m experiments.study --config=configs/study_digits.py --workdir=runs/study
    python -m experiments.study --config=configs/study_digits.py --workdir=runs/study --report_only

Every cell is a Table 12 sweep (configs/table12.py: the same run layout, resume and
status) in `DIR/<arch>_w<width>_e<epochs>[_<variant>]/`; the study writes
`DIR/results.{md,csv,png}`: final top-1 per method against the epoch budget and against
depth. Keys:

- `base`: the run config shared by every run (configs/default.py keys); here the digits
  npz, batch 64, lr 0.05, evaluation on the 360 test images; JointRD's recipe otherwise
  (SGD Nesterov 0.9, x0.1 at 50 % and 75 % of the run, weight decay 5e-4). Each cell sets
  `model.arch`, `model.width` and `num_epochs`.
- `groups`: one per depth, each with `arch`, `width`, `budgets` (epochs), `methods`, `seeds`.
- `order`: the groups' order: cells run in it (every group's teacher cell first) and the
  report lists them in it.
- `teacher_budget`: the teacher of every distillation run of a group is that group's
  ResNet run of seed `teacher_seed` at this budget (trained first; so every budget distils
  from the same converged teacher, as the paper's students distil a pretrained one).
- `variants`: extra cells that change settings, each `NAME:GROUP:EPOCHS:METHOD[+METHOD]:
  KEY=VALUE[,KEY=VALUE]` (e.g. DIST's intra-class group size, the release's optimizer rule,
  JointRD with its student's cross-entropy at full weight).
- `launcher`, `parallel`, `runs_per_device`, `platform`, `devices`, `slurm`,
  `status_every_s`: as configs/table12.py, for every cell.
- `cells`: run only the cells whose names are listed ('' = every cell).

`:smoke`: tiny networks on synthetic data, 2 budgets x 2 depths x 2 methods, one seed: a
check of the plumbing (seconds), not of accuracy.
"""
import ml_collections

from configs import default, table12

SHALLOW_METHODS = ("resnet", "plain", "plain_dirac", "kd_logits_dirac", "dkd_dirac",
                   "dist_dirac", "jointrd", "plain_repvgg", "jointrd_repvgg")
DEEP_METHODS = ("resnet", "plain_dirac", "kd_logits_dirac", "jointrd", "plain_repvgg")


def _group(arch, width, budgets, methods, seeds):
  return ml_collections.ConfigDict(dict(arch=arch, width=width, budgets=budgets,
                                        methods=methods, seeds=seeds))


def get_config(arg: str = ""):
  sweep = table12.get_config("smoke" if arg == "smoke" else "")
  c = ml_collections.ConfigDict()
  c.base = sweep.base
  for key in ("launcher", "parallel", "runs_per_device", "platform", "devices", "slurm",
              "status_every_s"):
    c[key] = sweep[key]
  c.teacher_seed = 0
  c.cells = ()
  if arg == "smoke":
    c.groups = ml_collections.ConfigDict(dict(
        shallow=_group("resnet10", 8, (1, 2), ("resnet", "kd_logits_dirac"), (0,)),
        deep=_group("resnet14", 8, (2,), ("resnet", "jointrd"), (0,))))
    c.order = ("shallow", "deep")
    c.teacher_budget = 2
    c.variants = ("dist16:shallow:2:dist_dirac:loss.dist.intra_group=16",)
    return c
  c.base.dataset = "npz:digits32.npz"
  c.base.batch_size = 64
  c.base.optimizer.learning_rate = 0.05
  c.base.eval_batch_size = 360
  c.groups = ml_collections.ConfigDict(dict(
      shallow=_group("resnet10", 16, (60, 30, 15), SHALLOW_METHODS, (0, 1, 2)),
      deep=_group("resnet50", 8, (60,), DEEP_METHODS, (0, 1))))
  c.order = ("shallow", "deep")
  c.teacher_budget = 60
  c.variants = (
      # DIST's intra-class Pearson term over groups of 16 of the batch's 64 images (the
      # default, 64, is the whole batch here, as one reference GPU's 64 images on CIFAR).
      "dist_group16:shallow:60:dist_dirac:loss.dist.intra_group=16",
      # The release's optimizer rule: a tensor whose gradient sums to exactly 0 is skipped.
      "skip_zero_sum:shallow:60:jointrd:optimizer.skip_zero_sum_grads=True",
      # JointRD with its student's own cross-entropy at full weight (JointRD's 1/4 plus 3/4
      # more): does the student's quarter-weight cross-entropy hold it back on a short run?
      "ce_full:shallow:60:jointrd:terms=+ce:0.75",
      "ce_full:shallow:15:jointrd:terms=+ce:0.75",
  )
  return c
