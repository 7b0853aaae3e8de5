"""The model card of an export (its README.md): what the network is, how well it does,
how it was checked, trained and can be used; Hugging Face model-card front matter first
(`huggingface_hub.ModelCardData`), so that the folder uploads to the Hub as it is.

Everything comes from the export's report (export.json), the run's workdir (config.json,
summary.json, metrics.jsonl) and, for one seed of a sweep (`DIR/runs/<method>/seed<k>/`,
`jointrd_jax.sweep`), its sibling seeds' summaries. The check table is rendered from
export.json `checks` whatever formats it holds, every extra field included.
"""
from __future__ import annotations

import importlib.metadata
import os
import pathlib
import platform
import re

from huggingface_hub import EvalResult, ModelCardData

import jointrd_jax
from jointrd_jax import models
from jointrd_jax.datasets import sources
from jointrd_jax.deploy import checks as checks_lib
from jointrd_jax.deploy.files import (CARD_FILE, CHECKSUMS_FILE, LABELS_FILE, ONNX_FILE,
                                      ONNX_INT8_FILE, PARAMS_FILE, REPORT_FILE, SAFETENSORS_FOLDED,
                                      SAFETENSORS_TRAINED, SAVED_MODEL_DIR, TFLITE_FILE,
                                      TFLITE_INT8_FILE, TRAINING_CONFIG_FILE)
from jointrd_jax.errors import UserError
from jointrd_jax.training import identity, reporting, results, workdir as workdir_lib

CHECK_NAMES = {"fold": "folded JAX network", "saved_model": "TensorFlow SavedModel",
               "tflite": "TFLite fp32", "tflite_int8": "TFLite int8", "onnx": "ONNX fp32",
               "onnx_int8": "ONNX int8"}
FILE_NOTES = {
    SAFETENSORS_FOLDED: "folded parameters (safetensors; params.npz's keys)",
    SAFETENSORS_TRAINED: "trained variables, params/... and batch_stats/... (safetensors)",
    PARAMS_FILE: "folded parameters (numpy npz)",
    SAVED_MODEL_DIR: "TensorFlow SavedModel, serving_default: uint8 images -> logits",
    TFLITE_FILE: "LiteRT / TFLite fp32, builtin ops, dynamic batch",
    TFLITE_INT8_FILE: "LiteRT / TFLite full-integer int8",
    ONNX_FILE: "ONNX fp32", ONNX_INT8_FILE: "ONNX int8 (QDQ)",
    LABELS_FILE: "class names, one per line in label order",
    REPORT_FILE: "what was exported and every check's result",
    TRAINING_CONFIG_FILE: "the run's config.json (every key as trained)",
    CARD_FILE: "this model card",
    CHECKSUMS_FILE: "SHA-256 of every other file (sha256sum -c SHA256SUMS)"}
STANDARD_FIELDS = ("num_images", "max_abs_diff", "max_abs_logit", "rel_diff", "tolerance",
                   "top1_agreement", "top1_changed", "passed")
CONFIGS = pathlib.Path(__file__).resolve().parents[2] / "configs"  # in a repository checkout


def render(report: dict, *, run_dir: str, net, variables, files=()) -> str:
  """README.md of the export `report` of run `run_dir` (the trained `net`, `variables`)."""
  cfg = workdir_lib.read_config(run_dir)
  summary = workdir_lib.read_summary(run_dir)
  who = run_identity(cfg, summary)
  info = _accuracy(run_dir, report.get("which", "student"), summary, cfg,
                   network_words(report.get("which", "student"), who, net))
  sections = [_front_matter(report, cfg, info, who, net), _title(report, cfg, who, net),
              _method(report, cfg, summary, who), _architecture(report, cfg, net, variables),
              _dataset(report, cfg, summary), info["text"], _preprocessing(report),
              _checks(report), _int8(report), _files(files), _usage(report),
              _training(run_dir, cfg),
              _versions(report)]
  return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"


def _method_name(cfg: dict) -> str:
  return str(cfg.get("method") or "")


def run_identity(cfg: dict, summary):
  """What the run trains (`training.identity`), or None for a config this version cannot
  resolve (a method or loss term it lacks): then the card names the method only."""
  try:
    return identity.of_run(cfg, summary)
  except UserError:
    return None


