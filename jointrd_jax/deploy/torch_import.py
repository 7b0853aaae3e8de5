"""Import PyTorch ResNet weights into a run workdir (reference §8).

Two layouts (OIHW conv kernels, Linear weight [out, in], BatchNorm weight/bias/running_*):

- **release** (the official JointRD code): `torch.save({'model_state_dict': sd, ...})` of
  `nn.DataParallel(Distiller)`, keys `module.teacher.*` / `module.student.*` (a bare
  network's state_dict, with or without `module.`, is accepted too). Inside a network:
  stem `conv1.0.weight` + `conv1.1.*` (older: `conv1.weight` + `bn1.*`); blocks
  `layers.{stage}.{block}.conv{1,2,3}.weight`, `.bn{1,2,3}.*`, projection
  `.downsample.0.weight` / `.downsample.1.*` (`stages` instead of `layers` in some files;
  stage index 0-based); head `fc.weight`, `fc.bias`. Dirac convs add per-output-channel
  `alpha` / `beta` (our `dirac_a` / `dirac_b`) and a `delta` buffer (ignored: it is the
  fixed Dirac kernel, recomputed). Ignored too: `connector1` / `connector2` (unused by the
  forward pass), `num_batches_tracked`, and the `downsample.*` of a block that has no
  shortcut in the chosen policy (the release's shortcut-free blocks keep their projection
  module but never call it; they are listed in the result's `ignored`).
- **torchvision**: `conv1.weight`, `bn1.*`, `layer{1..4}.{block}.conv{1,2,3}.weight`,
  `bn{1,2,3}.*`, `downsample.{0,1}.*`, `fc.*`. torchvision's own ImageNet ResNet-18/34/50
  (7x7 stem + max-pool) load into the `imagenet_resnet*` archs; a CIFAR ResNet saved with
  these names (3x3 stem) into the CIFAR archs.

Before any tensor is matched, the file's structure is compared with the arch's: the stem
kernel (3x3 CIFAR, 7x7 ImageNet), the block kind (bottleneck if any block has a `conv3`)
and the blocks per stage (counted from the keys). A mismatch is one error naming what the
file holds (e.g. "an ImageNet ResNet-18 (7x7 stem, basic blocks 2-2-2-2)") and the arch
that fits, if there is one.

Block convention, strides and padding are those of `models.py`, which match both.
Conv kernels OIHW -> HWIO, Linear [out, in] -> [in, out]. Every missing or unexpected key
and every shape mismatch is a one-line `UserError` naming (a few of) the keys.

Checkpoints are read with `torch.load(map_location='cpu', weights_only=True)`: tensors and
plain containers only; a file whose unpickling would import or call anything else (i.e.
could run code) is refused. torch is optional, imported only here.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from typing import Optional

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.errors import UserError
from jointrd_jax.models import dirac as dirac_lib
from jointrd_jax.training import checkpoints, workdir as workdir_lib

FORMATS = ("auto", "torchvision", "release")
NETWORKS = ("teacher", "student")
_SHOWN = 4  # keys listed in an error message

_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}


def _torch():
  try:
    import torch  # PyTorch: optional, imported where needed
  except ImportError:
    raise UserError("importing PyTorch checkpoints needs PyTorch, an optional dependency: "
                    "pip install torch (the CPU build is enough).") from None
  return torch


def _few(keys) -> str:
  keys = sorted(keys)
  more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
  return ", ".join(keys[:_SHOWN]) + more


# ------------------------------------------------------------------ reading


def read_checkpoint(path: str):
  """The object stored in `path`, loaded safely (weights_only)."""
  if not os.path.isfile(path):
    raise UserError(f"--checkpoint={path}: no such file.")
  torch = _torch()
  try:
    with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error says more
      warnings.simplefilter("ignore", UserWarning)
      return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    if found:
      raise UserError(f"{path} is refused: unpickling it would import or call {found.group(1)}, "
                      "so loading it could run code (torch.load weights_only=True allows only "
                      "tensors and plain containers); re-save only the weights from a trusted "
                      "copy: torch.save({'model_state_dict': model.state_dict()}, path).") from None
    raise UserError(f"{path} cannot be read by torch.load with weights_only=True (not a PyTorch "
                    "checkpoint, or pickled with features that safe loading refuses); pass a "
                    "checkpoint saved with torch.save.") from None
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"{path} cannot be read by torch.load ({type(e).__name__}: "
                    f"{str(e)[:160]}); pass a PyTorch checkpoint (.pt/.pth/.pth.tar).") from None


def state_dict_of(obj, path: str) -> dict:
  """The flat {key: tensor} of a checkpoint object."""
  if isinstance(obj, dict):
    for k in ("model_state_dict", "state_dict", "model"):
      if k in obj and isinstance(obj[k], dict):
        obj = obj[k]
        break
  if not isinstance(obj, dict) or not obj:
    raise UserError(f"{path} holds no state_dict (a dict of tensors, or one under "
                    f"'model_state_dict'); it holds {type(obj).__name__}.")
  torch = _torch()
  tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
  if not tensors:
    raise UserError(f"{path} holds no tensors under the keys {_few(map(str, obj))}; "
                    "pass a model checkpoint.")
  return tensors


def select_network(sd: dict, fmt: str, which: str, path: str):
  """`(format, network state_dict)` with the wrapper prefixes removed."""
  if fmt not in FORMATS:
    raise UserError(f"--format={fmt!r}; choose one of {', '.join(FORMATS)}.")
  if which not in NETWORKS:
    raise UserError(f"--which={which!r}; choose teacher or student.")
  if all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
  wrapped = {w for w in NETWORKS if any(k.startswith(w + ".") for k in sd)}
  if wrapped:
    if fmt == "torchvision":
      raise UserError(f"{path} holds a JointRD distiller (keys {_few(sd)}); use "
                      "--format=release (or auto).")
    if which not in wrapped:
      raise UserError(f"{path} has no {which} network (it has: {', '.join(sorted(wrapped))}); "
                      f"pass --which={sorted(wrapped)[0]}.")
    prefix = which + "."
    return "release", {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
  torchvision = any(re.match(r"layer[1-4]\.", k) for k in sd)
  release = any(re.match(r"(layers|stages)\.\d", k) for k in sd)
  if fmt == "auto":
    if torchvision == release:
      raise UserError(f"cannot tell the layout of {path} (keys {_few(sd)}); expected a "
                      "torchvision ResNet (layer1..4.*) or a JointRD release checkpoint "
                      "(layers.N.* / stages.N.*); pass --format.")
    fmt = "torchvision" if torchvision else "release"
  return fmt, sd


# ------------------------------------------------------------------ mapping


def _layout(fmt: str, sd: dict) -> dict:
  if fmt == "torchvision":
    return {"stem_conv": "conv1.", "stem_bn": "bn1.",
            "block": lambda i, j: f"layer{i + 1}.{j}."}
  word = "stages" if any(k.startswith("stages.") for k in sd) else "layers"
  if "conv1.0.weight" in sd:
    stem_conv, stem_bn = "conv1.0.", "conv1.1."
  else:
    stem_conv, stem_bn = "conv1.", "bn1."
  return {"stem_conv": stem_conv, "stem_bn": stem_bn,
          "block": lambda i, j: f"{word}.{i}.{j}."}


def _block_pattern(fmt: str) -> str:
  """Regex of a block's key prefix; groups: stage (torchvision 1-based, release 0-based), block."""
  return (r"layer([1-4])\.(\d+)\." if fmt == "torchvision"
          else r"(?:layers|stages)\.(\d)\.(\d+)\.")


