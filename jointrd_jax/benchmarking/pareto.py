"""Accuracy against cost: trained runs and their exports as (latency at batch 1, top-1)
points, the Pareto front, `pareto.png` and `pareto.md`
(`experiments.inference_benchmark --runs=...`).

A run is `RUN[=EXPORT_DIR]`: its workdir (a finished run: `summary.json`) and the export of
its network (default `RUN/export`, written by `python -m experiments.export --workdir=RUN
--out=RUN/export`; `--quantize=int8` adds the int8 models). A run without an export is
refused with one line saying how to export it: latency and int8 accuracy are measured on
the exported files. Every export is first checked against its SHA256SUMS as `predict` and
`deploy.load` check it (`deploy.package.verify`): a modified, missing or unlisted file is
refused in one line naming it (`verify=False`, `--noverify`: exports made before packages).

Points, one per network and precision:
- fp32: top-1 = the run's final-epoch evaluation (`summary.json` `final.student_top1`, on
  its `num_eval` images); latency = the export's fp32 model for the runtime
  (`model.tflite` / `model.onnx`);
- int8: top-1 = the export's int8 check (`export.json` `int8.tflite_int8.top1_int8` or
  `int8.onnx_int8.top1_int8`, on its `num_images` check images, next to the fp32
  model's `top1_fp32` on the same images); latency = `model_int8.tflite` /
  `model_int8.onnx`. An export without an `int8` section (written before int8 existed,
  or without `--quantize=int8`) gives the fp32 point only, and `pareto.md` says so.

The front: the points no other point dominates (another is at most as slow and at least
as accurate, and strictly better in one of the two).

Each run is numbered (1, 2, ... in the order given) and labelled by its method (the
tables' name of `summary.json`'s `method`; with the architecture, then the seed, where two
runs would share a label): `pareto.png` marks its points with the number and lists the
numbers' methods beside the axes (`pareto_plot`); `pareto.md` has both columns.
"""
from __future__ import annotations

import itertools
import json
import os

from jointrd_jax.benchmarking import pareto_plot, runtime_case
from jointrd_jax.benchmarking.deployment import FILE_NAMES
from jointrd_jax.deploy import files, package
from jointrd_jax.errors import UserError
from jointrd_jax.methods import presets

EXPORT_DIR = "export"  # a run's default export directory, RUN/export
INT8_SECTIONS = {"litert": "tflite_int8", "onnxruntime": "onnx_int8"}
PNG_FILE, MD_FILE = "pareto.png", "pareto.md"
EXPORT_HELP = ("export it first: python -m experiments.export --workdir={run} --out={export} "
               "--quantize=int8 (or give RUN=EXPORT_DIR)")


def parse_runs(text: str) -> list:
  """`[(run_dir, export_dir)]` of `RUN[=EXPORT_DIR],...` (default export: RUN/export)."""
  out = []
  for item in (x.strip() for x in str(text).split(",")):
    if not item:
      continue
    run, _, export = item.partition("=")
    run = run.strip()
    if not run:
      raise UserError(f"{item!r} names no run directory; write RUN or RUN=EXPORT_DIR.")
    out.append((run, export.strip() or os.path.join(run, EXPORT_DIR)))
  if not out:
    raise UserError(f"{text!r} names no run; write RUN[=EXPORT_DIR],... .")
  dup = [r for r, n in itertools.groupby(sorted(os.path.realpath(r) for r, _ in out))
         if len(list(n)) > 1]
  if dup:
    raise UserError(f"run {dup[0]} is named twice.")
  return out


