"""The zoo's students beside our plain students on the deployment runtimes, in one run
(`experiments.inference_benchmark --zoo`): each network folded (random weights: the
latency does not depend on their values), converted with the export's own code
(`deployment.model_files`, cached) and timed on LiteRT and ONNX Runtime, fp32 and int8,
each case in a fresh process (`runtime_case`); the accuracy of trained runs beside them.

A network is `ARCH[:POLICY]` (`parse_nets`): any arch of `models.arch_names()` and a
shortcut policy (default `all`: the arch as published; `resnet18:none` is our plain
ResNet-18 student). The deployed form of a plain student does not depend on how it was
trained: a Dirac (`reparam`), RepVGG or plain student folds to the same biased 3x3 convs,
so `resnet18:none` times each of them.

A conversion or a case that fails (an op a runtime cannot express) is recorded with its
one-line reason and the run goes on: the table says `failed` there.

Runs (`read_runs`): each finished run's `summary.json` gives its student (arch, shortcut
policy as recorded, width, classes) and its final-epoch top-1; it is matched to the timed
network of the same arch, policy, width and classes (a run that matches none is refused,
naming the `--arch` entry to add). Each run is a point of `zoo_<runtime>.png` (top-1
against that runtime's fp32 latency at the first batch size; `pareto_plot`).
"""
import dataclasses
import json
import os

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.benchmarking import deployment, pareto, pareto_plot, runtime_case, zoo_cost
from jointrd_jax.errors import UserError

DEFAULT_NETS = ("resnet8x4", "resnet20", "wrn_16_2", "vgg8", "mobilenetv2", "shufflenetv1",
                "shufflenetv2", "resnet18:none", "resnet50:none")
MD_FILE = "zoo.md"
PNG_FILE = "zoo_{runtime}.png"


def default_nets(width: int) -> tuple:
  """`DEFAULT_NETS`, less the ShuffleNets at a width other than 64 (they exist at 64 only)."""
  return tuple(n for n in DEFAULT_NETS
               if width == zoo_cost.zoo.REFERENCE_WIDTH or n not in zoo_cost.FIXED_WIDTH)


def parse_nets(text: str, width: int, num_classes: int, image_size: int = 32) -> list:
  """`deployment.Network`s of `ARCH[:POLICY],...`, each checked by building it as the
  benchmark does (a UserError naming the entry: an unknown arch or policy, a fixed
  network given a plain policy, a width the arch does not take)."""
  nets = []
  for item in [x.strip() for x in str(text).split(",") if x.strip()]:
    arch, _, policy = item.partition(":")
    policy = policy or "all"
    try:
      models.check_choice("arch", arch, models.arch_names())
      models.check_choice("shortcut policy", policy, models.SHORTCUTS)
      models.build(arch, policy, "none" if policy == "all" else "reparam",
                   num_classes=num_classes, width=width)
    except UserError as e:
      raise UserError(f"{item}: {e}") from None
    nets.append(deployment.Network(arch, width, policy, image_size, num_classes))
  if not nets:
    raise UserError(f"{text!r} names no network; e.g. {','.join(DEFAULT_NETS[:3])}.")
  if len(set(nets)) < len(nets):
    raise UserError(f"{text!r} names a network twice.")
  return nets


def describe(net) -> dict:
  """What a run's student is matched on: arch, recorded policy, width, classes; and the
  network's parameters and MACs per image (`zoo_cost.count_macs`)."""
  fn, params, built = zoo_cost.inference_function(net.arch, net.width, net.num_classes,
                                                    net.shortcuts)
  x = np.zeros((1,) + net.image_shape, np.float32)
  return {"arch": net.arch, "shortcuts": models.describe(built)["shortcuts"],
          "width": net.width, "num_classes": net.num_classes,
          "num_params": models.num_params(jax.tree_util.tree_leaves(params)),
          "macs": zoo_cost.count_macs(fn, params, x)}


def _summary(run: str) -> dict:
  path = os.path.join(run, "summary.json")
  if not os.path.isfile(path):
    raise UserError(f"run {run} has no summary.json: it has not finished (or is not a run's "
                    "workdir).")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read the run summary {path}: {e}.") from None