def _structure(fmt: str, sd: dict, stem: np.ndarray):
  """`(variant, kind, blocks per stage)` of a network state_dict; None for what the keys
  do not tell (a stem that is neither 3x3 nor 7x7, a stage without blocks)."""
  square = stem.ndim == 4 and stem.shape[2] == stem.shape[3]
  variant = {3: "cifar", 7: "imagenet"}.get(stem.shape[3]) if square else None
  blocks, kind = {}, "basic"
  for key in sd:
    m = re.match(_block_pattern(fmt), key)
    if m:
      i = int(m.group(1)) - (1 if fmt == "torchvision" else 0)
      blocks.setdefault(i, set()).add(int(m.group(2)))
      if key[m.end():].startswith("conv3."):
        kind = "bottleneck"
  sizes = None
  if sorted(blocks) == list(range(models.NUM_STAGES)):
    sizes = tuple(max(blocks[i]) + 1 for i in range(models.NUM_STAGES))
  return variant, kind, sizes


def _describe_structure(variant, kind, sizes) -> str:
  depth = sum(sizes) * (3 if kind == "bottleneck" else 2) + 2
  k = models.STEM[variant]["kernel"]
  name = {"cifar": "a CIFAR", "imagenet": "an ImageNet"}[variant]
  return f"{name} ResNet-{depth} ({k}x{k} stem, {kind} blocks {'-'.join(map(str, sizes))})"


