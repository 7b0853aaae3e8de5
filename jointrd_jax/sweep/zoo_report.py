"""The zoo's report (configs/kd_zoo.py) from its cells' `results.csv`: one row per pair x
(teacher, student from scratch, each method), ours (final top-1, mean ± std over seeds)
beside the published number and its source, as Table 12's rows carry the paper's.
`results.md`, `results.csv` and `results.png` (ours against the published number)."""
import csv
import io
from typing import Dict, Mapping

from etils import epath

from jointrd_jax.sweep import study_report, zoo
from jointrd_jax.training import recipes, results
from jointrd_jax.training import workdir as workdir_lib

REPDISTILLER = "RepDistiller README (HobbitLong/RepDistiller@0eb3a95)"
MDISTILLER = "mdistiller README (megvii-research/mdistiller@a08d46f)"
LS = "logit-standardization-KD README (sunshangquan/logit-standardization-KD@07356ad)"
# Each published column's source (docs/zoo.md). DIST's README has no CIFAR-100 table and
# JointRD has no published zoo number: their columns stay empty.
SOURCES = {"teacher": REPDISTILLER, "student": REPDISTILLER, "kd": REPDISTILLER,
           "dkd": MDISTILLER, "kd_ls": LS}
COLUMNS = ("teacher", "student", "kd", "dkd", "kd_ls")
_N = None
# CIFAR-100 test top-1 (%) as published: teacher, student from scratch, KD, DKD, KD + LS.
PUBLISHED = {pair: dict(zip(COLUMNS, values)) for pair, values in {
    "resnet56:resnet20": (72.34, 69.06, 70.66, 71.97, 71.43),
    "resnet110:resnet32": (74.31, 71.14, 73.08, 74.11, 74.17),
    "resnet32x4:resnet8x4": (79.42, 72.50, 73.33, 76.32, 76.62),
    "wrn_40_2:wrn_16_2": (75.61, 73.26, 74.92, 76.24, 76.11),
    "wrn_40_2:wrn_40_1": (75.61, 71.98, 73.54, 74.81, 74.37),
    "vgg13:vgg8": (74.64, 70.36, 72.98, 74.68, 74.36),
    "vgg13:mobilenetv2": (74.64, 64.60, 67.37, 69.71, 68.61),
    "resnet50:mobilenetv2": (79.34, 64.60, 67.35, 70.35, 69.02),
    "resnet50:vgg8": (79.34, 70.36, 73.81, _N, _N),
    "resnet32x4:shufflenetv1": (79.42, 70.50, 74.07, 76.45, _N),
    "resnet32x4:shufflenetv2": (79.42, 71.82, 74.45, 77.07, 75.56),
    "wrn_40_2:shufflenetv1": (75.61, 70.50, 74.83, 76.70, _N),
}.items()}
# A number whose source is not its column's.
SOURCE_OF = {("wrn_40_2:wrn_16_2", "dkd"): f"{LS} (mdistiller's README: 76.23)"}
# The published setting: what our rows must share to be compared with the published ones.
PUBLISHED_SETTING = {"dataset": "cifar100", "num_epochs": 240, "recipe": "mdistiller"}

CSV_FIELDS = ("pair", "teacher", "student", "row", "label", "cell", "preset", "n_seeds",
              "seeds", "final_top1_mean", "final_top1_std", "final_top1_per_seed",
              "published_top1", "published_source", "dataset", "recipe")


def published(pair: str, row: str):
  """(number, source) as published for `row` of `pair`; (None, '') where none is."""
  value = PUBLISHED.get(pair, {}).get(row)
  if value is None:
    return None, ""
  return value, SOURCE_OF.get((pair, row), SOURCES[row])


