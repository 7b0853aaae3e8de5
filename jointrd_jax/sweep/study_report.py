"""A study's report from its cells' `results.csv` (a sweep's table, one row per method):
`results.md` (final top-1 per method against the epoch budget, per depth, and the variants
beside the cell they change), `results.csv` (one line per cell x method) and `results.png`
(accuracy against the budget, and against depth at the teacher's budget)."""
import csv
import io
from typing import Dict, Mapping, Sequence

from etils import epath

from jointrd_jax.training import recipes, reporting, results

CSV_FIELDS = ("cell", "group", "arch", "width", "num_epochs", "variant", "changes", "method",
              "label", "n_seeds", "seeds", "final_top1_mean", "final_top1_std",
              "final_top1_per_seed", "best_top1_mean", "best_top1_std", "dataset", "recipe")


def _float(text: str):
  return float(text) if text not in ("", None) else None


def read_cell(path) -> list:
  """A cell's results.csv as rows: {method, label, n_seeds, seeds, final_top1 (per seed),
  final/best top1 mean and std, dataset, recipe}."""
  rows = []
  for r in results.read_csv(path).values():
    rows.append({
        "method": r["method"], "label": r["label"], "n_seeds": int(r["n_seeds"]),
        "seeds": [int(s) for s in r["seeds"].split()],
        "final_top1": [float(v) for v in r["final_top1_per_seed"].split()],
        "final_top1_mean": _float(r["final_top1_mean"]),
        "final_top1_std": _float(r["final_top1_std"]),
        "best_top1_mean": _float(r["best_top1_mean"]),
        "best_top1_std": _float(r["best_top1_std"]),
        "dataset": r["dataset"], "recipe": r["recipe"]})
  return rows


def _rows(cells, by_cell) -> list:
  """(cell, row) for every cell with results, in the cells' order."""
  return [(c, row) for c in cells if c.name in by_cell for row in by_cell[c.name]]


def _cell_pm(row) -> str:
  if not row or not row["n_seeds"]:
    return "–"
  text = results._pm(row["final_top1_mean"], row["final_top1_std"])  # pylint: disable=protected-access
  return text if "seed" in text else f"{text} (n={row['n_seeds']})"


def _table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  out += ["| " + " | ".join(line) + " |" for line in lines]
  return "\n".join(out)


def _lookup(pairs):
  return {(c.name, row["method"]): row for c, row in pairs}


def render_markdown(sc, groups, cells, by_cell) -> str:
  pairs = _rows(cells, by_cell)
  rows = _lookup(pairs)
  labels = {row["method"]: row["label"] for c, row in pairs if not c.variant}
  base = sc.base
  o = base.optimizer
  drops = " and ".join(f"{f:.0%}" for f in sorted(o.lr_drop_at))
  recipe = (f"recipe {base.get('recipe', recipes.DEFAULT)}: SGD "
            f"{'Nesterov' if o.nesterov else 'momentum'} {o.momentum:g}, "
            f"x{o.lr_drop_factor:g} at {drops or 'no point'} of each run, weight decay "
            f"{o.weight_decay:g}")
  out = ["# Study: final test top-1 (%) against epoch budget and depth", "",
         f"Data `{base.dataset}`; batch {base.batch_size}, lr {o.learning_rate:g}; "
         f"{recipe}. Each number: final-epoch student top-1, mean ± sample std over the "
         "seeds that finished (n). The teacher of every distillation run of a depth is its "
         f"ResNet run of seed {sc.teacher_seed} at {sc.teacher_budget} epochs.", ""]
  for gname, g in groups.items():
    gcells = [c for c in cells if c.group == gname and not c.variant]
    if not gcells:
      continue
    gcells.sort(key=lambda c: c.num_epochs)
    out += [f"## {g.arch}, width {g.width}", ""]
    out.append(_table(["method"] + [f"{c.num_epochs} epochs" for c in gcells],
                      [[labels.get(m, m)] + [_cell_pm(rows.get((c.name, m))) for c in gcells]
                       for m in g.methods]))
    out.append("")
  deep = [(gname, g) for gname, g in groups.items()]
  if len(deep) > 1:
    names = {gname: next((c.name for c in cells if c.group == gname and not c.variant
                          and c.num_epochs == sc.teacher_budget), "") for gname, _ in deep}
    methods = [m for _, g in deep for m in g.methods]
    methods = [m for i, m in enumerate(methods) if m not in methods[:i]]
    out += [f"## Depth, at {sc.teacher_budget} epochs", ""]
    out.append(_table(["method"] + [f"{g.arch} w{g.width}" for _, g in deep],
                      [[labels.get(m, m)] + [_cell_pm(rows.get((names[gn], m)))
                                             for gn, _ in deep] for m in methods]))
    out.append("")
  variants = [c for c in cells if c.variant]
  if variants:
    out += ["## Variants (each beside the same method without the change)", ""]
    lines = []
    for c in variants:
      plain = next((x.name for x in cells if x.group == c.group and not x.variant
                    and x.num_epochs == c.num_epochs), "")
      for m in c.methods:
        change = ", ".join(f"{k}={v}" for k, v in c.overrides)
        lines.append([c.variant, labels.get(m, m), f"{c.arch} w{c.width}, {c.num_epochs} ep",
                      change, _cell_pm(rows.get((c.name, m))), _cell_pm(rows.get((plain, m)))])
    out.append(_table(["variant", "method", "setting", "change", "with the change",
                       "without"], lines))
    out.append("")
  return "\n".join(out)