def read_runs(run_dirs, nets, facts) -> list:
  """Each run's `{name, label, top1, net}` (module doc); `facts[net]` = `describe(net)`."""
  runs = []
  for run, name in zip(run_dirs, pareto._names(run_dirs)):  # pylint: disable=protected-access
    s = _summary(run)
    student, top1 = s.get("student") or {}, (s.get("final") or {}).get("student_top1")
    arch = ((s.get("config") or {}).get("model") or {}).get("arch")
    if top1 is None or not student or not arch:
      raise UserError(f"run {run}: its summary.json has no final student_top1, student or "
                      "arch; was it written by experiments.main?")
    key = (arch, student.get("shortcuts"), student.get("width"), student.get("num_classes"))
    match = [n for n in nets if (facts[n]["arch"], facts[n]["shortcuts"], facts[n]["width"],
                                 facts[n]["num_classes"]) == key]
    if not match:
      raise UserError(f"run {run} trained {arch} (shortcuts {key[1]}, width {key[2]}, "
                      f"{key[3]} classes), which is not timed: add {arch}:{key[1]} to --arch "
                      "(and its --width).")
    runs.append({"name": name, "run_dir": run, "net": match[0], "top1": float(top1),
                 "method": s.get("method"), "run_label": s.get("label"), "arch": arch,
                 "seed": (s.get("config") or {}).get("seed")})
  for r, label in zip(runs, pareto.method_labels(runs)):
    r["label"] = label
  return runs


def _convert(net, runtime, precisions, log) -> dict:
  """`{precision: path or the failure's one line}` of `net` for `runtime` (the per-file
  cache lines left out: `run` says where the cache is once)."""
  out = {}
  quiet = lambda msg: None if " models: " in msg else log(msg)
  for precision in precisions:
    try:
      out[precision] = deployment.model_files([net], runtime, (precision,), log=quiet)[
          net, precision]
    except UserError as e:
      out[precision] = UserError(str(e))
      log(f"{net.arch}:{net.shortcuts} {runtime} {precision}: {e}")
  return out


def run(nets, runtimes, *, precisions, threads: int, batches, iters: int, warmup: int,
        time_budget_s: float, log=print, on_record=None) -> list:
  """A record per (runtime, batch, precision, network): `deployment`'s fields, or
  `failed` (the one-line reason) where the conversion or the case failed."""
  records = []
  log(f"models converted where missing, cached in {deployment.cache_root()} (delete it to "
      "convert again)")
  for runtime in runtimes:
    paths = {net: _convert(net, runtime, precisions, log) for net in nets}
    for batch in batches:
      cases = [(p, n) for p in precisions for n in nets]
      for precision, net in cases:
        base = {"runtime": runtime, **dataclasses.asdict(net), "precision": precision,
                "threads": threads, "batch_size": batch, "failed": None}
        path = paths[net][precision]
        try:
          if isinstance(path, UserError):
            raise path
          r = deployment.case_record(net, runtime, precision, threads, batch, path,
                                     runtime_case.measure(
                                         path, runtime, threads=threads, batch=batch,
                                         image_shape=net.image_shape, iters=iters,
                                         warmup=warmup, time_budget_s=time_budget_s / len(cases)))
          record = dict(base, **r)
        except UserError as e:
          record = dict(base, failed=str(e))
        records.append(record)
        if on_record:
          on_record(record)
  return records


def points(runs, records, runtime: str) -> list:
  """`pareto_plot` points of `runs` on `runtime`: fp32 latency at the first batch size."""
  lat = {}
  for r in records:
    if r["runtime"] == runtime and r["precision"] == "fp32" and not r["failed"]:
      lat.setdefault(deployment.Network(r["arch"], r["width"], r["shortcuts"], r["image_size"],
                                        r["num_classes"]), r)
  return [{"name": run["name"], "precision": "fp32", "top1": run["top1"],
           "latency_ms": lat[run["net"]]["latency_ms_median"]}
          for run in runs if run["net"] in lat]


def write_plots(out_dir: str, runs, records, runtimes, title: str) -> list:
  """`zoo_<runtime>.png` for each runtime with a point; returns the paths written."""
  written = []
  for runtime in runtimes:
    pts = points(runs, records, runtime)
    if not pts:
      continue
    path = os.path.join(out_dir, PNG_FILE.format(runtime=runtime))
    shown = {p["name"] for p in pts}
    pareto_plot.write(pts, pareto.front(pts),
                      {r["name"]: r["label"] for r in runs if r["name"] in shown}, path,
                      f"{deployment.RUNTIME_NAMES[runtime]} fp32, {title}")
    written.append(path)
  return written