def _teacher(sc, pair_cells, t: str, tables) -> dict:
  """The teacher row's numbers: the imported run's summary, or the seed `teacher_seed` of
  its arch's cell."""
  given = next((c.teacher_path for c in pair_cells if c.teacher_path), "")
  if given:
    final = (workdir_lib.read_summary(given) or {}).get("final", {}).get("student_top1")
    return {"cell": "", "seeds": [], "final_top1": [] if final is None else [float(final)],
            "label": f"teacher {t} (imported: {given})", "preset": zoo.SCRATCH}
  row = _row(tables, zoo.arch_cell(t), zoo.SCRATCH)
  pick = [(s, v) for s, v in zip(row.get("seeds", []), row.get("final_top1", []))
          if s == sc.teacher_seed]
  return {"cell": zoo.arch_cell(t), "seeds": [s for s, _ in pick],
          "final_top1": [v for _, v in pick], "label": f"teacher {t}", "preset": zoo.SCRATCH,
          "dataset": row.get("dataset"), "recipe": row.get("recipe")}


def _row(tables, cell: str, preset: str) -> dict:
  return next((r for r in tables.get(cell, ()) if r["method"] == preset), {})


def rows(sc, cells, tables: Mapping) -> list:
  """The table's rows, pair by pair (config.pairs' order)."""
  methods = tuple(sc.methods)
  out = []
  for t, s in zoo.parse_pairs(sc):
    pair = f"{t}:{s}"
    pair_cells = [c for c in cells if c.pair == pair]
    if not pair_cells:
      continue
    lines = [("teacher", _teacher(sc, pair_cells, t, tables))]
    scratch = _row(tables, zoo.arch_cell(s), zoo.SCRATCH)
    lines.append(("student", dict(scratch, cell=zoo.arch_cell(s), preset=zoo.SCRATCH,
                                  label=f"student {s}, from scratch")))
    for m in methods:
      cell = zoo.pair_cell(pair, plain=m in zoo.PLAIN_METHODS)
      if not any(c.name == cell for c in pair_cells):
        continue
      preset, label = zoo.METHODS[m]
      lines.append((m, dict(_row(tables, cell, preset), cell=cell, preset=preset,
                            label=label)))
    for name, r in lines:
      values = r.get("final_top1", [])
      mean, std = results.mean_std(values)
      number, source = published(pair, name)
      out.append({"pair": pair, "teacher": t, "student": s, "row": name, "label": r["label"],
                  "cell": r["cell"], "preset": r["preset"], "n_seeds": len(values),
                  "seeds": r.get("seeds", []), "final_top1": values,
                  "final_top1_mean": mean, "final_top1_std": std,
                  "published_top1": number, "published_source": source,
                  "dataset": r.get("dataset") or "", "recipe": r.get("recipe") or ""})
  return out


def _ours(r) -> str:
  if not r["n_seeds"]:
    return "–"
  if r["row"] == "teacher":
    seed = f"seed {r['seeds'][0]}" if r["seeds"] else "imported"
    return f"{r['final_top1'][0]:.2f} ({seed})"
  return study_report._cell_pm(r)  # pylint: disable=protected-access


def notes(sc, cells) -> list:
  out = []
  setting = {"dataset": sc.base.dataset, "num_epochs": int(sc.base.num_epochs),
             "recipe": sc.base.get("recipe", recipes.DEFAULT)}
  if any(setting[k] != v for k, v in PUBLISHED_SETTING.items()):
    out.append(f"This study's setting ({setting['dataset']}, {setting['num_epochs']} epochs, "
               f"recipe {setting['recipe']}) is not the published one (cifar100, 240 epochs, "
               "mdistiller's recipe): the two columns are not comparable.")
  for pair, why in zoo.jointrd_pairs(sc).items():
    if why and any(c.pair == pair for c in cells):
      out.append(f"JointRD is not run for {pair}: {why}")
  if "dist" in tuple(sc.methods):
    out.append("DIST: no published CIFAR-100 number (DIST's README, hunto/DIST_KD, has no "
               "CIFAR table); its column stays empty.")
  return out


