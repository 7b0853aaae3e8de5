"""A study: many Table 12 sweeps ("cells") over epoch budgets, depths and setting variants,
and one report across them (`study_report`).

`run(study_config, workdir)` takes a `configs/study_digits.py`-style config. Each group (a
depth: `arch`, `width`) gives one cell per epoch budget; each variant one more cell. Every
cell is a sweep of `jointrd_jax.sweep` in `DIR/<cell>/` (resume, status, results.md of its
own). The teacher of a group's distillation runs is its ResNet run of `teacher_seed` at
`teacher_budget` epochs, so that cell runs first; then the other groups' teacher cells, then
the remaining budgets (longest first), then the variants. The cells share `base`.

A zoo config (configs/kd_zoo.py: `pairs` instead of `groups`) has its cells from `zoo`
(teacher-student pairs x methods) and its report from `zoo_report`; the rest is the same.
"""
import ast
import copy
import os
import shutil
from typing import Callable, List, Optional

import ml_collections

from jointrd_jax import sweep as sweep_lib
from jointrd_jax.errors import UserError
from jointrd_jax.sweep import planning, study_report, zoo, zoo_report
from jointrd_jax.sweep import cell as cell_lib
from jointrd_jax.sweep.cell import Cell
from jointrd_jax.training import reporting, results
from jointrd_jax.training import workdir as workdir_lib

SWEEP_KEYS = ("launcher", "parallel", "runs_per_device", "platform", "devices", "slurm",
              "status_every_s")


def cell_name(arch: str, width: int, epochs: int, variant: str = "") -> str:
  return f"{arch}_w{width}_e{epochs}" + (f"_{variant}" if variant else "")


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def parse_variant(spec: str, groups) -> tuple:
  """'NAME:GROUP:EPOCHS:M1[+M2]:KEY=VALUE[,KEY=VALUE]' -> (name, group, epochs, methods,
  overrides). A VALUE may hold ':' (e.g. terms=+ce:0.75), not ','."""
  parts = spec.split(":", 4)
  fix = ("write each variant as NAME:GROUP:EPOCHS:METHOD[+METHOD]:KEY=VALUE[,KEY=VALUE], e.g. "
         "dist16:shallow:60:dist_dirac:loss.dist.intra_group=16")
  if len(parts) != 5 or not all(parts):
    raise UserError(f"config.variants: {spec!r} is not a variant; {fix}.")
  name, group, epochs, ms, sets = parts
  if group not in groups:
    raise UserError(f"config.variants: {spec!r} names group {group!r}; choose one of "
                    f"{', '.join(groups)}.")
  if not epochs.isdigit() or int(epochs) < 1:
    raise UserError(f"config.variants: {spec!r}: EPOCHS must be a positive integer; {fix}.")
  overrides = []
  for item in sets.split(","):
    key, eq, value = item.partition("=")
    if not eq or not key:
      raise UserError(f"config.variants: {spec!r}: {item!r} is not KEY=VALUE; {fix}.")
    overrides.append((key, _value(value)))
  return name, group, int(epochs), tuple(ms.split("+")), tuple(overrides)


def ordered_groups(sc) -> dict:
  """{name: group} in `config.order` (ConfigDict sorts its keys; the order is the study's)."""
  if not sc.groups:
    raise UserError("config.groups is empty; give at least one group (arch, width, budgets, "
                    "methods, seeds).")
  order = tuple(sc.order)
  if sorted(order) != sorted(sc.groups.keys()):
    raise UserError(f"config.order={order} must name every group of config.groups once "
                    f"({', '.join(sorted(sc.groups.keys()))}).")
  return {name: sc.groups[name] for name in order}


def is_zoo(sc) -> bool:
  """Whether `sc` is a zoo config (configs/kd_zoo.py: `pairs`) rather than a study's
  (configs/study_digits.py: `groups`)."""
  return "pairs" in sc


