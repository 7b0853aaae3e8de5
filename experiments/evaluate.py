r"""Score a run's checkpoint on a split: top-1, top-5, per-class accuracy, confusion matrix.

  python -m experiments.evaluate --workdir=RUN [--split=test|train|holdout] \
      [--checkpoint_step=STEP] [--overwrite]

Loads RUN's config.json, its dataset (as the run read it; never downloads what the run
did not) and its newest readable checkpoint (finished or interrupted; or
--checkpoint_step), evaluates the student exactly as the trainer's evaluation does (so
the test split of a finished run gives its summary.json `final.student_top1`), prints
top-1 and top-5 and writes RUN/eval/SPLIT/: metrics.json (top-1, top-5, loss, per-class
accuracy with the class names), confusion.npy, confusion.csv (row = true class, column =
predicted class) and confusion.png. Top-5 with fewer than 5 classes counts the top
min(5, K). In-memory data only (CIFAR, cifar100_python:DIR, npz:PATH, synthetic).
Details: `jointrd_jax/scoring.py`. Exit status 0, or 2 with one line `error: ...` on stderr.
"""
import sys

from experiments import cli


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser("python -m experiments.evaluate", __doc__)
  p.add_argument("--workdir", required=True, metavar="RUN",
                 help="The run's workdir (config.json + checkpoints/). Required.")
  p.add_argument("--split", default="test", metavar="SPLIT",
                 help="test, train (the run's training images, not augmented) or holdout "
                      "(a run with --config.holdout=N) (default: test).")
  p.add_argument("--checkpoint_step", type=int, default=None, metavar="STEP",
                 help="Score this saved step instead of the newest readable checkpoint "
                      "(default: the newest).")
  cli.add_bool(p, "overwrite", False, "Replace an earlier RUN/eval/SPLIT (default: refuse).")
  return p


def progress(checkpoint: dict) -> str:
  """'epoch 40 of 200'; a checkpoint of step 0 was not trained here (a converted network:
  `experiments.convert_torch`), and its config's epoch count says nothing."""
  if not checkpoint["step"]:
    return "not trained here: an imported network"
  return f"epoch {checkpoint['epoch']} of {checkpoint['num_epochs']}"


def main(argv=None) -> int:
  args = parser().parse_args(sys.argv[1:] if argv is None else argv)
  cli.setup_logging()
  from jointrd_jax.training import scoring  # deferred: loads JAX, --help stays fast
  with cli.private_tempdir("evaluate"):
    m = cli.guarded(scoring.evaluate_run, args.workdir, args.split, args.checkpoint_step,
                    args.overwrite)
  c = m["checkpoint"]
  print(f"{m['split']} split of {m['dataset']} ({m['num_images']} images), checkpoint step "
        f"{c['step']} ({progress(c)}): top-1 {m['top1']:.2f} %, "
        f"top-{m['top5_classes']} {m['top5']:.2f} %", flush=True)
  out = scoring.output_dir(args.workdir, args.split)
  print(f"wrote {out}: {', '.join(scoring.FILES)}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