def _check_structure(path: str, fmt: str, sd: dict, stem_key: str, arch: str) -> None:
  """A one-line error when the file holds another network than `arch` (module doc)."""
  stem = sd[stem_key]
  variant, kind, sizes = _structure(fmt, sd, stem)
  want = models.ARCHS[arch]
  if variant is None or stem.shape[1] != 3:
    raise UserError(f"the stem conv {stem_key} of {path} has shape {tuple(stem.shape)} (OIHW); "
                    "expected (width, 3, 3, 3) for a CIFAR ResNet or (width, 3, 7, 7) for an "
                    "ImageNet ResNet.")
  if sizes is None:  # the keys do not tell: the missing-key check names what lacks
    sizes = want[2]
  if (variant, kind, sizes) == want:
    return
  fits = [a for a, spec in models.ARCHS.items() if spec == (variant, kind, sizes)]
  found = _describe_structure(variant, kind, sizes)
  fix = (f"pass --arch={fits[0]}" if fits else
         f"no arch here has that structure ({', '.join(models.ARCHS)})")
  raise UserError(f"{path} holds {found}, but --arch={arch} is "
                  f"{_describe_structure(*want)}; {fix}.")


def expected_keys(net: models.ResNet, fmt: str = "torchvision", sd: Optional[dict] = None) -> dict:
  """`{torch key: torch shape}` of every tensor `convert` reads for `net` (BN counters and
  Dirac's `delta` buffers excluded). `sd` picks the release layout's spelling."""
  layout = _layout(fmt, sd or {})
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  out = {}
  for kpath, leaf in jax.tree_util.tree_leaves_with_path(shapes):
    key = _torch_key(tuple(str(getattr(p, "key", p)) for p in kpath), layout)
    out[key] = _torch_shape(key, leaf.shape)
  return out


def _torch_key(path, layout) -> str:
  """The torch key of one leaf of our variables tree, path like ('params','stem','conv','kernel')."""
  collection, top, *rest = path
  if top == "head":
    return {"kernel": "fc.weight", "bias": "fc.bias"}[rest[0]]
  if top == "stem":
    module, leaf = rest
    prefix = layout["stem_conv"] if module == "conv" else layout["stem_bn"]
  else:
    m = re.fullmatch(r"stage(\d)_block(\d+)", top)
    name, module, leaf = rest
    block = layout["block"](int(m.group(1)) - 1, int(m.group(2)))
    if name == "shortcut":
      prefix = block + ("downsample.0." if module == "conv" else "downsample.1.")
    else:
      n = name[len("conv"):]
      prefix = block + (f"conv{n}." if module == "conv" else f"bn{n}.")
  del collection
  if module == "conv":
    return prefix + {"kernel": "weight", dirac_lib.A_NAME: "alpha",
                     dirac_lib.B_NAME: "beta"}[leaf]
  return prefix + _BN[leaf]


def _convert(key: str, tensor: np.ndarray, want_shape) -> Optional[np.ndarray]:
  """Our layout of a torch tensor, or None when its shape does not fit."""
  if key.endswith(".alpha") or key.endswith(".beta"):
    out = tensor.reshape(-1) if tensor.size == int(np.prod(want_shape)) else None
  elif tensor.ndim == 4:
    out = tensor.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  elif key == "fc.weight" and tensor.ndim == 2:
    out = tensor.T
  else:
    out = tensor
  if out is None or tuple(out.shape) != tuple(want_shape):
    return None
  return np.ascontiguousarray(out, np.float32)


def _ignored(key: str) -> bool:
  """Tensors no network of ours has: BN counters, Dirac's fixed delta, unused connectors."""
  if key.endswith("num_batches_tracked") or key.endswith(".delta"):
    return True
  if re.search(r"(^|\.)connector[12]\.", key):
    return True
  return False


def _unused_downsample(key: str, net: models.ResNet, fmt: str) -> bool:
  """A projection module of a block that has no shortcut in `net`'s plan (see module doc)."""
  m = re.match(_block_pattern(fmt) + r"downsample\.", key)
  if not m:
    return False
  i = int(m.group(1)) - (1 if fmt == "torchvision" else 0)
  j = int(m.group(2))
  plan = net.plan
  return 0 <= i < len(plan) and j < len(plan[i]) and plan[i][j] == "none"


