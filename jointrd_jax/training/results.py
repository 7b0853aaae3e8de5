"""Table 12 from finished runs: rows (mean +- std over seeds), `results.md`, `results.csv`
and `results.png` (student top-1 per epoch, mean line and min-max band per method).

Pure functions of run summaries (the `summary.json` dicts) and eval records (the
`split == 'eval'` lines of `metrics.jsonl`), so everything here is testable with fake
dicts and no training. The number of each row is the **final-epoch** student top-1; the
best epoch's accuracy (selected on the same split, as the official release reports) is a
labelled extra, never the result.
"""
import csv
import io
import statistics
from typing import Dict, List, Mapping, Optional, Sequence

from etils import epath

from jointrd_jax import methods
from jointrd_jax.training import recipes, reporting

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"

# Reference §5: CIFAR-100, plain-CNN 50 students of a ResNet-50, mean +- std over seeds
# (each preset's `paper_top1`), and each method's label (`methods.presets`).
PAPER = {name: p.paper_top1 for name, p in methods.METHODS.items() if p.paper_top1}
PAPER_SETTING = {"dataset": "cifar100", "arch": "resnet50", "num_epochs": 200,
                 "recipe": recipes.DEFAULT}
LABELS = {name: p.label or name for name, p in methods.METHODS.items()}
PAPER_MARK = "†"  # results.md: the rows of the paper's Table 12

CSV_FIELDS = ("method", "label", "n_seeds", "seeds", "final_top1_mean", "final_top1_std",
              "best_top1_mean", "best_top1_std", "final_top1_per_seed", "best_epoch_per_seed",
              "paper_top1_mean", "paper_top1_std", "eval_split", "dataset", "arch",
              "num_epochs", "recipe")


def mean_std(values: Sequence[float]):
  """Mean and sample standard deviation (n - 1); std is None for fewer than 2 values."""
  if not values:
    return None, None
  mean = statistics.fmean(values)
  std = statistics.stdev(values) if len(values) > 1 else None
  return mean, std


def _seed(summary: Mapping) -> Optional[int]:
  return summary.get("config", {}).get("seed")


def method_row(method: str, summaries: Sequence[Mapping]) -> dict:
  """One table row from the finished runs (one summary per seed) of `method`."""
  summaries = sorted(summaries, key=lambda s: (_seed(s) is None, _seed(s) or 0))
  final = [float(s["final"]["student_top1"]) for s in summaries]
  best = [float(s["best"]["student_top1"]) for s in summaries]
  final_mean, final_std = mean_std(final)
  best_mean, best_std = mean_std(best)
  first = summaries[0] if summaries else {}
  # The runs' own label (summary.json, `training.identity`): the preset's, or the preset's
  # and what the runs changed, in which case the paper's number is not theirs.
  changed = bool(first.get("changes"))
  paper = (None, None) if changed else PAPER.get(method, (None, None))
  cfg = first.get("config", {})
  return {
      "method": method,
      "label": first.get("label") or LABELS.get(method, method),
      "n_seeds": len(summaries),
      "seeds": [_seed(s) for s in summaries],
      "final_top1": final,
      "final_top1_mean": final_mean,
      "final_top1_std": final_std,
      "best_top1": best,
      "best_epoch": [int(s["best"].get("epoch", 0)) for s in summaries],
      "best_top1_mean": best_mean,
      "best_top1_std": best_std,
      "paper_top1_mean": paper[0],
      "paper_top1_std": paper[1],
      "eval_split": sorted({s.get("eval_split", "test") for s in summaries}),
      "num_eval": sorted({s.get("num_eval") for s in summaries if s.get("num_eval")}),
      "dataset": first.get("dataset", cfg.get("dataset")),
      "arch": cfg.get("model", {}).get("arch"),
      "num_epochs": cfg.get("num_epochs"),
      "holdout": cfg.get("holdout", 0),
      # The training recipe (runs of versions without the key trained under jointrd's).
      "recipe": cfg.get("recipe", recipes.DEFAULT),
      "recipe_text": recipes.describe(cfg) if "optimizer" in cfg else "",
  }


def aggregate(summaries: Mapping[str, Sequence[Mapping]],
              methods: Optional[Sequence[str]] = None) -> List[dict]:
  """Rows in `methods` order (default: the mapping's), one per method, even with no runs."""
  methods = list(summaries) if methods is None else list(methods)
  return [method_row(m, summaries.get(m, ())) for m in methods]


def _pm(mean, std, digits=2) -> str:
  if mean is None:
    return "-"
  if std is None:
    return f"{mean:.{digits}f} (1 seed)"
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _epochs(n) -> str:
  return "" if not n else f"{n} epoch" + ("" if n == 1 else "s")


def setting_of(rows: Sequence[Mapping]) -> str:
  """'cifar100, resnet50, 200 epochs, jointrd recipe': the setting of the first method
  with finished runs."""
  first = next((r for r in rows if r["n_seeds"]), {})
  recipe = first.get("recipe") and f"{first['recipe']} recipe"
  return ", ".join(str(x) for x in (first.get("dataset"), first.get("arch"),
                                    _epochs(first.get("num_epochs")), recipe) if x)


