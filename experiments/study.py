r"""A study in one command: methods x epoch budget x depth (and setting variants), each cell
a Table 12 sweep, then one report across them.

    python -m experiments.make_digits --out=digits32.npz
    python -m experiments.study --config=configs/study_digits.py --workdir=runs/study
    python -m experiments.study --config=configs/study_digits.py --workdir=runs/study \
        --report_only
    python -m experiments.study --config=configs/study_digits.py:smoke --workdir=/tmp/study
    # The CIFAR-100 distillation zoo: its pairs x methods, the published numbers beside ours
    # (configs/kd_zoo.py says which keys it takes):
    python -m experiments.study --config=configs/kd_zoo.py --workdir=runs/kd_zoo
    python -m experiments.study --config=configs/kd_zoo.py:smoke --workdir=/tmp/kd_zoo
    # Copy the tables and the runs' metrics (no checkpoints) to commit them; rebuild the
    # report from the copy:
    python -m experiments.study --config=configs/study_digits.py --workdir=runs/study \
        --report_only --publish=docs/study
    python -m experiments.study --config=configs/study_digits.py --workdir=docs/study \
        --report_only

Writes DIR/results.md, results.csv, results.png; each cell's own sweep (runs, status.txt,
results.md) in DIR/<cell>/. Rerun the same command to resume. Exit status 1 when a run
failed (the others still run), 2 for a config mistake. The keys: configs/study_digits.py
(a study over budgets and depths), configs/kd_zoo.py (the zoo's pairs).
"""
import sys

from absl import flags, logging
from ml_collections import config_flags

from experiments import entry
from jointrd_jax.training import reporting
from jointrd_jax.sweep import study

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "The study config: configs/study_digits.py[:smoke] or "
    "configs/kd_zoo.py[:smoke] (required; its keys "
    "are described in that file, override any with --config.KEY=VALUE).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the study: its cells and results (required).")
flags.DEFINE_bool("report_only", False, "Only write the results of the finished runs; launch "
                  "or submit nothing.")
flags.DEFINE_string("publish", None, "After the report, copy it, each cell's tables and each "
                    "finished run's config, summary and metrics (no checkpoints) to this folder "
                    "(e.g. docs/study, to commit); --report_only --workdir=THAT rebuilds the "
                    "report from the copy.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  reporting.use_one_log_format()  # initialises no JAX backend (the runs are subprocesses)
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  by_cell, paths, failed = entry.run_guarded(
      lambda: study.run(FLAGS.config, FLAGS.workdir, only_report=FLAGS.report_only))
  print(f"study results: {paths['md']}, {paths['csv']}, {paths['png']}", flush=True)
  if FLAGS.publish:
    n = entry.run_guarded(lambda: study.publish(FLAGS.config, FLAGS.workdir, FLAGS.publish))
    print(f"published the report and {n} finished run(s) to {FLAGS.publish}", flush=True)
  if any(r.interrupted for r in by_cell.values()):
    print("interrupted: rerun the same command to continue the study.", file=sys.stderr,
          flush=True)
    sys.exit(1)
  if failed:
    print(f"error: {len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  entry.run_app(main)
