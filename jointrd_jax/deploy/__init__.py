"""Deployment: export a trained network (folded; SavedModel, LiteRT, ONNX, int8), check
every format against the trained network, package it (safetensors, model card,
SHA256SUMS), load a package back (`load`), run exported models (`predict`), import
PyTorch checkpoints (`torch_import`).

Modules: `files` (the export directory's file names), `checks` (check images and the
pass criterion), `formats` (writing and running each format), `quantize` (the int8
models and their record), `calibration` (int8 calibration images), `qat`
(quantization-aware fine-tuning before the int8 conversion), `runtimes` (the
runtimes that run an exported file), `staging` (build beside --out, move when done),
`export` (the whole export), `package` (weights, card and checksums of an export;
`verify`), `card` (the model card), `loader` (`load`: a package as a Flax module and its
variables, from a folder or the Hugging Face Hub), `predict` (classify images with an
export), `torch_import`.

`jointrd_jax.deploy.load(DIR)` is `loader.load`, imported on first use: importing this
package (e.g. for `predict`) imports neither JAX nor TensorFlow.
"""


def __getattr__(name):
  if name == "load":
    from jointrd_jax.deploy.loader import load  # lazily: `import deploy` stays free of JAX
    globals()["load"] = load
    return load
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
