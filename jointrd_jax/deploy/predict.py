"""Classify image files with an exported model (the directory `experiments.export` writes).

    model = predict.open_export("export/jointrd", fmt="tflite")   # or another of FORMATS
    images = [predict.load_image(p, model.input_shape, model.preprocessing) for p in paths]
    for p in predict.classify(model, np.stack(images), top=5): ...

- The model's input size, channels, class names and preprocessing come from the export
  directory's export.json (names recorded by the export; `class_<i>` for exports made
  before names were recorded).
- `load_image`: any image Pillow reads (JPEG, PNG, BMP, GIF's first frame, WebP, TIFF),
  any size; the EXIF orientation is applied (the photo as a viewer shows it); grayscale,
  palette, CMYK and RGBA images become the model's channels (3: RGB; alpha is dropped
  without compositing, as torchvision's and TensorFlow's RGB decoders do). Then, as
  recorded in export.json `preprocessing`:
  - `center_crop` (ImageNet-style networks): torchvision's Resize(resize) +
    CenterCrop(H, W) of evaluation: the shorter side becomes `resize` (256 for 224),
    the longer int(resize * long / short), antialiased bilinear (Pillow), then the
    centre crop starting at round((resized - crop) / 2);
  - `resize` (CIFAR-style networks): the whole image resized to H x W, antialiased
    bilinear (Pillow), aspect ratio not kept.
  The result is uint8 [H, W, C]: the exported models normalise inside.
- Before anything is read, every file of the export is checked against its SHA256SUMS
  (`package.verify`): a modified, missing or unlisted model file is refused with one line
  (`verify=False` / `--noverify` for exports made before checksums).
- `classify`: logits of the TFLite file (LiteRT's interpreter, builtin ops, the default
  XNNPACK CPU delegate), the SavedModel, the ONNX file (ONNX Runtime, CPU) or an int8
  model (`tflite_int8`, `onnx_int8`: written by `experiments.export --quantize=int8`;
  an input the model declares quantized is quantized with its own scale and zero point,
  see `runtimes.TFLiteModel`), in batches; softmax in float64; the `top` classes by
  probability (ties: the lower class index first).

Importing this module imports neither JAX nor TensorFlow; TensorFlow is imported (quietly,
GPUs hidden) when a model is opened.
"""
from __future__ import annotations

import dataclasses
import json
import os
import warnings
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from jointrd_jax import tensorflow_support
from jointrd_jax.deploy import package
from jointrd_jax.deploy.files import (EXPORT_HINT, INPUT_NAME, ONNX_FILE,  # noqa: F401
                                      ONNX_INT8_FILE, OUTPUT_NAME, REPORT_FILE,
                                      SAVED_MODEL_DIR, TFLITE_FILE, TFLITE_INT8_FILE)
from jointrd_jax.deploy.runtimes import (BATCH_PIXELS, MAX_BATCH, OnnxModel,  # noqa: F401
                                         SavedModel, TFLiteModel, batch_size, check_images,
                                         run_in_batches, tf_quiet)
from jointrd_jax.errors import UserError

FORMATS = ("tflite", "saved_model", "tflite_int8", "onnx", "onnx_int8")
FORMAT_FILES = {"tflite": TFLITE_FILE, "saved_model": SAVED_MODEL_DIR,
                "tflite_int8": TFLITE_INT8_FILE, "onnx": ONNX_FILE, "onnx_int8": ONNX_INT8_FILE}
RUNTIMES = {"tflite": TFLiteModel, "saved_model": SavedModel, "tflite_int8": TFLiteModel,
            "onnx": OnnxModel, "onnx_int8": OnnxModel}


@dataclasses.dataclass(eq=False)
class ExportedModel:
  directory: str
  format: str  # one of FORMATS
  path: str  # the model file / folder
  input_shape: tuple  # (H, W, C)
  class_names: tuple
  class_source: str
  preprocessing: dict  # {'method': 'center_crop', 'resize': 256} or {'method': 'resize'}
  report: dict = dataclasses.field(repr=False)
  runtime: Callable | None = dataclasses.field(default=None, repr=False)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def load(self) -> "ExportedModel":
    """Loads the model (imports TensorFlow: seconds); checks its input against export.json."""
    if self.runtime is not None:
      return self
    try:
      runtime = RUNTIMES[self.format](self.path)
    except UserError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      message = " ".join(str(e).split())[:200]
      raise UserError(f"{self.path} cannot be loaded ({type(e).__name__}: {message}); "
                      "re-export the run with python -m experiments.export --overwrite.") \
          from None
    expected = [-1, *self.input_shape]
    got = list(runtime.input_signature)
    if got[1:] != expected[1:] or runtime.input_dtype not in (np.uint8, np.int8):
      raise UserError(f"{self.path} takes {runtime.input_dtype} {got} but {REPORT_FILE} says "
                      f"uint8 {expected}; the directory mixes two exports: re-export the run.")
    self.runtime = runtime
    return self

  def logits(self, images: np.ndarray) -> np.ndarray:
    """float32 logits of uint8 images [N, H, W, C]."""
    check_images(images, self.input_shape)
    self.load()
    return run_in_batches(self.runtime, images, batch_size(self.input_shape))