def eval_split_of(rows: Sequence[Mapping]) -> str:
  splits = {s for r in rows for s in r["eval_split"]}
  if "holdout" in splits:
    return "holdout" if splits == {"holdout"} else "mixed"
  return "test"


def split_words(split: str) -> str:
  return {"holdout": "held-out validation", "test": "test",
          "mixed": "mixed test / held-out validation"}.get(split, split)


SMOKE_DATASET = "synthetic"  # what every `:smoke` config trains on


def smoke_banner(dataset: Optional[str]) -> str:
  """The line that heads a sweep's output when its runs train on synthetic data (every
  `:smoke` variant does): their numbers check the plumbing, they do not rank methods."""
  if str(dataset or "").lower() != SMOKE_DATASET:
    return ""
  return ("**Smoke variant: this checks the plumbing, not accuracy.** Every run trained, "
          "evaluated and reached this table, but on synthetic data and a few steps the numbers "
          "do not rank the methods (several may show the same top-1); for results, run the "
          "config without `:smoke` on a real dataset.")


def render_markdown(rows: Sequence[Mapping], notes: Sequence[str] = (),
                    title: str = "Table 12") -> str:
  """The table as Markdown: one row per method, the paper's number beside ours."""
  split = eval_split_of(rows)
  words = split_words(split)
  done = [r for r in rows if r["n_seeds"]]
  first = done[0] if done else {}
  setting = setting_of(rows)
  n_eval = sorted({n for r in done for n in r["num_eval"]})
  out = [f"# {title}: {setting}" if setting else f"# {title}", ""]
  banner = smoke_banner(first.get("dataset"))
  if banner:
    out += [banner, ""]
  if first.get("recipe_text"):
    out += [f"Training {first['recipe_text']} (`--config.base.recipe`).", ""]
  what = f"Student top-1 (%) on the **{words}** split"
  if n_eval:
    what += f" ({'/'.join(str(n) for n in n_eval)} images)"
  out.append(what + " after the **final epoch**: mean ± sample std (n - 1) over seeds. "
             "Best epoch: the best epoch's accuracy on the same split (as the official release "
             "reports; selected on the evaluation data), a labelled extra, not the result.")
  out.append("")
  if split in ("holdout", "mixed"):
    holdouts = sorted({r["holdout"] for r in done if r.get("holdout")})
    out.append(f"**Held-out validation:** evaluated on {'/'.join(map(str, holdouts)) or 'N'} "
               "training images held out of training (a different subset per seed, drawn with "
               "the run's seed); the test set was not used. The paper's numbers are test-set "
               "accuracies.")
    out.append("")
  header = ("| method | seeds | final top-1 (mean ± std) | per seed | best epoch (extra) "
            "| paper (Table 12) |")
  out += [header, "|---|---|---|---|---|---|"]
  for r in rows:
    per_seed = ", ".join(f"s{s}: {v:.2f}" for s, v in zip(r["seeds"], r["final_top1"])) or "-"
    mark = f" {PAPER_MARK}" if r["paper_top1_mean"] is not None else ""
    out.append(f"| {r['label']}{mark} | {r['n_seeds']} | {_pm(r['final_top1_mean'], r['final_top1_std'])} "
               f"| {per_seed} | {_pm(r['best_top1_mean'], r['best_top1_std'])} "
               f"| {_pm(r['paper_top1_mean'], r['paper_top1_std'])} |")
  out.append("")
  notes = list(notes)
  if any(r["paper_top1_mean"] is not None for r in rows):
    notes.insert(0, f"{PAPER_MARK} a row of the paper's Table 12 (its number in the last "
                 "column); the other rows are not in the paper.")
  if done and any(first.get(k) != v for k, v in PAPER_SETTING.items()):
    notes.append(f"The paper's numbers are CIFAR-100, ResNet-50 teacher and plain-CNN 50 students, "
                 f"200 epochs, test set; this sweep ({setting}) is a different setting, so the "
                 "two columns are not comparable.")
  if notes:
    out.append("Notes:")
    out += [f"- {n}" for n in notes]
    out.append("")
  return "\n".join(out)


CSV_DECIMALS = 4  # resolves top-1 on up to 10^6 images; means and stds to 1e-4 points


def _num(x) -> str:
  """A CSV number without float noise: rounded to CSV_DECIMALS, written as the shortest
  decimal that reads back as that float (7.000000000000001 -> 7.0, 78.16666 -> 78.1667)."""
  return "" if x is None else repr(round(float(x), CSV_DECIMALS) + 0.0)


def render_csv(rows: Sequence[Mapping]) -> str:
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(CSV_FIELDS)
  for r in rows:
    w.writerow([
        r["method"], r["label"], r["n_seeds"], " ".join(str(s) for s in r["seeds"]),
        _num(r["final_top1_mean"]), _num(r["final_top1_std"]), _num(r["best_top1_mean"]),
        _num(r["best_top1_std"]), " ".join(_num(v) for v in r["final_top1"]),
        " ".join(str(e) for e in r["best_epoch"]), _num(r["paper_top1_mean"]),
        _num(r["paper_top1_std"]), " ".join(r["eval_split"]), r["dataset"] or "",
        r["arch"] or "", "" if r["num_epochs"] is None else r["num_epochs"], r["recipe"]])
  return buf.getvalue()