def cells(sc) -> List[Cell]:
  """The study's cells in the order they run (see the module docstring; a zoo's: `zoo`)."""
  if is_zoo(sc):
    return zoo.cells(sc)
  groups = ordered_groups(sc)
  teacher_cells, rest = [], []
  for gname, g in groups.items():
    budgets = tuple(g.budgets)
    if not budgets or not all(isinstance(b, int) and b >= 1 for b in budgets):
      raise UserError(f"config.groups.{gname}.budgets={budgets} must be positive integers "
                      "(epochs).")
    if sc.teacher_budget not in budgets or "resnet" not in g.methods:
      raise UserError(f"config.groups.{gname} must train its teacher: include "
                      f"{sc.teacher_budget} (config.teacher_budget) in its budgets and "
                      "'resnet' in its methods.")
    if sc.teacher_seed not in g.seeds:
      raise UserError(f"config.teacher_seed={sc.teacher_seed} is not among "
                      f"config.groups.{gname}.seeds={tuple(g.seeds)}; add it.")
    tname = cell_name(g.arch, g.width, sc.teacher_budget)
    for epochs in sorted(budgets, reverse=True):
      c = Cell(cell_name(g.arch, g.width, epochs), gname, g.arch, g.width, epochs,
               tuple(g.methods), tuple(g.seeds),
               teacher_cell="" if epochs == sc.teacher_budget else tname)
      (teacher_cells if epochs == sc.teacher_budget else rest).append(c)
  for spec in sc.variants:
    name, gname, epochs, ms, overrides = parse_variant(spec, groups)
    g = groups[gname]
    rest.append(Cell(cell_name(g.arch, g.width, epochs, name), gname, g.arch, g.width, epochs,
                     ms, tuple(g.seeds), name, overrides,
                     cell_name(g.arch, g.width, sc.teacher_budget)))
  out = teacher_cells + rest
  names = [c.name for c in out]
  if len(set(names)) != len(names):
    raise UserError(f"config.variants: two cells are named alike ({names}); give each "
                    "variant its own NAME.")
  return cell_lib.selected(out, sc.cells, "the study's")


def teacher_dir(workdir: str, sc, cell: Cell) -> str:
  if cell.teacher_path:
    return cell.teacher_path
  return os.path.join(os.path.abspath(workdir), cell.teacher_cell, planning.RUNS_SUBDIR,
                      "resnet", f"seed{sc.teacher_seed}")


def sweep_config(sc, cell: Cell, workdir: str):
  """The Table 12 sweep config of one cell."""
  c = copy.deepcopy(sc.base)
  c.model.arch, c.model.width, c.num_epochs = cell.arch, cell.width, cell.num_epochs
  for key, value in cell.overrides:
    node, *path = [c] + key.split(".")
    for part in path[:-1]:
      node = node.get(part) if hasattr(node, "get") else None
    if not hasattr(node, "get") or path[-1] not in node:
      raise UserError(f"config.variants: {cell.variant}: {key} is no key of the run config "
                      "(configs/default.py); name one, e.g. loss.dist.intra_group=16.")
    try:
      node[path[-1]] = value
    except TypeError as e:
      raise UserError(f"config.variants: {cell.variant}: {key}={value!r}: {e}") from None
  given = cell.teacher_cell or cell.teacher_path
  # The teacher's seed, where the cell trains its teacher (a given one is trained already).
  trains = not given and any(planning.needs_frozen_teacher(planning.run_config(c, m, 0, ""))
                             for m in cell.methods)
  s = ml_collections.ConfigDict(dict(
      base=c, methods=cell.methods, seeds=cell.seeds,
      teacher_checkpoint=teacher_dir(workdir, sc, cell) if given else "",
      teacher_seed=sc.teacher_seed if trains else 0))
  for key in SWEEP_KEYS:
    s[key] = copy.deepcopy(sc[key])
  return s


