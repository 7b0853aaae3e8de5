"""Scoring a run's checkpoint on a split of its data: `evaluate_run(run_dir, split)`.

Loads the run's recorded config (config.json, through `configs/from_json.py`), its dataset
(as the trainer loads it: `run_setup.load_data`, the holdout included) and the newest
readable checkpoint (or `checkpoint_step`), and runs the trainer's own evaluation step
(`steps.make_eval_step`: the student's inference-mode logits, every image once, padded and
masked over the mesh; `evaluation.evaluate`) with its confusion counts. So the top-1 of
the run's evaluation split at its last checkpoint is the `final.student_top1` of its
summary.json, exactly. Top-5 counts a hit among the min(5, K) highest logits (with K < 5
classes, every image is a top-5 hit).

Splits: `test` (the dataset's test split, also for a run that held out training images),
`train` (the images the run trained on, without augmentation) and `holdout` (a run with
`--config.holdout=N`: the held-out training images it evaluated on). In-memory datasets
only (CIFAR, npz, synthetic); streamed (ImageNet-style) runs are refused.

Writes RUN/eval/<split>/: metrics.json (top-1, top-5, loss, per-class counts and accuracy
with the class names), confusion.npy and confusion.csv (counts; row = true class, column =
predicted class) and confusion.png (row-normalised; counts in the cells up to 20 classes).
"""
import copy
import csv
import dataclasses
import math
import shutil

import jax
import numpy as np
from etils import epath

from configs import from_json
from jointrd_jax import datasets, models, sharding
from jointrd_jax.training import checkpoints, evaluation, reporting, run_setup, steps
from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.errors import UserError

SPLITS = ("test", "train", "holdout")
EVAL_DIR = "eval"
FILES = ("metrics.json", "confusion.csv", "confusion.npy", "confusion.png")
CELL_TEXT_MAX_CLASSES = 20


def output_dir(run_dir: str, split: str) -> epath.Path:
  return epath.Path(run_dir) / EVAL_DIR / split


def load_config(run_dir: str):
  """The run's config (its config.json over the defaults), or a one-line UserError."""
  path = epath.Path(run_dir)
  if not path.is_dir():
    raise UserError(f"--workdir={run_dir}: no such directory; pass the workdir of a run "
                    "(the directory holding config.json and checkpoints/).")
  if not (path / workdir_lib.CONFIG_FILE).exists():
    raise UserError(f"--workdir={run_dir} holds no {workdir_lib.CONFIG_FILE}: it is not a "
                    "run's workdir; pass the --workdir the run was trained with.")
  try:
    return from_json.get_config(str(path / workdir_lib.CONFIG_FILE))
  except (ValueError, OSError, TypeError) as e:
    raise UserError(f"{path / workdir_lib.CONFIG_FILE} cannot be read ({type(e).__name__}: "
                    f"{e}); it is not a config.json of this version.") from None


def check(run_dir: str, config, split: str, checkpoint_step=None, overwrite=False) -> None:
  """Every refusal that needs no data nor checkpoint read, before any work."""
  if split not in SPLITS:
    raise UserError(f"--split={split}: unknown split; choose one of {', '.join(SPLITS)}.")
  if run_setup.is_streamed(config):
    raise UserError(f"{run_dir} streamed its data ({config.dataset}); evaluate scores "
                    "in-memory datasets only (CIFAR, npz:PATH, synthetic): its per-epoch "
                    "validation numbers are in metrics.jsonl.")
  if split == "holdout" and not config.holdout:
    raise UserError(f"--split=holdout: {run_dir} held out no training images "
                    "(config.holdout=0); choose test or train.")
  ckpt = checkpoints.Checkpoints(run_dir, create=False)
  saved = ckpt.steps()
  ckpt.close()
  if not saved:
    raise UserError(f"{run_dir} holds no checkpoint under {checkpoints.CHECKPOINT_DIR}/ (the "
                    "run saved none yet); train it first, or pass another --workdir.")
  if checkpoint_step is not None and checkpoint_step not in saved:
    raise UserError(f"--checkpoint_step={checkpoint_step}: {run_dir} holds the checkpoints "
                    f"of steps {', '.join(map(str, saved))}; pass one of them.")
  out = output_dir(run_dir, split)
  if out.exists() and any(out.iterdir()) and not overwrite:
    raise UserError(f"{out} holds an earlier evaluation; pass --overwrite to replace it.")
  run_setup.check_data_present(config)


def split_data(config, split: str, mesh) -> datasets.Data:
  """The run's data, as the trainer loaded it, with `split` as its evaluation arrays."""
  c = copy.deepcopy(config)
  if split == "test":
    c.holdout = 0  # the test split itself, also for a run that evaluated on a holdout
  data = run_setup.load_data(c, mesh)
  if split == "train":
    x, y = (np.asarray(a.addressable_data(0)) for a in (data.train_images, data.train_labels))
    data = dataclasses.replace(data, eval_images=x, eval_labels=y)
  return dataclasses.replace(data, eval_split=split)


def restore(run_dir: str, method, data, mesh, checkpoint_step=None):
  """`(state, meta)`: the student (and a joint teacher) of the run's checkpoint on the mesh,
  checked against the network its config describes."""
  ckpt = checkpoints.Checkpoints(run_dir, create=False)
  restored = ckpt.restore(step=checkpoint_step)
  ckpt.close()
  if restored is None:
    raise UserError(f"no checkpoint of {run_dir} can be read; they are corrupt or partial.")
  saved, meta = restored
  want = models.describe(method.student)
  got = (meta.get("networks") or {}).get("student")
  if got != want or meta.get("num_classes") != data.num_classes:
    raise UserError(f"the checkpoint of {run_dir} holds a student {got} of "
                    f"{meta.get('num_classes')} classes, not the {want} of {data.num_classes} "
                    "its config.json and data describe; the run's files do not belong "
                    "together.")
  state = steps.TrainState(step=saved["step"], params=saved["params"],
                           batch_stats=saved["batch_stats"], opt_state=None)
  return jax.device_put(state, sharding.replicated(mesh)), meta