def network_words(which: str, who, net) -> str:
  """The exported network in words: 'Dirac student', 'ResNet (with shortcuts)', 'ResNet
  teacher (with shortcuts)'; a zoo network with its own shortcuts by its arch: 'mobilenetv2
  teacher' (`which`: the checkpoint's network, student or teacher)."""
  role = "teacher" if which == "teacher" else (who.role if who else "network")
  zoo_arch = getattr(net, "zoo_arch", None)
  if zoo_arch and net.shortcuts == "all" and net.conv == "none":
    return zoo_arch if role == "network" else f"{zoo_arch} {role}"
  return identity.network_words(net.shortcuts, net.conv, role)


def _front_matter(report: dict, cfg: dict, info: dict, who, net) -> str:
  dataset = str(cfg.get("dataset") or "")
  hub = (sources.get(dataset).source.hub or None) if dataset else None
  arch = (cfg.get("model") or {}).get("arch")
  tags = list(dict.fromkeys(t for t in (
      "jax", "flax", "tflite", "safetensors", "image-classification",
      who is not None and who.role == "student" and "knowledge-distillation",
      net.shortcuts != "all" and "plain-cnn", _method_name(cfg), arch) if t))
  evals = None
  if info.get("top1") is not None:
    evals = [EvalResult(task_type="image-classification", dataset_type=hub or dataset,
                        dataset_name=dataset, dataset_split=info.get("split") or "test",
                        metric_type="accuracy", metric_value=round(info["top1"], 4),
                        metric_name="final-epoch top-1 (%)")]
  data = ModelCardData(library_name="jointrd-jax", pipeline_tag="image-classification",
                       tags=tags, datasets=[hub] if hub else None, metrics=["accuracy"],
                       model_name=f"{_method_name(cfg) or 'model'}-{arch or 'resnet'}",
                       eval_results=evals)
  return f"---\n{data.to_yaml()}\n---"


def _folded_words(net) -> str:
  if net.shortcuts == "all":
    return ("its BatchNorm (and any re-parameterised convolution) folded into biased "
            "convolutions, its shortcuts kept")
  return ("its convolutions' re-parameterisation (Dirac, branches) and BatchNorm folded "
          "into plain biased convolutions")


def _title(report: dict, cfg: dict, who, net) -> str:
  label = who.label if who else _method_name(cfg)
  arch = (cfg.get("model") or {}).get("arch", "")
  words = network_words(report.get("which", "student"), who, net)
  what = arch if words in label else f"{arch} {words}"  # not 'ResNet (...): resnet10 ResNet'
  return (f"# {label}: {what} on {cfg.get('dataset')}\n\n"
          f"The {words} of a jointrd-jax run, exported for deployment: {_folded_words(net)}, "
          "checked against the trained network, and written in every format listed under "
          "Files (uint8 images in, logits out).")


def _method(report: dict, cfg: dict, summary, who) -> str:
  method = _method_name(cfg)
  lines = ["## Method", "", f"- Method: `{who.name if who else method}`" + (
      f" ({who.label}): {who.description}" if who else "")]
  terms = (summary or {}).get("terms")
  if terms:
    shown = []
    for t in terms:
      extra = ", ".join(f"{k}={v}" for k, v in sorted(t.items()) if k not in ("name", "weight"))
      shown.append(f"`{t['name']}` x {t.get('weight')}" + (f" ({extra})" if extra else ""))
    lines.append("- Loss terms, as the run resolved them (summary.json): " + "; ".join(shown))
  elif cfg.get("terms"):
    lines.append(f"- Loss terms given: `{cfg['terms']}` (the run wrote no summary.json)")
  teacher = cfg.get("teacher") or {}
  if who is not None and who.role == "student":
    given = teacher.get("checkpoint") or "trained into the run's teacher/"
    lines.append(f"- Teacher: {given} ({teacher.get('train', 'frozen')})")
  if report.get("which", "student") != "student":
    lines.append(f"- This package holds the run's `{report['which']}` network.")
  lines.append(f"- Epochs: {cfg.get('num_epochs')}, seed {cfg.get('seed')}, checkpoint of "
               f"epoch {report.get('epoch')}")
  return "\n".join(lines)