def run(sc, workdir: str, *, say: Callable[[str], None] = print,
        only_report: bool = False, poll_s: Optional[float] = None):
  """Every cell's sweep in order (a cell whose teacher has not finished is skipped), then
  the study's report from the cells' results.csv. With `only_report`, a cell whose runs
  are here has its table rewritten from them; a published copy (`publish`: tables and
  metrics, no runs) is reported from its tables. Returns (sweep results by cell name,
  paths of the report, names of failed runs)."""
  todo = cells(sc)
  # Every cell's config is checked before the first run starts (a mistake in the last
  # variant must not wait for hours of runs).
  configs = {cell.name: sweep_config(sc, cell, workdir) for cell in todo}
  if not only_report:
    for s in configs.values():
      planning.check_sweep_config(s)
      planning.check_base_settings(s)
  elif not os.path.isdir(workdir):
    raise UserError(f"--report_only: {workdir} does not exist; pass the --workdir of a study.")
  swept, tables, failed = {}, {}, []
  for cell in todo:
    cell_dir = os.path.join(workdir, cell.name)
    has_runs = os.path.isdir(os.path.join(cell_dir, planning.RUNS_SUBDIR))
    if only_report and not has_runs:
      table = os.path.join(cell_dir, results.RESULTS_CSV)
      if os.path.isfile(table):
        tables[cell.name] = study_report.read_cell(table)
      continue
    if cell.teacher_cell and not workdir_lib.read_summary(teacher_dir(workdir, sc, cell)):
      say(f"study: skipping cell {cell.name}: its teacher "
          f"{teacher_dir(workdir, sc, cell)} has not finished.")
      continue
    say(f"study: cell {cell.name} ({len(cell.methods)} method(s) x {len(cell.seeds)} "
        f"seed(s), {cell.num_epochs} epochs)")
    r = sweep_lib.run(configs[cell.name], cell_dir, say=say, only_report=only_report,
                      poll_s=poll_s)
    swept[cell.name] = r
    tables[cell.name] = study_report.read_cell(r.paths["csv"])
    failed += [f"{cell.name}/{x.name}" for x in r.failed]
    if r.interrupted:
      break
  if is_zoo(sc):
    paths = zoo_report.write(workdir, sc, todo, tables)
  else:
    paths = study_report.write(workdir, sc, ordered_groups(sc), todo, tables)
  return swept, paths, failed


STUDY_WORKDIR = "<study workdir>"  # what a published copy writes for the study's folder
PUBLISHED_RUN_FILES = (workdir_lib.CONFIG_FILE, workdir_lib.SUMMARY_FILE, reporting.METRICS_FILE)


def publish(sc, workdir: str, dest: str) -> int:
  """Copies the study's report, each cell's tables and each finished run's config, summary
  and metrics (no checkpoints) to `dest` (e.g. docs/study, to commit); `--report_only
  --workdir=DEST` rebuilds the report from them. Paths inside the study's workdir (a
  teacher's, in configs and notes) are written `<study workdir>/...`: the copy names no
  folder of the machine it came from. Returns the number of runs copied."""
  if os.path.abspath(dest) == os.path.abspath(workdir):
    raise UserError("--publish names the study's own workdir; give another folder.")
  os.makedirs(dest, exist_ok=True)
  root = os.path.abspath(workdir)

  def copy(src: str, dst: str) -> None:
    if src.endswith(".png"):
      shutil.copyfile(src, dst)
      return
    with open(src) as f:
      text = f.read().replace(root, STUDY_WORKDIR)
    with open(dst, "w") as f:
      f.write(text)

  for name in (results.RESULTS_MD, results.RESULTS_CSV, results.RESULTS_PNG):
    copy(os.path.join(workdir, name), os.path.join(dest, name))
  copied = 0
  for cell in cells(sc):
    src = os.path.join(workdir, cell.name)
    if not os.path.isfile(os.path.join(src, results.RESULTS_CSV)):
      continue
    out = os.path.join(dest, cell.name)
    os.makedirs(out, exist_ok=True)
    for name in (results.RESULTS_MD, results.RESULTS_CSV, results.RESULTS_PNG):
      if os.path.isfile(os.path.join(src, name)):
        copy(os.path.join(src, name), os.path.join(out, name))
    for method in cell.methods:
      for seed in cell.seeds:
        run_dir = os.path.join(src, planning.RUNS_SUBDIR, method, f"seed{seed}")
        summary = workdir_lib.read_summary(run_dir)
        if not summary or summary.get("epochs_done") != cell.num_epochs:
          continue
        to = os.path.join(out, "metrics", method, f"seed{seed}")
        os.makedirs(to, exist_ok=True)
        for name in PUBLISHED_RUN_FILES:
          if os.path.isfile(os.path.join(run_dir, name)):
            copy(os.path.join(run_dir, name), os.path.join(to, name))
        copied += 1
  return copied