def evaluate_run(run_dir: str, split: str = "test", checkpoint_step=None,
                 overwrite: bool = False, mesh=None) -> dict:
  """Scores the run's checkpoint on `split`, writes RUN/eval/<split>/ and returns its
  metrics.json."""
  config = load_config(run_dir)
  check(run_dir, config, split, checkpoint_step, overwrite)
  mesh = mesh if mesh is not None else sharding.make_mesh()
  data = split_data(config, split, mesh)
  method = run_setup.build_method(config, data.num_classes)
  state, meta = restore(run_dir, method, data, mesh, checkpoint_step)
  reporting.log("scoring %s (checkpoint step %d, epoch %d of %d) on the %s split of %s "
                "(%d images)", run_dir, meta["step"], meta["epoch"], config.num_epochs,
                split, data.name, data.num_eval)
  n = mesh.devices.size  # the run's batch size, rounded up to divide over these devices
  batch_size = math.ceil(config.eval_batch_size / n) * n
  step = jax.jit(steps.make_eval_step(method, ("student",), confusion=True))
  out = evaluation.evaluate(step, state, None, datasets.eval_batches(
      data, batch_size=batch_size, dtype=method.student.dtype), data.num_eval)
  names, source = datasets.sources.get(config.dataset).class_names(data.num_classes)
  metrics = summarize(out, names, source, split=split, dataset=data.name, meta=meta,
                      num_epochs=config.num_epochs)
  write(output_dir(run_dir, split), metrics, out["student_confusion"], names,
        f"{config.method}, {config.model.arch} on {data.name}: {split} split")
  return metrics


def summarize(out: dict, names, source: str, *, split: str, dataset: str, meta: dict,
              num_epochs: int) -> dict:
  """metrics.json: the evaluation's numbers, per class too."""
  confusion = out["student_confusion"]
  counts, correct = confusion.sum(1), np.diag(confusion)
  per_class = [{"class": i, "name": names[i], "count": int(counts[i]),
                "correct": int(correct[i]),
                "accuracy": 100.0 * float(correct[i]) / float(counts[i]) if counts[i] else None}
               for i in range(len(names))]
  return {"split": split, "dataset": dataset, "num_images": int(counts.sum()),
          "top1": out["student_top1"], "top5": out["student_top5"],
          "top5_classes": min(5, len(names)), "loss": out["student_loss"],
          "checkpoint": {"step": int(meta["step"]), "epoch": int(meta["epoch"]),
                         "num_epochs": int(num_epochs),
                         "finished": int(meta["epoch"]) == int(num_epochs)},
          "class_names": source, "per_class": per_class,
          "confusion": "confusion.csv / confusion.npy: row = true class, column = predicted "
                       "(top-1) class, counts"}


def write(out_dir: epath.Path, metrics: dict, confusion: np.ndarray, names, title: str):
  """The evaluation's files, built in a staging folder and moved into `out_dir` whole."""
  if jax.process_index() != 0:
    return
  staging = out_dir.parent / f".{out_dir.name}.partial"
  if staging.exists():
    shutil.rmtree(str(staging))
  staging.mkdir(parents=True)
  workdir_lib.write_json(staging / "metrics.json", metrics)
  np.save(str(staging / "confusion.npy"), confusion)
  with open(str(staging / "confusion.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["true \\ predicted", *names])
    w.writerows([name, *map(int, row)] for name, row in zip(names, confusion))
  confusion_figure(confusion, names, title).savefig(str(staging / "confusion.png"), dpi=100)
  if out_dir.exists():
    shutil.rmtree(str(out_dir))
  staging.rename(out_dir)


def confusion_figure(confusion: np.ndarray, names, title: str = ""):
  """A matplotlib Figure (Agg): each row as fractions of its class, every class named on
  both axes (small print for many classes), the counts in the cells up to 20 classes."""
  import matplotlib  # matplotlib (~1.5 s): only where a plot is drawn
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # matplotlib (~1.5 s): only where a plot is drawn
  k = len(names)
  rows = confusion.sum(1, keepdims=True)
  frac = confusion / np.maximum(rows, 1)
  size = max(5.0, 0.16 * k + 2.5)  # inches: ~0.16 in (11 px at 100 dpi) per class
  font = 8 if k <= CELL_TEXT_MAX_CLASSES else max(4.0, min(8.0, 700.0 / k))
  fig, ax = plt.subplots(figsize=(size + 1.2, size))
  image = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
  fig.colorbar(image, ax=ax, fraction=0.04, label="fraction of the true class")
  ax.set_xticks(range(k), labels=names, rotation=90, fontsize=font)
  ax.set_yticks(range(k), labels=names, fontsize=font)
  ax.set_xlabel("predicted class")
  ax.set_ylabel("true class")
  ax.set_title(title, fontsize=9)
  if k <= CELL_TEXT_MAX_CLASSES:
    for (i, j), count in np.ndenumerate(confusion):
      if count:
        ax.text(j, i, str(int(count)), ha="center", va="center", fontsize=7,
                color="white" if frac[i, j] > 0.5 else "black")
  fig.tight_layout()
  plt.close(fig)  # drawn on savefig; not kept by pyplot
  return fig