def read_csv(path) -> Dict[str, dict]:
  """results.csv back as {method: {field: str}}."""
  with open(path, newline="") as f:
    return {r["method"]: r for r in csv.DictReader(f)}


def curve_bands(curves: Sequence[Sequence[Mapping]], key: str = "student_top1"):
  """Per-epoch mean, min and max over seeds' eval records (epochs any seed reached)."""
  by_epoch: Dict[int, List[float]] = {}
  for records in curves:
    for r in records:
      if key in r:
        by_epoch.setdefault(int(r["epoch"]), []).append(float(r[key]))
  epochs = sorted(by_epoch)
  return (epochs, [statistics.fmean(by_epoch[e]) for e in epochs],
          [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs])


def figure(curves: Mapping[str, Sequence[Sequence[Mapping]]], split: str = "test",
           title: str = "Table 12", setting: str = "",
           labels: Optional[Mapping[str, str]] = None):
  """`curves`: {method: [eval records of one seed, ...]} -> a matplotlib Figure (Agg);
  `labels`: {method: its rows' label} (default: the presets').

  Integer epoch ticks; the setting (dataset, architecture, epochs) in the title; the
  legend below the axes, where it cannot hide a curve; every method its own (colour, line
  style, marker), `reporting.series_styles`.
  """
  import matplotlib  # matplotlib (~1.5 s): only where a plot is drawn
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # matplotlib (~1.5 s): only where a plot is drawn

  fig, ax = plt.subplots(figsize=(8, 5.5), dpi=100, layout="constrained")
  # A method's style is its position in `curves` (the sweep's method order): the same
  # whichever runs have finished. About 12 markers a line, whatever the number of epochs.
  for (method, seeds), style in zip(curves.items(), reporting.series_styles(len(curves))):
    epochs, mean, lo, hi = curve_bands(seeds)
    if not epochs:
      continue
    n = sum(1 for s in seeds if s)
    line, = ax.plot(epochs, mean, markersize=4, markevery=max(1, round(len(epochs) / 12)),
                    label=f"{(labels or LABELS).get(method, method)} (n={n})", **style)
    ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    if len(epochs) < 3:  # a band of 1-2 epochs is (nearly) invisible: min..max as bars
      ax.errorbar(epochs, mean, yerr=[[m - a for m, a in zip(mean, lo)],
                                      [b - m for m, b in zip(mean, hi)]],
                  fmt="none", ecolor=line.get_color(), capsize=3, linewidth=1)
  reporting.integer_epoch_axis(ax, [e for seeds in curves.values()
                                    for e in curve_bands(seeds)[0]])
  ax.set_xlabel("epoch")
  ax.set_ylabel(f"student top-1 (%), {split_words(split)}")
  fig.suptitle(f"{title}: {setting}" if setting else title)
  ax.set_title("student top-1 per epoch: mean over seeds, band = min..max", fontsize=9)
  ax.grid(True, alpha=0.3)
  handles, labels = ax.get_legend_handles_labels()
  if handles:
    fig.legend(handles, labels, loc="outside lower center", ncols=min(3, len(handles)),
               fontsize=8, frameon=False)
  return fig


def plot(path, curves: Mapping[str, Sequence[Sequence[Mapping]]], split: str = "test",
         title: str = "Table 12", setting: str = "",
         labels: Optional[Mapping[str, str]] = None) -> None:
  """Writes `figure(...)` as a PNG to `path`."""
  fig = figure(curves, split, title, setting, labels)
  from matplotlib import pyplot as plt  # matplotlib (~1.5 s): only where a plot is drawn
  tmp = epath.Path(str(path) + ".tmp.png")
  fig.savefig(str(tmp), format="png")
  plt.close(fig)
  tmp.replace(epath.Path(path))


def _write_text(path: epath.Path, text: str) -> None:
  tmp = path.parent / (path.name + ".tmp")
  tmp.write_text(text)
  tmp.replace(path)


def write(out_dir, rows: Sequence[Mapping], curves: Mapping[str, Sequence[Sequence[Mapping]]],
          notes: Sequence[str] = (), title: str = "Table 12") -> Dict[str, str]:
  """Writes results.md, results.csv and results.png into `out_dir`; returns their paths.

  Without matplotlib the PNG is skipped (the returned dict says why under 'png_error').
  """
  out = epath.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"md": str(out / RESULTS_MD), "csv": str(out / RESULTS_CSV)}
  _write_text(out / RESULTS_MD, render_markdown(rows, notes, title))
  _write_text(out / RESULTS_CSV, render_csv(rows))
  try:
    plot(out / RESULTS_PNG, curves, eval_split_of(rows), title, setting_of(rows),
         {r["method"]: r["label"] for r in rows})
    paths["png"] = str(out / RESULTS_PNG)
  except ImportError:
    paths["png_error"] = "matplotlib is not installed (pip install matplotlib): no results.png"
  return paths