def _json(path: str, what: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {what} {path}: {e}.") from None


def _names(run_dirs) -> list:
  """Short unique names: the run folder's name, with its parent's where two agree."""
  parts = [os.path.normpath(os.path.abspath(r)).split(os.sep) for r in run_dirs]
  for depth in range(1, max(len(p) for p in parts) + 1):
    names = ["/".join(p[-depth:]) for p in parts]
    if len(set(names)) == len(names):
      return names
  return names


def method_labels(runs) -> list:
  """Each run's label: the label its summary records (what it trained, preset plus changes;
  older runs: its method's name in the tables, `presets.METHODS[m].label`), then
  with its architecture, then its seed, then its folder, until the labels are unique."""
  base = [r.get("run_label") or (presets.METHODS[r["method"]].label or r["method"]
                                  if r["method"] in presets.METHODS else r["method"] or r["name"])
          for r in runs]
  extras = (lambda r: r["arch"], lambda r: None if r["seed"] is None else f"seed {r['seed']}",
            lambda r: r["name"])
  labels = list(base)
  for extra in extras:
    if len(set(labels)) == len(labels):
      break
    labels = [l if labels.count(l) == 1 else ", ".join(str(x) for x in (l, extra(r))
                                                       if x is not None)
              for l, r in zip(labels, runs)]
  return labels


def read_runs(specs, runtime: str, verify: bool = True) -> list:
  """Each run's facts for `points`, every problem refused with one line before any work.
  `verify`: each export's files are checked against its SHA256SUMS first, as `predict`
  and `deploy.load` check them (`package.verify`)."""
  runs = []
  for (run, export), name in zip(specs, _names([r for r, _ in specs])):
    if not os.path.isdir(run):
      raise UserError(f"run {run} does not exist.")
    summary_path = os.path.join(run, "summary.json")
    if not os.path.isfile(summary_path):
      raise UserError(f"run {run} has no summary.json: it has not finished (or is not a "
                      "run's workdir).")
    summary = _json(summary_path, "the run summary")
    top1 = (summary.get("final") or {}).get("student_top1")
    student = summary.get("student") or {}
    if top1 is None or not student:
      raise UserError(f"{summary_path} has no final student_top1 or student network; was it "
                      "written by experiments.main?")
    report_path = os.path.join(export, "export.json")
    if not os.path.isfile(report_path):
      raise UserError(f"run {run} has no export in {export} (no export.json); "
                      + EXPORT_HELP.format(run=run, export=export) + ".")
    if verify:
      package.verify(export, needed=(files.REPORT_FILE, FILE_NAMES[runtime, "fp32"],
                                     FILE_NAMES[runtime, "int8"]))
    report = _json(report_path, "the export report")
    arch = report.get("architecture") or {}
    shared = sorted(set(arch) & set(student))  # an older export may lack a field
    same = bool(shared) and all(arch[k] == student[k] for k in shared)
    if not same or report.get("passed") is False:
      why = "did not pass its checks" if same else (
          f"holds another network ({ {k: arch[k] for k in shared} }) than the run's "
          f"({ {k: student[k] for k in shared} })")
      raise UserError(f"the export {export} {why}; " + EXPORT_HELP.format(run=run, export=export)
                      + ".")
    fp32 = os.path.join(export, FILE_NAMES[runtime, "fp32"])
    if not os.path.isfile(fp32):
      raise UserError(f"the export {export} has no {os.path.basename(fp32)} for --runtime="
                      f"{runtime}; re-export it with this version (or choose the other "
                      "runtime).")
    entry = {"name": name, "run_dir": run, "export_dir": export,
             "method": summary.get("method"), "run_label": summary.get("label"),
             "arch": (summary.get("config") or {}).get("model", {}).get("arch"),
             "seed": (summary.get("config") or {}).get("seed"),
             "number": len(runs) + 1, "shortcuts": student.get("shortcuts"),
             "conv": student.get("conv"), "width": student.get("width"),
             "image_shape": [int(d) for d in report["input"]["shape"][1:]],
             "files": {"fp32": fp32}, "top1": {"fp32": float(top1)},
             "top1_images": {"fp32": summary.get("num_eval")}, "notes": []}
    _read_int8(entry, report, runtime, export)
    runs.append(entry)
  for run, label in zip(runs, method_labels(runs)):
    run["label"] = label
  return runs


def _read_int8(entry: dict, report: dict, runtime: str, export: str) -> None:
  section = (report.get("int8") or {}).get(INT8_SECTIONS[runtime])
  path = os.path.join(export, FILE_NAMES[runtime, "int8"])
  if not section:
    entry["notes"].append("fp32 only: its export has no int8 models (export with "
                          "--quantize=int8)")
  elif not os.path.isfile(path):
    entry["notes"].append(f"fp32 only: {os.path.basename(path)} is missing from the export")
  elif section.get("top1_int8") is None:
    entry["notes"].append("fp32 only: the export checked int8 on unlabelled (random) images, "
                          "so it has no int8 accuracy")
  else:
    entry["files"]["int8"] = path
    entry["top1"]["int8"] = 100.0 * float(section["top1_int8"])
    entry["top1_images"]["int8"] = section.get("num_images")
    fp32_same = section.get("top1_fp32")
    entry["int8_fp32_same_images"] = None if fp32_same is None else 100.0 * float(fp32_same)


def points(runs, latency) -> list:
  """One point per (run, precision): `latency[(name, precision)]` is a `runtime_case`
  record (median / p90 ms)."""
  out = []
  for run in runs:
    for precision in run["files"]:
      lat = latency[run["name"], precision]
      out.append({"name": run["name"], "precision": precision,
                  "number": run["number"], "label": run["label"], "method": run["method"],
                  "arch": run["arch"], "shortcuts": run["shortcuts"], "conv": run["conv"],
                  "latency_ms": lat["latency_ms_median"], "latency_ms_p90": lat["latency_ms_p90"],
                  "top1": run["top1"][precision], "top1_images": run["top1_images"][precision],
                  "fp32_top1_same_images": (run.get("int8_fp32_same_images")
                                            if precision == "int8" else None),
                  "model_bytes": os.path.getsize(run["files"][precision])})
  return out


def front(pts) -> list:
  """Whether each point is on the Pareto front (lower latency, higher top-1): sorted by
  latency, a point is dominated when a faster point is at least as accurate or a point
  as fast is more accurate."""
  on = [False] * len(pts)
  best_faster = float("-inf")  # best top-1 among strictly faster points
  order = sorted(range(len(pts)), key=lambda i: pts[i]["latency_ms"])
  for _, group in itertools.groupby(order, key=lambda i: pts[i]["latency_ms"]):
    group = list(group)
    best_here = max(pts[i]["top1"] for i in group)
    for i in group:
      on[i] = pts[i]["top1"] > best_faster and pts[i]["top1"] == best_here
    best_faster = max(best_faster, best_here)
  return on


def write_png(pts, on, runs, path: str, title: str) -> None:
  pareto_plot.write(pts, on, {r["name"]: r["label"] for r in runs}, path, title)


def markdown(pts, on, runs, header_lines) -> str:
  lines = ["# Accuracy against latency", ""] + list(header_lines) + [
      "",
      "fp32 top-1: the run's final-epoch evaluation (summary.json); int8 top-1: the "
      "export's int8 check (export.json `int8`), next to the fp32 model's top-1 on the "
      "same images.", "",
      "| # | network | method | shortcuts | conv | precision | latency ms (median) | p90 ms | "
      "top-1 % | on images | fp32 top-1 % on the same images | model MiB | Pareto front |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  fmt = lambda v, spec: "-" if v is None else format(v, spec)
  for p, o in sorted(zip(pts, on), key=lambda x: x[0]["latency_ms"]):
    lines.append(
        f"| {p['number']} | {p['name']} | {p['label']} | {p['shortcuts']} | {p['conv']} | "
        f"{p['precision']} | "
        f"{p['latency_ms']:.2f} | {p['latency_ms_p90']:.2f} | {p['top1']:.2f} | "
        f"{fmt(p['top1_images'], 'd')} | {fmt(p['fp32_top1_same_images'], '.2f')} | "
        f"{p['model_bytes'] / 2**20:.2f} | {'yes' if o else ''} |")
  notes = [f"- {r['name']}: {n}" for r in runs for n in r["notes"]]
  return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def write(out_dir: str, pts, runs, header_lines, title: str) -> dict:
  """`pareto.png` and `pareto.md` in `out_dir`; returns their paths."""
  on = front(pts)
  os.makedirs(out_dir, exist_ok=True)
  png, md = os.path.join(out_dir, PNG_FILE), os.path.join(out_dir, MD_FILE)
  write_png(pts, on, runs, png, title)
  with open(md, "w") as f:
    f.write(markdown(pts, on, runs, header_lines))
  return {"png": png, "md": md, "front": on}


def measure(runs, runtime: str, *, threads: int, iters: int, warmup: int,
            time_budget_s: float, on_point=None) -> dict:
  """`{(name, precision): runtime_case record}`: each run's model files at batch 1 with
  `threads` threads, each in a fresh process; `time_budget_s` shared by all."""
  cases = [(r, p) for r in runs for p in r["files"]]
  out = {}
  for run, precision in cases:
    rec = runtime_case.measure(run["files"][precision], runtime, threads=threads, batch=1,
                               image_shape=run["image_shape"], iters=iters, warmup=warmup,
                               time_budget_s=time_budget_s / len(cases))
    out[run["name"], precision] = rec
    if on_point:
      on_point(run, precision, rec)
  return out
