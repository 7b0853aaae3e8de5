r"""Table 12 in one command: every method x seed, the teacher once, then the table.

    # CIFAR-100, the 7 methods x 3 seeds; one run per GPU (or TPU chip) at once:
    python -m experiments.table12 --config=configs/table12.py --workdir=runs/t12
    # Two runs on each GPU at once (each with 0.45 of its memory):
    python -m experiments.table12 --config=configs/table12.py --workdir=runs/t12 \
        --runs_per_device=2
    # On a SLURM cluster: the teacher as one job, the other runs as a job array after it:
    python -m experiments.table12 --config=configs/table12.py --workdir=runs/t12 \
        --launcher=slurm --config.slurm.gpus_per_task=1 --config.slurm.time=1-00:00:00
    python -m experiments.table12 --config=configs/table12.py --workdir=runs/t12 --report_only
    # Seconds: tiny networks on synthetic data, 2 methods x 2 seeds (checks the plumbing,
    # not accuracy: the output says so):
    python -m experiments.table12 --config=configs/table12.py:smoke --workdir=/tmp/t12
    python -m experiments.table12 --config=configs/table12.py --workdir=DIR \
        --methods=jointrd,resnet --seeds=0,1 \
        --config.base.dataset=cifar10 --config.base.holdout=5000   # held-out validation

Writes DIR/results.md, results.csv, results.png; progress in DIR/status.txt. Rerun the same
command to resume: finished runs are skipped, interrupted ones resume from their checkpoint.
Exit status 1 when a run failed (the others still run), 2 for a config mistake.
See configs/table12.py for the keys and jointrd_jax/sweep/ for how runs are placed.
"""
import sys

from absl import flags, logging
from ml_collections import config_flags

from experiments import entry
from jointrd_jax.errors import UserError
from jointrd_jax.training import reporting

FLAGS = flags.FLAGS
# No default file: with one, ml_collections would apply --config.* overrides at import
# time, where a mistake is a traceback instead of entry's one-line error.
config_flags.DEFINE_config_file(
    "config", None, "The sweep config: configs/table12.py[:smoke] (required; its keys are "
    "described in that file, override any with --config.KEY=VALUE).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the sweep: runs, logs, results (required).")
flags.DEFINE_list("methods", None, "Shorthand for --config.methods, e.g. jointrd,resnet "
                  "(default: the config's, all 7 methods; resnet,jointrd for :smoke).")
flags.DEFINE_list("seeds", None, "Shorthand for --config.seeds, e.g. 0,1,2 "
                  "(default: the config's, 0,1,2; 0,1 for :smoke).")
flags.DEFINE_enum("launcher", None, ["local", "slurm"],
                  "Shorthand for --config.launcher (default: local): local = subprocesses of "
                  "this machine; slurm = sbatch the teacher as one job and the other runs as "
                  "one job array after it (site options: --config.slurm.*).")
flags.DEFINE_integer("parallel", None, "Shorthand for --config.parallel (default 0): local "
                     "runs at once; 0 = accelerators x runs_per_device (on a CPU host: "
                     "runs_per_device).")
flags.DEFINE_integer("runs_per_device", None, "Shorthand for --config.runs_per_device "
                     "(default 1): local runs sharing one accelerator; on GPUs each gets "
                     "CUDA_VISIBLE_DEVICES=i and 0.9/K of its memory; refused on TPUs.")
flags.DEFINE_bool("wait", None, "Shorthand for --config.slurm.wait (default false): with "
                  "--launcher=slurm, follow the jobs until they end, then write the results.")
flags.DEFINE_bool("report_only", False, "Only write the results of the finished runs; launch "
                  "or submit nothing.")
flags.mark_flags_as_required(["config", "workdir"])


def _apply_shorthands(config):
  if FLAGS.methods is not None:
    config.methods = tuple(FLAGS.methods)
  if FLAGS.seeds is not None:
    try:
      config.seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
      raise UserError(f"--seeds={','.join(FLAGS.seeds)} must be integers, e.g. --seeds=0,1,2.") from None
  for name in ("launcher", "parallel", "runs_per_device"):
    if FLAGS[name].value is not None:
      config[name] = FLAGS[name].value
  if FLAGS.wait is not None:
    config.slurm.wait = FLAGS.wait


def main(argv):
  del argv
  reporting.use_one_log_format()  # initialises no JAX backend
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  # No entry.setup(): this process must not initialise a JAX backend (on a GPU host it
  # would hold every GPU's memory); the runs are subprocesses that do.

  def sweep_all():
    from jointrd_jax import sweep  # deferred: loads JAX, --help stays fast
    _apply_shorthands(FLAGS.config)
    return sweep.run(FLAGS.config, FLAGS.workdir, only_report=FLAGS.report_only)

  result = entry.run_guarded(sweep_all)
  if result.interrupted:
    print(f"interrupted: {result.hint}", file=sys.stderr, flush=True)
    sys.exit(1)
  if result.failed:
    print(f"error: {len(result.failed)} run(s) failed: "
          + "; ".join(f"{r.name}: {r.error}" for r in result.failed), file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  entry.run_app(main)
