"""The sweep behind the paper's Table 12: `python -m experiments.table12 --workdir=DIR`.

Trains the ResNet teacher once, then every method x seed (each run a subprocess of
`experiments.main`, in `DIR/runs/<method>/seed<k>/`), skipping finished runs, and writes
`DIR/results.{md,csv,png}`. Keys:

- `base`: the full method config of configs/default.py shared by every run (its `method`
  and `seed` are set per run, so `base.method` and `base.seed` are not used); override anything: `--config.base.dataset=cifar10`,
  `--config.base.num_epochs=100`, `--config.base.holdout=5000` (seeded held-out validation).
- `methods`, `seeds`: what to run (`--methods=jointrd,resnet --seeds=0,1` also work).
- `teacher_checkpoint` (or `base.teacher.checkpoint`): a finished ResNet run's workdir, the
  frozen teacher of every distillation run; '' = one teacher for the whole sweep, trained with `teacher_seed`:
  the `resnet` run of that seed when it is part of the sweep (same config), else `DIR/teacher`.
- `parallel`: runs at once, each pinned to its own accelerator(s) (0 = one per accelerator).
- `platform` ('auto' | 'gpu' | 'tpu' | 'cpu') and `devices` (0 = detect): how runs are pinned.
- `status_every_s`: how often the progress table is printed (also on every change).

`:smoke` gives the smoke base config (tiny network, synthetic data), 2 methods x 2 seeds.
"""
import ml_collections

from configs import default

TABLE12_METHODS = ("jointrd", "kd_logits_dirac", "kd_mse_all_dirac", "resnet")
OTHER_METHODS = ("kd_logits", "plain", "plain_dirac")


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.base = default.get_config(arg)
  c.methods = TABLE12_METHODS + OTHER_METHODS
  c.seeds = (0, 1, 2)
  c.teacher_checkpoint = ""
  c.teacher_seed = 0
  c.parallel = 1
  c.platform = "auto"
  c.devices = 0
  c.status_every_s = 60.0
  if arg == "smoke":
    c.methods = ("resnet", "jointrd")
    c.seeds = (0, 1)
    c.status_every_s = 10.0
  return c
