"""Train and evaluate one method: `python -m experiments.main --config=configs/jointrd.py --workdir=DIR`.

Override any config key with `--config.KEY=VALUE`. Multi-host (e.g. a Cloud TPU pod
slice): run the same command on every host with `--multihost` (or give
`--coordinator_address`, `--num_processes`, `--process_id`).
"""
from absl import flags
from ml_collections import config_flags

from experiments import entry

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", None, "The run's config file: configs/<method>.py (CIFAR) or "
    "configs/imagenet/<method>.py, optionally :smoke; override any key with "
    "--config.KEY=VALUE (see configs/default.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory of the run: checkpoints, metrics, summary. "
                    "Rerun the same command to resume.")
entry.define_distributed_flags()
flags.adopt_module_key_flags(entry)  # --multihost & co. in --help, not only --helpfull
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  entry.setup()
  from jointrd_jax.training import train  # after the backends are configured
  entry.run_guarded(lambda: train.train_and_evaluate(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
  entry.run_app(main)
