"""The sweep behind the paper's Table 12: `python -m experiments.table12 --workdir=DIR`.

Trains the ResNet teacher once, then every method x seed (each run a subprocess of
`experiments.main`, in `DIR/runs/<method>/seed<k>/`), skipping finished runs, and writes
`DIR/results.{md,csv,png}`. Keys:

- `base`: the full method config of configs/default.py shared by every run (its `method`
  and `seed` are set per run, so `base.method` and `base.seed` are not used); override
  anything: `--config.base.dataset=cifar10`, `--config.base.num_epochs=100`,
  `--config.base.holdout=5000` (seeded held-out validation), `--config.base.recipe=mdistiller`
  (every run under mdistiller's training recipe; results.md names the recipe).
- `methods`, `seeds`: what to run (`--methods=jointrd,resnet --seeds=0,1` also work).
- `teacher_checkpoint` (or `base.teacher.checkpoint`): a finished ResNet run's workdir, the
  frozen teacher of every distillation run; '' = one teacher for the whole sweep, trained
  with `teacher_seed`: the `resnet` run of that seed when it is part of the sweep (same
  config), else `DIR/teacher`.
- `launcher`: 'local' (subprocesses of this machine) | 'slurm' (sbatch: the teacher as one
  job, the other runs as one job array after it).
- `parallel` (local): runs at once (0 = accelerators x runs_per_device; 1 on a CPU host).
- `runs_per_device` (local): runs sharing one accelerator (GPU: 0.9/K of its memory each;
  refused on TPU; on a CPU host: K processes).
- `platform` ('auto' | 'gpu' | 'tpu' | 'cpu') and `devices` (0 = detect): how local runs
  are pinned.
- `slurm.*` (slurm): sbatch site options, each passed only when set: `partition`,
  `gpus_per_task` (--gpus-per-task), `cpus_per_task`, `time` (e.g. '1-00:00:00'), `mem`
  (e.g. '32G'), `extra` (raw sbatch options, e.g. ('--qos=high', '--gres=gpu:1')),
  `max_parallel` (array throttle %N: at most N runs at once); `wait`: follow the jobs until
  they end, then write the results (else aggregate later with --report_only).
- `status_every_s`: the progress table is printed on every change (a run starts, ends or
  fails) and otherwise every this many seconds.

`:smoke` gives the smoke base config (tiny network, synthetic data), 2 methods x 2 seeds: a
check of the plumbing, not of accuracy (a sweep on synthetic data says so in its results.md
and printed table).
"""
import ml_collections

from configs import default
from jointrd_jax import methods

# The presets with a number in the paper's Table 12 (`paper_top1`), from the registry.
TABLE12_METHODS = tuple(sorted(m for m, p in methods.METHODS.items() if p.paper_top1))
# The paper's other presets, trained beside them.
OTHER_METHODS = ("kd_logits", "plain", "plain_dirac")


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.base = default.get_config(arg)
  c.methods = TABLE12_METHODS + OTHER_METHODS
  c.seeds = (0, 1, 2)
  c.teacher_checkpoint = ""
  c.teacher_seed = 0
  c.launcher = "local"
  c.parallel = 0
  c.runs_per_device = 1
  c.platform = "auto"
  c.devices = 0
  c.slurm = ml_collections.ConfigDict(dict(
      partition="", gpus_per_task=0, cpus_per_task=0, time="", mem="", extra=(),
      max_parallel=0, wait=False))
  c.status_every_s = 60.0
  if arg == "smoke":
    c.methods = ("resnet", "jointrd")
    c.seeds = (0, 1)
  return c
