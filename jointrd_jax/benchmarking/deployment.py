"""The folded networks on the deployment runtimes: LiteRT (`ai-edge-litert`) and ONNX
Runtime, fp32 and int8, what `experiments.inference_benchmark --runtime=litert|onnxruntime`
reports.

- `check_runtime`: the packages a runtime needs, or one line naming what to install;
- `model_files`: each network converted once per (arch, width, shortcuts, image size,
  classes, format, precision) with random weights (the latency does not depend on their
  values) and kept in the cache (`cache_root()`); the int8 models are calibrated on
  `CALIBRATION_IMAGES` deterministic random images (`deploy.checks.random_images`);
- `run`: every case (network x precision x threads x batch), each measured in a fresh
  process (`runtime_case`: latency median / p90, load time, peak RSS growth).

The conversions are the export's own (`deploy.formats`, `deploy.quantize`): SavedModel ->
TFLite (fp32; full-integer int8) -> ONNX through tf2onnx (fp32) -> ONNX Runtime static
int8 (QDQ). Every model takes raw uint8 images (normalisation inside) and returns float32
logits, as an export's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import itertools
import logging
import os
import pathlib
import shutil
import tempfile
import warnings
from importlib import metadata

import numpy as np

from jointrd_jax import caches, models
from jointrd_jax.benchmarking import machine, random_weights, runtime_case
from jointrd_jax.datasets import sources
from jointrd_jax.deploy import checks, files, formats, quantize, runtimes
from jointrd_jax.errors import UserError
from jointrd_jax.models import fold

RUNTIMES = ("xla", "litert", "onnxruntime")
DEPLOYMENT_RUNTIMES = ("litert", "onnxruntime")
PRECISIONS = ("fp32", "int8")
CALIBRATION_IMAGES = 16
# The code a converted model comes from (the networks, their fold, the conversions): the
# cache keys hold a digest of its source, so a change to any of it converts anew.
CONVERSION_SOURCES = ("models", "deploy/formats.py", "deploy/quantize.py",
                      "deploy/calibration.py", "benchmarking/deployment.py")
# What each runtime needs to convert and run the models: (import name, pip package).
NEEDS = {
    "litert": (("ai_edge_litert", "ai-edge-litert"), ("tensorflow", "tensorflow-cpu")),
    "onnxruntime": (("onnxruntime", "onnxruntime"), ("tf2onnx", "tf2onnx"), ("onnx", "onnx"),
                    ("tensorflow", "tensorflow-cpu")),
}
RUNTIME_NAMES = {"litert": "LiteRT", "onnxruntime": "ONNX Runtime"}
FILE_NAMES = {("litert", "fp32"): files.TFLITE_FILE, ("litert", "int8"): files.TFLITE_INT8_FILE,
              ("onnxruntime", "fp32"): files.ONNX_FILE,
              ("onnxruntime", "int8"): files.ONNX_INT8_FILE}


def check_runtime(runtime: str) -> None:
  """A `UserError` naming the pip packages to install when `runtime` lacks one, or when
  its own module (`runtime_case.RUNTIME_MODULES`) is installed but cannot be imported:
  nothing else is timed in its place (no `tf.lite` under LiteRT's name)."""
  if runtime not in NEEDS:
    return
  missing = [pip for module, pip in NEEDS[runtime] if importlib.util.find_spec(module) is None]
  if missing:
    raise UserError(f"{RUNTIME_NAMES[runtime]} is not installed here: pip install "
                    f"{' '.join(missing)}.")
  try:
    importlib.import_module(runtime_case.RUNTIME_MODULES[runtime])
  except ImportError as e:
    module = runtime_case.RUNTIME_MODULES[runtime]
    raise UserError(f"{RUNTIME_NAMES[runtime]} is installed but {module} "
                    f"cannot be imported ({type(e).__name__}: {' '.join(str(e).split())[:160]})"
                    f": pip install --force-reinstall {NEEDS[runtime][0][1]}.") from None


def runtime_version(runtime: str) -> str:
  package = NEEDS[runtime][0][1]
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return "?"


def cache_root() -> str:
  """Where converted models are kept: `caches.generated('inference_models')`."""
  return caches.generated("inference_models")


@dataclasses.dataclass(frozen=True)
class Network:
  """A folded network as the benchmark times it (random weights)."""
  arch: str
  width: int
  shortcuts: str
  image_size: int
  num_classes: int

  @property
  def image_shape(self):
    return (self.image_size, self.image_size, 3)

  def key(self) -> str:
    return (f"{conversion_digest()}_{self.arch}_w{self.width}_{self.shortcuts}_"
            f"{self.image_size}px_{self.num_classes}c")


@functools.lru_cache(maxsize=None)
def conversion_digest() -> str:
  """10 hex digits of the SHA-256 of `CONVERSION_SOURCES`' Python files (path and text)."""
  package = pathlib.Path(__file__).resolve().parents[1]
  digest = hashlib.sha256()
  for name in CONVERSION_SOURCES:
    path = package / name
    for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
      digest.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes())
  return digest.hexdigest()[:10]


