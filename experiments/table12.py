r"""Table 12 in one command: every method x seed, the teacher once, then the table.

    # CIFAR-100, the 7 methods x 3 seeds; with 8 GPUs, 8 runs at once:
    python -m experiments.table12 --config=configs/table12.py --workdir=runs/t12 --parallel 8
    # Seconds: tiny networks on synthetic data, 2 methods x 2 seeds:
    python -m experiments.table12 --config=configs/table12.py:smoke --workdir=/tmp/t12
    python -m experiments.table12 --config=configs/table12.py --workdir=DIR \
        --methods=jointrd,resnet --seeds=0,1 \
        --config.base.dataset=cifar10 --config.base.holdout=5000   # held-out validation

Writes DIR/results.md, results.csv, results.png; progress in DIR/status.txt. Rerun the same
command to resume: finished runs are skipped, interrupted ones resume from their checkpoint.
Exit status 1 when a run failed (the others still run), 2 for a config mistake.
See configs/table12.py for the keys and jointrd_jax/sweep.py for how runs are placed.
"""
import sys

from absl import flags, logging
from ml_collections import config_flags

from experiments import entry

FLAGS = flags.FLAGS
# No default file: with one, ml_collections would apply --config.* overrides at import
# time, where a mistake is a traceback instead of entry's one-line error.
config_flags.DEFINE_config_file("config", None,
                                "The sweep config: configs/table12.py[:smoke].", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the sweep (runs, logs, results).")
flags.DEFINE_list("methods", None, "Shorthand for --config.methods, e.g. jointrd,resnet.")
flags.DEFINE_list("seeds", None, "Shorthand for --config.seeds, e.g. 0,1,2.")
flags.DEFINE_integer("parallel", None, "Shorthand for --config.parallel: runs at once, each "
                     "on its own accelerator (0 = one per accelerator).")
flags.DEFINE_bool("report_only", False, "Only write the results of the finished runs.")
flags.mark_flags_as_required(["config", "workdir"])


def _apply_shorthands(config):
  from jointrd_jax.errors import UserError  # pylint: disable=g-import-not-at-top
  if FLAGS.methods is not None:
    config.methods = tuple(FLAGS.methods)
  if FLAGS.seeds is not None:
    try:
      config.seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
      raise UserError(f"--seeds={','.join(FLAGS.seeds)} must be integers, e.g. --seeds=0,1,2.") from None
  if FLAGS.parallel is not None:
    config.parallel = FLAGS.parallel


def main(argv):
  del argv
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  # No entry.setup(): this process must not initialise a JAX backend (on a GPU host it
  # would hold every GPU's memory); the runs are subprocesses that do.

  def sweep_all():
    from jointrd_jax import sweep  # pylint: disable=g-import-not-at-top
    _apply_shorthands(FLAGS.config)
    return sweep.run(FLAGS.config, FLAGS.workdir, only_report=FLAGS.report_only)

  result = entry.run_guarded(sweep_all)
  if result.interrupted:
    print("interrupted: the runs saved checkpoints; rerun the same command to resume.",
          file=sys.stderr, flush=True)
    sys.exit(1)
  if result.failed:
    print(f"error: {len(result.failed)} run(s) failed: "
          + "; ".join(f"{r.name}: {r.error}" for r in result.failed), file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  entry.run_app(main)
