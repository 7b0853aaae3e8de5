"""Train and evaluate one method: `python -m experiments.main --config=configs/jointrd.py --workdir=DIR`.

Override any config key with `--config.KEY=VALUE`. Multi-host (e.g. a Cloud TPU pod
slice): run the same command on every host with `--multihost` (or give
`--coordinator_address`, `--num_processes`, `--process_id`).
"""
from absl import flags
from ml_collections import config_flags

from experiments import entry

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "A config file from configs/, e.g. configs/jointrd.py[:smoke].",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
entry.define_distributed_flags()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  entry.setup()
  from jointrd_jax import train  # after the backends are configured
  entry.run_guarded(lambda: train.train_and_evaluate(FLAGS.config, FLAGS.workdir))


if __name__ == "__main__":
  entry.run_app(main)