class _Converter:
  """The model files of one network in `root/<key>/`, each converted on first use (the
  SavedModel they come from made once, in a temporary folder, when a TFLite file is
  missing). Files are written under a temporary name and renamed: a file present is
  complete, and two processes converting the same model do not clash."""

  def __init__(self, root: str, net: Network, log):
    self.dir = os.path.join(root, net.key())
    self.net, self.log, self._saved_model, self._tmp = net, log, None, None
    self.converted = []

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._tmp:
      shutil.rmtree(self._tmp, ignore_errors=True)

  def saved_model(self) -> str:
    if self._saved_model is None:
      n = self.net
      # Built as trained (Dirac for the students), then folded: the deployment form.
      built = models.build(n.arch, n.shortcuts, "none" if n.shortcuts == "all" else "reparam",
                           num_classes=n.num_classes, width=n.width)
      folded_net, folded = fold.fold(built, random_weights.random_variables(built, n.image_shape))
      self._tmp = tempfile.mkdtemp(prefix="jointrd_saved_model_")
      self._saved_model = os.path.join(self._tmp, "saved_model")
      formats.write_saved_model(self._saved_model, folded_net, folded["params"],
                                np.asarray(sources.IMAGENET_MEAN),
                                np.asarray(sources.IMAGENET_STD), n.image_shape,
                                batch=1)  # the export's lowering (deploy/export.py)
    return self._saved_model

  def path(self, runtime: str, precision: str) -> str:
    path = os.path.join(self.dir, FILE_NAMES[runtime, precision])
    if os.path.isfile(path):
      return path
    runtimes.tf_quiet()  # before tf2onnx imports it, loudly
    os.makedirs(self.dir, exist_ok=True)
    stem, ext = os.path.splitext(path)
    tmp = f"{stem}.tmp{os.getpid()}{ext}"
    n = self.net
    self.log(f"converting {n.arch} width {n.width} shortcuts={n.shortcuts} "
             f"{n.image_size}x{n.image_size} to {RUNTIME_NAMES[runtime]} {precision}")
    calibration = lambda: checks.random_images(CALIBRATION_IMAGES, n.image_shape)
    with warnings.catch_warnings():  # the converter's calibrator runs tf.lite.Interpreter
      warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
      self._convert(runtime, precision, tmp, calibration)
    os.replace(tmp, path)
    self.converted.append(path)
    return path

  def _convert(self, runtime, precision, tmp, calibration):
    if (runtime, precision) == ("litert", "fp32"):
      formats.write_tflite(self.saved_model(), tmp)
    elif (runtime, precision) == ("litert", "int8"):
      quantize.write_tflite_int8(self.saved_model(), tmp, calibration())
    elif precision == "fp32":
      formats.write_onnx(self.path("litert", "fp32"), tmp)
    else:
      with _quiet_python_logs():  # "Please consider pre-processing before quantization" x2
        quantize.write_onnx_int8(self.path("onnxruntime", "fp32"), tmp, calibration())


@contextlib.contextmanager
def _quiet_python_logs():
  """Python's logging below ERROR off for the block (ONNX Runtime's quantizer advises on
  the root logger)."""
  logging.disable(logging.WARNING)
  try:
    yield
  finally:
    logging.disable(logging.NOTSET)


def model_files(nets, runtime: str, precisions, root: str | None = None, log=print) -> dict:
  """`{(net, precision): path}` of every network in `nets` for `runtime`, converted into
  the cache `root` (default `cache_root()`) where missing; one log line says where."""
  root = root or cache_root()
  out, converted = {}, []
  for net in nets:
    with _Converter(root, net, log) as conv:
      for precision in precisions:
        out[net, precision] = conv.path(runtime, precision)
      converted += conv.converted
  log(f"{RUNTIME_NAMES[runtime]} models: {len(out) - len(converted)} reused, {len(converted)} "
      f"converted, cached in {root} (delete it to convert again)")
  return out


def resolve_threads(spec: str, usable: int) -> int:
  """`1`, `all` (every usable core) or a positive count."""
  if spec == "all":
    return usable
  n = int(spec)
  if n <= 0:
    raise ValueError(spec)
  return n


def case_record(net: Network, runtime: str, precision: str, threads: int, batch: int,
                path: str, measured: dict) -> dict:
  """The record of one case: the network, the case, the file and `runtime_case.measure`'s
  `measured` fields."""
  return {"runtime": runtime, "runtime_version": runtime_version(runtime),
          **dataclasses.asdict(net),
          "network": "teacher" if net.shortcuts == "all" else "student", "folded": True,
          "precision": precision, "threads": threads, "batch_size": batch, "model_path": path,
          "model_bytes": os.path.getsize(path), "load_average_1m": machine.load_average(),
          **measured}


def run(nets, runtime: str, *, precisions, threads, batches, iters: int, warmup: int,
        time_budget_s: float, root: str | None = None, log=print, on_record=None) -> list:
  """A record per (batch, threads, precision, network), in that nesting; each case in a
  fresh process (`runtime_case.measure`). The cases of one batch size share
  `time_budget_s` of timing equally. `on_record(record)` is called as each arrives."""
  paths = model_files(nets, runtime, precisions, root, log)
  version = runtime_version(runtime)
  records = []
  for batch in batches:
    cases = list(itertools.product(threads, precisions, nets))
    for n_threads, precision, net in cases:
      path = paths[net, precision]
      load = machine.load_average()
      r = runtime_case.measure(path, runtime, threads=n_threads, batch=batch,
                               image_shape=net.image_shape, iters=iters, warmup=warmup,
                               time_budget_s=time_budget_s / len(cases))
      record = dict(case_record(net, runtime, precision, n_threads, batch, path, r),
                    runtime_version=version, load_average_1m=load)
      records.append(record)
      if on_record:
        on_record(record)
  return records