def _architecture(report: dict, cfg: dict, net, variables) -> str:
  a = report.get("architecture") or {}
  model = cfg.get("model") or {}
  trained = models.num_params(variables["params"])
  inp, out = report.get("input") or {}, report.get("output") or {}
  kept = ("biased convolutions and the shortcuts" if net.shortcuts == "all"
          else "plain biased convolutions")
  layout = (f"the distillation zoo's `{a['zoo_arch']}`" if "zoo_arch" in a else
            f"{a.get('variant')} {a.get('kind')} ResNet layout, stages {a.get('stage_sizes')}")
  return "\n".join([
      "## Architecture", "",
      f"- `{model.get('arch')}` (width {a.get('width')}): {layout}, shortcuts "
      f"`{a.get('shortcuts')}`, trained convolution `{a.get('conv', a.get('dirac'))}`, "
      f"{a.get('num_classes')} classes",
      f"- Deployed form: folded ({kept}, no BatchNorm, no branches): "
      f"{a.get('num_params_folded', 0):,} parameters ({trained:,} trained)",
      f"- Input `{inp.get('name')}`: {inp.get('dtype')} {inp.get('layout')} "
      f"{inp.get('shape')}; {inp.get('normalization')}, mean {_short(inp.get('mean'))}, "
      f"std {_short(inp.get('std'))} (exact values in export.json)",
      f"- Output `{out.get('name')}`: {out.get('dtype')} {out.get('shape')}",
      f"- Rebuild it: `jointrd_jax.models.from_description` of export.json `architecture` "
      f"({type(net).__name__})"])


def _dataset(report: dict, cfg: dict, summary) -> str:
  classes = report.get("classes") or {}
  names = list(classes.get("names") or [])
  shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
  s = summary or {}
  split = s.get("eval_split")
  evaluated = (f"; evaluated on its {results.split_words(split)} split "
               f"({s.get('num_eval')} images)" if split else "")
  return "\n".join([
      "## Dataset and classes", "",
      f"- Trained on `{cfg.get('dataset')}`{evaluated}",
      f"- {len(names)} classes ({classes.get('source', '')}), in {LABELS_FILE}: {shown}"])


def _own_final(run_dir: str, which: str, summary, cfg: dict) -> dict:
  """The run's final-epoch top-1: summary.json, else its last eval record."""
  key = f"{which}_top1"
  if summary and key in (summary.get("final") or {}):
    f = summary["final"]
    return {"top1": float(f[key]), "epoch": f.get("epoch"), "split": summary.get("eval_split"),
            "finished": summary.get("epochs_done") == cfg.get("num_epochs")}
  evals = [r for r in reporting.read_metrics(run_dir) if r.get("split") == "eval" and key in r]
  if evals:
    return {"top1": float(evals[-1][key]), "epoch": evals[-1].get("epoch"), "split": None,
            "finished": False}
  return {"top1": None}


def _identity(cfg: dict) -> dict:
  return {k: v for k, v in workdir_lib.migrate(cfg).items()
          if k not in workdir_lib.RESUME_SAFE_KEYS and k != "seed"}


def sweep_seeds(run_dir: str, cfg: dict) -> list:
  """The summaries of the finished seeds of `run_dir`'s sweep row (itself included): the
  sibling `seed<k>` workdirs whose config is this run's but for the seed, or [] when
  `run_dir` is not a sweep's `runs/<method>/seed<k>`."""
  run_dir = os.path.abspath(run_dir)
  parent = os.path.dirname(run_dir)
  if not re.fullmatch(r"seed\d+", os.path.basename(run_dir)):
    return []
  out = []
  for name in sorted(os.listdir(parent)):
    d = os.path.join(parent, name)
    if not re.fullmatch(r"seed\d+", name) or not os.path.isdir(d):
      continue
    try:
      s = workdir_lib.read_summary(d)
      c = workdir_lib.read_config(d)
    except Exception:  # pylint: disable=broad-except  # a sibling being written, garbled
      continue
    if (s and s.get("epochs_done") == c.get("num_epochs") and _identity(c) == _identity(cfg)):
      out.append(s)
  return out


