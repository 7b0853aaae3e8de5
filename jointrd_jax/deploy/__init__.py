"""Deployment: export a trained network (folded; SavedModel, LiteRT, ONNX, int8), check
every format against the trained network, run exported models (`predict`), import
PyTorch checkpoints (`torch_import`).

Modules: `files` (the export directory's file names), `checks` (check images and the
pass criterion), `formats` (writing and running each format), `quantize` (the int8
models and their record), `calibration` (int8 calibration images), `runtimes` (the
runtimes that run an exported file), `staging` (build beside --out, move when done),
`export` (the whole export), `predict` (classify images with an export), `torch_import`.
"""