def default_preprocessing(variant: str | None, image_shape) -> dict:
  """What evaluation did for the network's variant: centre crop for ImageNet-style
  networks (Resize(256) + CenterCrop(224), scaled to other sizes), a plain resize else."""
  if variant == "imagenet":
    return {"method": "center_crop",
            "resize": int(round(min(int(image_shape[0]), int(image_shape[1])) * 256 / 224))}
  return {"method": "resize"}


def read_report(directory: str, verify: bool = True, needed=(), arg: str = "directory") -> dict:
  """export.json of an export directory, validated; UserError naming the fix otherwise.

  `verify`: first check every file against the directory's SHA256SUMS (`package.verify`;
  a directory without it is refused too); `needed`: the files the caller will read, which
  must be listed there when they exist; `arg`: how the caller's user gave `directory`
  (an argument name, or a flag such as `--model`), which the errors name."""
  given = f"{arg}={directory}" if arg.startswith("-") else f"{arg}={directory!r}"
  if not os.path.exists(directory):
    raise UserError(f"{given} does not exist; pass {EXPORT_HINT}.")
  if not os.path.isdir(directory):
    raise UserError(f"{given} is a file, not a directory; pass {EXPORT_HINT}.")
  path = os.path.join(directory, REPORT_FILE)
  if not os.path.isfile(path):
    raise UserError(f"{given} holds no {REPORT_FILE}, so it is not an export "
                    f"directory; pass {EXPORT_HINT}.")
  if verify:
    package.verify(directory, needed=(REPORT_FILE, *needed))
  try:
    with open(path, encoding="utf-8") as f:
      report = json.load(f)
    shape = report["input"]["shape"]
    if not (isinstance(shape, list) and len(shape) == 4
            and all(isinstance(d, int) and d > 0 for d in shape[1:])):
      raise ValueError(f"input shape {shape!r}")
    int(report["output"]["shape"][-1])
  except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
    raise UserError(f"{path} cannot be read as an export report ({type(e).__name__}: {e}); "
                    f"re-export the run with python -m experiments.export.") from None
  if report.get("passed") is not True:
    raise UserError(f"the export in {directory} did not pass its checks ({REPORT_FILE} says "
                    "passed: false), so its models are not trusted; re-export the run "
                    "(python -m experiments.export --overwrite ...).")
  return report


def open_export(directory: str, fmt: str = "tflite", load: bool = True,
                verify: bool = True, arg: str = "directory") -> ExportedModel:
  """The export in `directory`, its model in format `fmt`; loaded now with `load`, else
  on first use (`ExportedModel.load`), so that export.json is validated without TF.
  `verify`: the files are checked against SHA256SUMS first (`read_report`); a tampered
  file is refused with one line. `arg`: see `read_report` (the CLI passes `--model`)."""
  if fmt not in FORMATS:
    raise UserError(f"--format={fmt} is not one of {', '.join(FORMATS)}.")
  # The model file must be listed in SHA256SUMS; one that was never exported (an int8
  # format of an fp32-only export) gets the re-export hint below instead.
  model_file = FORMAT_FILES[fmt]
  exists = os.path.exists(os.path.join(directory, model_file))
  report = read_report(directory, verify=verify, needed=(model_file,) if exists else (),
                       arg=arg)
  image_shape = tuple(int(d) for d in report["input"]["shape"][1:])
  num_classes = int(report["output"]["shape"][-1])
  classes = report.get("classes") or {}
  names = classes.get("names")
  if isinstance(names, list) and len(names) == num_classes:
    names, source = tuple(str(n) for n in names), str(classes.get("source", ""))
  else:
    names = tuple(f"class_{i}" for i in range(num_classes))
    source = f"generic: {REPORT_FILE} records no class names"
  preprocessing = report.get("preprocessing") or default_preprocessing(
      (report.get("architecture") or {}).get("variant"), image_shape)
  path = os.path.join(directory, FORMAT_FILES[fmt])
  if not os.path.exists(path):
    if fmt.endswith("_int8"):
      raise UserError(f"{directory} has no {FORMAT_FILES[fmt]}; re-export the run with "
                      "python -m experiments.export --quantize=int8 --overwrite ... or pass "
                      f"--format={fmt[:-len('_int8')]}.")
    other = "saved_model" if fmt == "tflite" else "tflite"
    raise UserError(f"{directory} has no {os.path.basename(path)}; re-export the run or pass "
                    f"--format={other}.")
  model = ExportedModel(directory=directory, format=fmt, path=path, input_shape=image_shape,
                        class_names=names, class_source=source, preprocessing=preprocessing,
                        report=report)
  return model.load() if load else model