def _accuracy(run_dir: str, which: str, summary, cfg: dict, words: str) -> dict:
  own = _own_final(run_dir, which, summary, cfg)
  lines = ["## Accuracy", ""]
  if own["top1"] is None:
    lines.append("- The run recorded no evaluation (no summary.json or metrics.jsonl: e.g. a "
                 "converted checkpoint).")
  else:
    state = "final epoch" if own["finished"] else "last evaluated epoch (the run did not finish)"
    lines.append(f"- This run: **{own['top1']:.2f} %** top-1 ({words}) on the "
                 f"{results.split_words(own['split'] or 'test')} split after epoch "
                 f"{own['epoch']} ({state})")
  seeds = sweep_seeds(run_dir, cfg) if which == "student" else []
  if len(seeds) > 1:
    row = results.method_row(_method_name(cfg), seeds)
    per_seed = ", ".join(f"seed {s}: {v:.2f}" for s, v in zip(row["seeds"], row["final_top1"]))
    sweep = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(run_dir))))
    lines.append(f"- Its sweep row (sweep `{os.path.basename(sweep)}`, experiments.table12): "
                 f"**{row['final_top1_mean']:.2f} ± {row['final_top1_std']:.2f} %** final-epoch "
                 f"top-1, mean ± sample std over {row['n_seeds']} seeds ({per_seed})")
  return dict(own, text="\n".join(lines))


def _preprocessing(report: dict) -> str:
  p = report.get("preprocessing") or {}
  h, w = (report.get("input") or {}).get("shape", [None, "H", "W"])[1:3]
  if p.get("method") == "center_crop":
    how = (f"shorter side resized to {p.get('resize')} (antialiased bilinear), then the "
           f"central {h}x{w} crop, as evaluation did")
  else:
    how = f"the whole image resized to {h}x{w} (antialiased bilinear, aspect ratio not kept)"
  return "\n".join(["## Preprocessing", "",
                    f"- {how}; RGB uint8 pixels, no normalisation by the caller (the models "
                    "normalise inside); `experiments.predict` and `jointrd_jax.deploy.predict."
                    "load_image` do exactly this",
                    f"- export.json `preprocessing`: `{p}`"])


def _short(values) -> str:
  return "[" + ", ".join(f"{float(v):.4f}" for v in values or ()) + "]"


def _num(v) -> str:
  if isinstance(v, bool) or v is None:
    return str(v)
  if isinstance(v, float):
    return f"{v:.3e}" if v and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.4g}"
  return str(v)


def _checks(report: dict) -> str:
  data = report.get("check_data") or {}
  lines = ["## Checks", "",
           f"Every format against the trained network in inference mode on "
           f"{data.get('description', 'the check images')}: it passes when max |logit diff| "
           f"<= rtol {report.get('rtol', checks_lib.RTOL)} x max |logit| and no top-1 "
           "prediction changes (fp32 formats; export.json records each check's own "
           "criterion).", ""]
  if data.get("accuracy_reference") is not None:
    lines += [f"Top-1 of the trained network on these images: "
              f"{100 * data['accuracy_reference']:.2f} %.", ""]
  lines += ["| check | images | max abs logit diff | tolerance | top-1 agreement | other | "
            "passed |", "|---|---|---|---|---|---|---|"]
  for name, c in (report.get("checks") or {}).items():
    c = c if isinstance(c, dict) else {"result": c}
    other = ", ".join(f"{k}: {_num(v)}" for k, v in sorted(c.items())
                      if k not in STANDARD_FIELDS and not isinstance(v, (dict, list)))
    label = CHECK_NAMES.get(name, name)
    lines.append(f"| {label} (`{name}`) | {_num(c.get('num_images'))} | "
                 f"{_num(c.get('max_abs_diff'))} | {_num(c.get('tolerance'))} | "
                 f"{_num(c.get('top1_agreement'))} | {other or '-'} | "
                 f"{'yes' if c.get('passed') else 'NO'} |")
  return "\n".join(lines)


def _pct(v) -> str:
  return "-" if v is None else f"{100 * v:.2f} %"


def _int8(report: dict) -> str:
  """The int8 models' record (export.json `int8`): calibration, QAT, top-1 against fp32."""
  q = report.get("int8")
  if not q:
    return ""
  cal = q.get("calibration") or {}
  lines = ["## INT8", "", f"Full-integer int8 (weights per output channel, activations per "
           f"tensor), calibrated on {cal.get('num_images')} images: {cal.get('source')}.", ""]
  qat = q.get("qat")
  if qat:
    lines += [f"The int8 models were converted after quantization-aware fine-tuning of the "
              f"folded network: {qat['epochs']} epochs ({qat['steps']} steps, batch "
              f"{qat['batch_size']}, {qat['optimizer']}, learning rate "
              f"{qat['learning_rate']:g} {qat['schedule']}; loss: {qat['loss']}); the fp32 "
              f"files are the trained network. Top-1 of the fine-tuned network in fp32: "
              f"{_pct(qat.get('top1_fp32_after_qat'))}.", ""]
  lines += ["| model | images | top-1 fp32 | top-1 int8 | agreement with fp32 | "
            "max abs logit error |", "|---|---|---|---|---|---|"]
  for key in ("tflite_int8", "onnx_int8"):
    r = q.get(key)
    if r:
      lines.append(f"| `{r['file']}` | {r['num_images']} | {_pct(r.get('top1_fp32'))} | "
                   f"{_pct(r.get('top1_int8'))} | {_pct(r.get('agreement'))} | "
                   f"{_num(r.get('max_abs_logit_error'))} |")
  return "\n".join(lines)