def render_csv(cells, by_cell) -> str:
  buf = io.StringIO()
  w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
  w.writeheader()
  for c, row in _rows(cells, by_cell):
    w.writerow({
        "cell": c.name, "group": c.group, "arch": c.arch, "width": c.width,
        "num_epochs": c.num_epochs, "variant": c.variant,
        "changes": ";".join(f"{k}={v}" for k, v in c.overrides), "method": row["method"],
        "label": row["label"], "n_seeds": row["n_seeds"],
        "seeds": " ".join(str(s) for s in row["seeds"]),
        "final_top1_mean": results._num(row["final_top1_mean"]),  # pylint: disable=protected-access
        "final_top1_std": results._num(row["final_top1_std"]),  # pylint: disable=protected-access
        "final_top1_per_seed": " ".join(f"{v:.4f}" for v in row["final_top1"]),
        "best_top1_mean": results._num(row["best_top1_mean"]),  # pylint: disable=protected-access
        "best_top1_std": results._num(row["best_top1_std"]),  # pylint: disable=protected-access
        "dataset": row["dataset"], "recipe": row["recipe"]})
  return buf.getvalue()


def figure(sc, groups, cells, by_cell):
  """Left: final top-1 against the epoch budget, per method, for each group with more
  than one budget; right: against depth at the teacher's budget. Mean, error bar = std."""
  import matplotlib  # deferred: 1.5 s to import, only for the figure
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # deferred: 1.5 s to import, only for the figure
  pairs = [(c, r) for c, r in _rows(cells, by_cell) if not c.variant and r["n_seeds"]]
  methods = []
  for _, g in groups.items():
    methods += [m for m in g.methods if m not in methods]
  style = dict(zip(methods, reporting.series_styles(len(methods))))
  labels = {r["method"]: r["label"] for _, r in pairs}
  fig, (ax_b, ax_d) = plt.subplots(1, 2, figsize=(11, 5.5), dpi=100, layout="constrained")
  group_list = list(groups.items())
  for gname, g in group_list:
    if len(g.budgets) < 2:
      continue
    for m in g.methods:
      pts = sorted((c.num_epochs, r) for c, r in pairs if c.group == gname and r["method"] == m)
      if pts:
        ax_b.errorbar([e for e, _ in pts], [r["final_top1_mean"] for _, r in pts],
                      yerr=[r["final_top1_std"] or 0 for _, r in pts], capsize=3,
                      label=labels.get(m, m), **style[m])
    ax_b.set_title(f"{g.arch} width {g.width}: against the epoch budget", fontsize=10)
  ax_b.set_xlabel("epochs")
  depth_names = [f"{g.arch} w{g.width}" for _, g in group_list]
  for m in methods:
    pts = [(i, r) for i, (gname, _) in enumerate(group_list) for c, r in pairs
           if c.group == gname and c.num_epochs == sc.teacher_budget and r["method"] == m]
    if pts:
      ax_d.errorbar([i for i, _ in pts], [r["final_top1_mean"] for _, r in pts],
                    yerr=[r["final_top1_std"] or 0 for _, r in pts], capsize=3,
                    label=labels.get(m, m), **style[m])
  ax_d.set_xticks(range(len(group_list)), depth_names)
  ax_d.set_xlim(-0.3, len(group_list) - 0.7)
  ax_d.set_title(f"against depth, at {sc.teacher_budget} epochs", fontsize=10)
  for ax in (ax_b, ax_d):
    ax.set_ylabel("final test top-1 (%), mean ± std over seeds")
    ax.grid(True, alpha=0.3)
  handles, names = [], []
  for ax in (ax_b, ax_d):
    for h, n in zip(*ax.get_legend_handles_labels()):
      if n not in names:
        handles.append(h)
        names.append(n)
  if handles:
    fig.legend(handles, names, loc="outside lower center", ncols=min(4, len(handles)),
               fontsize=8, frameon=False)
  fig.suptitle(f"Study on {sc.base.dataset}")
  return fig


def write(workdir, sc, groups, cells, by_cell: Mapping) -> Dict[str, str]:
  out = epath.Path(workdir)
  out.mkdir(parents=True, exist_ok=True)
  paths = {"md": str(out / results.RESULTS_MD), "csv": str(out / results.RESULTS_CSV)}
  results._write_text(out / results.RESULTS_MD, render_markdown(sc, groups, cells, by_cell))  # pylint: disable=protected-access
  results._write_text(out / results.RESULTS_CSV, render_csv(cells, by_cell))  # pylint: disable=protected-access
  from matplotlib import pyplot as plt  # deferred: 1.5 s to import, only for the figure
  fig = figure(sc, groups, cells, by_cell)
  tmp = out / (results.RESULTS_PNG + ".tmp.png")
  fig.savefig(str(tmp), format="png")
  plt.close(fig)
  tmp.replace(out / results.RESULTS_PNG)
  paths["png"] = str(out / results.RESULTS_PNG)
  return paths