def convert(path: str, *, arch: str, num_classes: int = 0, width: int = 0, fmt: str = "auto",
            which: str = "teacher", shortcuts: str = "", state: Optional[dict] = None):
  """`(net, variables, info)` from the PyTorch checkpoint at `path` (`state`: its network's
  `{key: numpy array}` in the `fmt` layout, read already, e.g. by `zoo_import`).

  num_classes / width 0: read from the checkpoint (fc / stem shapes). shortcuts '':
  'all' for a teacher or a torchvision file, 'projection' (the release's plain-CNN) for a
  student. The Dirac mode is 'reparam' when the convs carry alpha/beta, else 'none'.
  An unknown `arch` (or `shortcuts`) raises models.build's UserError, which names no flag.
  """
  models.check_choice("arch", arch, models.ARCHS)
  sd = state
  if sd is None:
    fmt, sd_t = select_network(state_dict_of(read_checkpoint(path), path), fmt, which, path)
    sd = {k: v.detach().to(dtype=_torch().float32).numpy() for k, v in sd_t.items()}
  layout = _layout(fmt, sd)

  stem_key = layout["stem_conv"] + "weight"
  if stem_key not in sd:
    raise UserError(f"{path} ({fmt} layout, {which if fmt == 'release' else 'network'}) has no "
                    f"stem conv {stem_key!r} (keys {_few(sd)}); check --format / --which.")
  _check_structure(path, fmt, sd, stem_key, arch)
  stem = sd[stem_key]
  if not width:
    width = int(stem.shape[0])
  if "fc.weight" not in sd:
    raise UserError(f"{path} has no head fc.weight (keys {_few(sd)}); pass a whole network.")
  if not num_classes:
    num_classes = int(sd["fc.weight"].shape[0])
  shortcuts = shortcuts or ("projection" if (fmt == "release" and which == "student") else "all")
  conv = "reparam" if any(k.endswith(".alpha") for k in sd) else "none"
  net = models.build(arch, shortcuts, conv=conv, num_classes=num_classes, width=width)

  expected = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(expected)
  values, missing, mismatched, used = [], [], [], set()
  for kpath, want in leaves:
    names = tuple(str(getattr(p, "key", p)) for p in kpath)
    key = _torch_key(names, layout)
    if key not in sd:
      missing.append(key)
      values.append(None)
      continue
    used.add(key)
    value = _convert(key, sd[key], want.shape)
    if value is None:
      mismatched.append(f"{key} {tuple(sd[key].shape)} (expected {_torch_shape(key, want.shape)})")
    values.append(value)
  desc = (f"{arch} width {width}, {num_classes} classes, shortcuts {shortcuts!r}, "
          f"conv {conv!r}")
  if missing:
    raise UserError(f"{path} ({fmt} layout) lacks {len(missing)} tensor(s) of a {desc}: "
                    f"{_few(missing)}; check --arch, --shortcuts and --which.")
  if mismatched:
    raise UserError(f"{len(mismatched)} tensor(s) of {path} do not fit a {desc}: "
                    f"{'; '.join(sorted(mismatched)[:_SHOWN])}"
                    f"{f'; and {len(mismatched) - _SHOWN} more' if len(mismatched) > _SHOWN else ''}"
                    "; check --arch, --width and --num_classes.")
  ignored = sorted(k for k in sd if k not in used and (
      _ignored(k) or _unused_downsample(k, net, fmt)))
  unexpected = sorted(k for k in sd if k not in used and k not in set(ignored))
  if unexpected:
    raise UserError(f"{path} ({fmt} layout) has {len(unexpected)} tensor(s) that a {desc} "
                    f"does not use: {_few(unexpected)}; check --arch and --shortcuts.")
  variables = jax.tree_util.tree_unflatten(treedef, values)
  info = {"format": fmt, "which": which, "arch": arch, "width": width,
          "num_classes": num_classes, "shortcuts": shortcuts, "conv": conv,
          "num_tensors": len(used),
          "ignored": [k for k in ignored if not k.endswith("num_batches_tracked")]}
  return net, variables, info


def _torch_shape(key: str, shape) -> tuple:
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  if key == "fc.weight":
    return (shape[1], shape[0])
  return tuple(shape)


# ------------------------------------------------------------------ into a run


def write_run(run_dir: str, net: models.ResNet, variables, info: dict, *, config_dict: dict,
              overwrite: bool = False) -> None:
  """Writes a converted network as a run (config.json + checkpoint) into `run_dir`.

  `config_dict`: the run's full config; its `model` keys are set here from `info`.
  """
  if os.path.isfile(run_dir):
    raise UserError(f"--out={run_dir} is a file; pass a directory.")
  if os.path.isdir(run_dir) and os.listdir(run_dir):
    if not overwrite:
      raise UserError(f"--out={run_dir} is not empty; choose a new directory or pass "
                      "--overwrite to replace the run it holds.")
    for name in (checkpoints.CHECKPOINT_DIR, workdir_lib.CONFIG_FILE):
      p = os.path.join(run_dir, name)
      if os.path.isdir(p):
        shutil.rmtree(p)
      elif os.path.exists(p):
        os.remove(p)
  config = dict(config_dict)
  config["model"] = dict(config.get("model", {}), arch=info["arch"], width=info["width"],
                         shortcuts=info["shortcuts"], conv=info["conv"])
  checkpoints.save_network(run_dir, net, variables, image_shape=net.default_image_shape,
                           config_dict=config)