def _files(files) -> str:
  names = list(dict.fromkeys(files))
  if not names:
    return ""
  rows = [f"| `{n}{'/' if n == SAVED_MODEL_DIR else ''}` | {FILE_NOTES.get(n, '')} |"
          for n in names]
  return "\n".join(["## Files", "", "| file | what |", "|---|---|", *rows])


def _usage(report: dict) -> str:
  return "\n".join([
      "## Use", "", "```bash",
      "sha256sum -c SHA256SUMS     # every file as exported (predict and deploy.load check too)",
      "python -m experiments.predict --model=THIS_FOLDER photo.jpg",
      "hf upload ORG/NAME THIS_FOLDER .   # to the Hugging Face Hub, as it is",
      "hf download ORG/NAME               # into the local Hub cache; deploy.load(\"ORG/NAME\")",
      "```", "", "```python",
      "from jointrd_jax import deploy",
      "model = deploy.load(\"THIS_FOLDER\")        # or a Hub repo id \"ORG/NAME\"",
      "logits = model(uint8_images)               # [N, H, W, C] uint8 -> float32 logits",
      "module, variables = model.module, model.variables  # the folded Flax network",
      "```"])


def _training(run_dir: str, cfg: dict) -> str:
  """How to retrain; the run is named by its folder's name, never by this machine's path."""
  run_dir = os.path.abspath(run_dir)
  lines = ["## How it was trained", "", "From a jointrd-jax checkout (the run's config as "
           f"recorded, {TRAINING_CONFIG_FILE} in this folder):", "", "```bash",
           f"python -m experiments.main --config=configs/from_json.py:{TRAINING_CONFIG_FILE} "
           f"--workdir={os.path.basename(run_dir)}", "```", ""]
  sweep = os.path.dirname(os.path.dirname(os.path.dirname(run_dir)))
  method, seed = os.path.basename(os.path.dirname(run_dir)), os.path.basename(run_dir)
  launched = os.path.join(sweep, "configs", f"{method}-{seed}.json")
  if os.path.isfile(launched) and os.path.isfile(os.path.join(sweep, "sweep_config.json")):
    lines.append(f"It is one run of the sweep `{os.path.basename(sweep)}` "
                 "(experiments.table12), which launched it as `python -m experiments.main "
                 f"--config=configs/from_json.py:SWEEP/configs/{method}-{seed}.json "
                 f"--workdir=SWEEP/runs/{method}/{seed}` (SWEEP: the sweep's folder).")
    lines.append("")
  preset = identity.preset_file(_method_name(cfg), identity.is_imagenet_recipe(cfg))
  note = ("config.json records every key as resolved, not the config file and the "
          "`--config.KEY=VALUE` overrides the run was started with")
  if (CONFIGS / preset[len("configs/"):]).is_file():
    note += (f"; the method's preset without overrides is `python -m experiments.main "
             f"--config={preset} --workdir=RUN`")
  return "\n".join(lines + [f"Note: {note}."])


def _version(dist: str):
  try:
    return importlib.metadata.version(dist)
  except importlib.metadata.PackageNotFoundError:
    return None


def _versions(report: dict) -> str:
  v = {"python": platform.python_version(), "jointrd-jax": jointrd_jax.__version__}
  for dist in ("jax", "jaxlib", "flax", "numpy", "safetensors"):
    v[dist] = _version(dist)
  v.update({k: str(x) for k, x in (report.get("versions") or {}).items()})
  rows = [f"| {k} | {x} |" for k, x in v.items() if x]
  return "\n".join(["## Library versions", "", "Of the export (export.json `versions` and "
                    "this environment):", "", "| library | version |", "|---|---|", *rows])