# ------------------------------------------------------------------ images


def _to_mode(image, channels: int):
  """`image` as Pillow mode L (1 channel), RGB (3) or RGBA (4); 16-bit grayscale is
  scaled to 8 bits rather than clipped."""
  if image.mode.startswith("I"):  # 16/32-bit integer grayscale (e.g. 16-bit PNGs)
    a = np.asarray(image).astype(np.float64)
    if a.max(initial=0) > 255:
      a = a * (255.0 / 65535.0)
    image = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
  mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(int(channels))
  if mode is None:
    raise UserError(f"the model takes {channels}-channel images; only 1, 3 or 4 are supported.")
  if image.mode == "P" and "transparency" in image.info:
    image = image.convert("RGBA")
  return image if image.mode == mode else image.convert(mode)


def center_crop_box(width: int, height: int, crop_h: int, crop_w: int, resize: int):
  """torchvision's Resize(resize) + CenterCrop((crop_h, crop_w)) geometry of a
  width x height image: ((resized_w, resized_h), (left, top, right, bottom))."""
  if width <= height:
    rw, rh = resize, int(resize * height / width)
  else:
    rw, rh = int(resize * width / height), resize
  top = int(round((rh - crop_h) / 2.0))
  left = int(round((rw - crop_w) / 2.0))
  return (rw, rh), (left, top, left + crop_w, top + crop_h)


def preprocess(image, image_shape, preprocessing: dict) -> np.ndarray:
  """A Pillow image -> uint8 [H, W, C] as the model takes it (see the module doc)."""
  h, w, c = (int(d) for d in image_shape)
  image = _to_mode(image, c)
  if preprocessing.get("method") == "center_crop":
    resize = int(preprocessing.get("resize") or round(min(h, w) * 256 / 224))
    size, box = center_crop_box(image.width, image.height, h, w, resize)
    if image.size != size:
      image = image.resize(size, Image.Resampling.BILINEAR)
    image = image.crop(box)  # a box reaching outside the image pads with zeros
  elif image.size != (w, h):
    image = image.resize((w, h), Image.Resampling.BILINEAR)
  x = np.asarray(image, np.uint8)
  return x.reshape(h, w, c)


def load_image(path: str, image_shape, preprocessing: dict) -> np.ndarray:
  """The image file at `path` preprocessed for the model; UserError naming the file if it
  is missing or cannot be decoded."""
  if not os.path.exists(path):
    raise UserError(f"image {path} does not exist.")
  if os.path.isdir(path):
    raise UserError(f"image {path} is a directory; pass image files.")
  try:
    f = open(path, "rb")  # pylint: disable=consider-using-with
  except OSError as e:
    raise UserError(f"image {path} cannot be read ({e.strerror or e}).") from None
  try:
    with f, Image.open(f) as image:
      image.load()
      image = ImageOps.exif_transpose(image)
      return preprocess(image, image_shape, preprocessing)
  except UserError:
    raise
  except UnidentifiedImageError:
    raise UserError(f"{path} is not an image file Pillow can read (JPEG, PNG, BMP, GIF, WebP, "
                    "TIFF, ...).") from None
  except Image.DecompressionBombError as e:
    raise UserError(f"{path} is too large to decode safely ({e}).") from None
  except Exception as e:  # pylint: disable=broad-except  # truncated / corrupt data
    reason = " ".join(str(e).split())[:160]
    raise UserError(f"{path} cannot be decoded as an image ({type(e).__name__}: {reason}).") \
        from None


# ------------------------------------------------------------------ prediction


def softmax(logits: np.ndarray) -> np.ndarray:
  """Row-wise softmax in float64."""
  z = np.asarray(logits, np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def top_classes(probabilities: np.ndarray, names: Sequence[str], top: int) -> list:
  """The `top` most probable classes of each row: [{'class', 'name', 'probability'}...];
  equal probabilities: the lower class index first."""
  out = []
  for p in np.asarray(probabilities):
    order = np.argsort(-p, kind="stable")[:top]
    out.append([{"class": int(i), "name": names[i], "probability": float(p[i])}
                for i in order])
  return out


def classify(model: ExportedModel, images: np.ndarray, top: int = 5) -> list:
  """The `top` classes of each uint8 image [N, H, W, C] (see `top_classes`)."""
  if top < 1:
    raise UserError(f"--top={top} must be at least 1.")
  probabilities = softmax(model.logits(images))
  return top_classes(probabilities, model.class_names, min(int(top), model.num_classes))