def render_markdown(sc, cells, table) -> str:
  base = sc.base
  lr = zoo.SMALL_LR if sc.small_student_lr is None else sc.small_student_lr
  out = ["# The CIFAR-100 distillation zoo: ours beside the published numbers", ""]
  banner = results.smoke_banner(base.dataset)
  if banner:
    out += [banner, ""]
  out += [f"Data `{base.dataset}`, {int(base.num_epochs)} epochs, batch {base.batch_size}; "
          f"{recipes.describe(base)} (lr {lr:g} for the MobileNet and ShuffleNet "
          "networks). Ours: final-epoch test top-1 (%), mean ± sample std over the "
          "seeds that finished (n); the teacher: the one run every student of the pair "
          "distils. Students of KD, DKD, DIST and KD + LS: the reference networks (with "
          "their shortcuts); JointRD's: the plain Dirac twin.", ""]
  out.append(study_report._table(  # pylint: disable=protected-access
      ["pair", "row", "ours: final top-1", "published", "source"],
      [[r["pair"].replace(":", " -> "), r["label"], _ours(r),
        "" if r["published_top1"] is None else f"{r['published_top1']:.2f}",
        r["published_source"]] for r in table]))
  out.append("")
  lines = notes(sc, cells)
  if lines:
    out += ["Notes:"] + [f"- {n}" for n in lines] + [""]
  return "\n".join(out)


def render_csv(table) -> str:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
  w.writeheader()
  num = results._num  # pylint: disable=protected-access
  for r in table:
    w.writerow(dict(r, seeds=" ".join(str(s) for s in r["seeds"]),
                    final_top1_mean=num(r["final_top1_mean"]),
                    final_top1_std=num(r["final_top1_std"]),
                    final_top1_per_seed=" ".join(num(v) for v in r["final_top1"]),
                    published_top1=num(r["published_top1"])))
  return buf.getvalue()


def figure(table):
  """Ours against the published number, one point per row that has both."""
  import matplotlib  # deferred: 1.5 s to import, only for the figure
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # deferred: 1.5 s to import, only for the figure
  fig, ax = plt.subplots(figsize=(6.5, 6), dpi=100, layout="constrained")
  both = [r for r in table if r["n_seeds"] and r["published_top1"] is not None]
  names = list(dict.fromkeys(r["row"] for r in both))
  for name in names:
    pts = [r for r in both if r["row"] == name]
    ax.errorbar([r["published_top1"] for r in pts], [r["final_top1_mean"] for r in pts],
                yerr=[r["final_top1_std"] or 0 for r in pts], fmt="o", capsize=3,
                label=pts[0]["label"] if name in zoo.METHODS else name)
  values = [v for r in both for v in (r["published_top1"], r["final_top1_mean"])]
  if values:
    lo, hi = min(values) - 1, max(values) + 1
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
    ax.legend(fontsize=8, frameon=False)
  ax.set_xlabel("published top-1 (%)")
  ax.set_ylabel("ours: final top-1 (%), mean ± std over seeds")
  ax.grid(True, alpha=0.3)
  fig.suptitle("The distillation zoo: ours against the published numbers")
  return fig


def write(workdir, sc, cells, tables: Mapping) -> Dict[str, str]:
  out = epath.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  table = rows(sc, cells, tables)
  paths = {"md": str(out / results.RESULTS_MD), "csv": str(out / results.RESULTS_CSV),
           "png": str(out / results.RESULTS_PNG)}
  write_text = results._write_text  # pylint: disable=protected-access
  write_text(out / results.RESULTS_MD, render_markdown(sc, cells, table))
  write_text(out / results.RESULTS_CSV, render_csv(table))
  from matplotlib import pyplot as plt  # deferred: 1.5 s to import, only for the figure
  fig = figure(table)
  tmp = out / (results.RESULTS_PNG + ".tmp.png")
  fig.savefig(str(tmp), format="png")
  plt.close(fig)
  tmp.replace(out / results.RESULTS_PNG)
  return paths
