"""Import the CIFAR-100 zoo's PyTorch checkpoints (RepDistiller, mdistiller) into our zoo archs.

Both toolkits define the same modules (RepDistiller `models/*.py`, mdistiller
`mdistiller/models/cifar/*.py`) and save `torch.save({'model': state_dict, 'epoch', ...})`
(RepDistiller `train_teacher.py`; mdistiller's published `cifar_teachers.tar`, e.g.
`resnet32x4_vanilla/ckpt_epoch_240.pth`, which its `tools/train.py` loads with
`load_checkpoint(path)['model']`). Accepted too: a bare state_dict, `module.`-prefixed keys
(DataParallel), and mdistiller's distiller checkpoints (`module.student.*`,
`module.teacher.*`: `which` picks one).

The reference key of each of our variables (`reference_key`), per family:

- CIFAR ResNet (`resnet.py`): stem `conv1`, `bn1`; block j of stage i (1-based)
  `layer{i}.{j}.conv{1,2}` / `bn{1,2}`, projection `layer{i}.{j}.downsample.{0,1}`; `fc`.
- WRN (`wrn.py`): stem `conv1`; block j of stage i `block{i}.layer.{j}.bn1` / `conv1` /
  `bn2` / `conv2` / `convShortcut`; final `bn1`; `fc`.
- VGG (`vgg.py`): conv j of stage i `block{i-1}.{3j}` (with bias), its BN `block{i-1}.{3j+1}`;
  `classifier`.
- MobileNetV2 (`mobilenetv2.py`): stem `conv1.{0,1}`; block j of group g
  `blocks.{g}.{j}.conv.{0,1}` (pw), `.{3,4}` (dw), `.{6,7}` (pw-linear); `conv2.{0,1}`;
  `classifier.0`.
- ShuffleNetV1 / V2 (`ShuffleNetv1.py`, `ShuffleNetv2.py`): stem `conv1`, `bn1`; block j of
  stage i `layer{i}.{j}.conv{k}` / `bn{k}` (V2: the down block is `layer{i}.0`, basic block
  j is `layer{i}.{j+1}`); V2's last `conv2`, `bn2`; `linear`.
- ResNet18/34/50 (`resnetv2.py`, mdistiller's `ResNet50` teacher): our CIFAR `resnet18` /
  `resnet34` / `resnet50` (`models.ARCHS`, the same network), mapped by `torch_import`'s
  torchvision layout once `shortcut.{0,1}` is read as `downsample.{0,1}` and `linear` as
  `fc`: stem `conv1`, `bn1`; `layer{i}.{j}.conv{n}` / `bn{n}`; `linear`.

Leaves: conv `weight` OIHW -> our kernel HWIO (grouped: O, I/groups -> H, W, I/groups, O),
conv `bias`; BN `weight`, `bias`, `running_mean`, `running_var` -> scale, bias, mean, var;
Linear `weight` [out, in] -> kernel [in, out], `bias`. `num_batches_tracked` is ignored.
A file of another family, a missing, unused or misshapen tensor is one `UserError`.
"""
import functools
import re

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.errors import UserError
from jointrd_jax.deploy import torch_import
from jointrd_jax.models import zoo

SOURCES = ("mdistiller", "repdistiller")
_SHOWN = 3  # keys listed in an error message
_BN = {"scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
_CONV = {"kernel": "weight", "bias": "bias"}

# The file kinds: what a state_dict's keys show (checked in order), and the words for it.
_KINDS = (
    ("mobilenetv2", r"blocks\.\d+\.\d+\.conv\.\d+\.weight", "MobileNetV2 (mobilenetv2.py)"),
    ("shufflenetv2", r"layer\d\.0\.conv5\.weight", "ShuffleNetV2 (ShuffleNetv2.py)"),
    ("resnetv2", r"layer\d\.\d+\.shortcut\.0\.weight", "CIFAR ResNet18/34/50 (resnetv2.py)"),
    ("shufflenetv1", r"linear\.weight", "ShuffleNetV1 (ShuffleNetv1.py)"),
    ("wrn", r"block\d\.layer\.\d+\.", "wide ResNet (wrn.py)"),
    ("vgg", r"block\d\.\d+\.weight", "VGG (vgg.py)"),
    ("cifar_resnet", r"layer\d\.\d+\.conv1\.weight", "CIFAR ResNet (resnet.py)"),
)
_WORDS = {kind: words for kind, _, words in _KINDS}


def kind_of_arch(arch: str) -> str:
  """The file kind of an arch of `archs()` (the family, ShuffleNet's version apart)."""
  if arch in models.ARCHS:
    return "resnetv2"
  family = zoo.ZOO[arch].family
  return arch if family == "shufflenet" else family


def kind_of_file(sd: dict):
  """The file kind a state_dict's keys show (a key starting with its pattern), or None."""
  for kind, pattern, _ in _KINDS:
    if any(re.match(pattern, k) for k in sd):
      return kind
  return None


# ------------------------------------------------------------------ the key mapping


def _leaf(prefix: str, module: str, leaf: str) -> str:
  return prefix + (_BN if module == "bn" else _CONV)[leaf]


def _resnet_key(top, rest):
  if top == "stem":
    return _leaf({"conv": "conv1.", "bn": "bn1."}[rest[0]], *rest)
  i, j = re.fullmatch(r"stage(\d)_block(\d+)", top).groups()
  name, module, leaf = rest
  if name == "shortcut":
    return _leaf(f"layer{i}.{j}.downsample.{0 if module == 'conv' else 1}.", module, leaf)
  return _leaf(f"layer{i}.{j}.{module}{name[-1]}.", module, leaf)


def _wrn_key(top, rest):
  (leaf,) = rest
  m = re.fullmatch(r"stage(\d)_block(\d+)_(\w+)", top)
  if not m:
    return {"stem": "conv1.", "bn": "bn1."}[top] + {**_BN, **_CONV}[leaf]
  name = "convShortcut" if m[3] == "shortcut" else m[3]
  return f"block{m[1]}.layer.{m[2]}.{name}." + (_BN if name.startswith("bn") else _CONV)[leaf]


def _vgg_key(top, rest):
  i, j = re.fullmatch(r"stage(\d)_conv(\d+)", top).groups()
  module, leaf = rest
  return _leaf(f"block{int(i) - 1}.{3 * int(j) + (module == 'bn')}.", module, leaf)


def _mobilenet_key(top, rest):
  if top in ("stem", "last"):
    module, leaf = rest
    return _leaf(f"{'conv1' if top == 'stem' else 'conv2'}.{int(module == 'bn')}.", module, leaf)
  g, j = re.fullmatch(r"group(\d)_block(\d+)", top).groups()
  unit, module, leaf = rest
  index = {"pw": 0, "dw": 3, "pwl": 6}[unit] + (module == "bn")
  return _leaf(f"blocks.{g}.{j}.conv.{index}.", module, leaf)


def _shufflenet_key(top, rest, version):
  if top in ("stem", "last"):
    module, leaf = rest
    n = 1 if top == "stem" else 2
    return _leaf(f"{'conv' if module == 'conv' else 'bn'}{n}.", module, leaf)
  i, block = re.fullmatch(r"stage(\d)_(down|block\d+)", top).groups()
  j = 0 if block == "down" else int(block[len("block"):]) + (version == 2)
  unit, module, leaf = rest
  return _leaf(f"layer{i}.{j}.{'conv' if module == 'conv' else 'bn'}{unit[-1]}.", module, leaf)


_HEAD = {"cifar_resnet": "fc.", "wrn": "fc.", "vgg": "classifier.", "resnetv2": "linear.",
         "mobilenetv2": "classifier.0.", "shufflenetv1": "linear.", "shufflenetv2": "linear."}


def reference_key(kind: str, path) -> str:
  """The reference key of our variable at `path` (e.g. ('params', 'stem', 'conv', 'kernel'))
  in a network of file kind `kind`."""
  _, top, *rest = path
  if top == "head":
    return _HEAD[kind] + _CONV[rest[0]]
  if kind.startswith("shufflenet"):
    return _shufflenet_key(top, rest, int(kind[-1]))
  return {"cifar_resnet": _resnet_key, "wrn": _wrn_key, "vgg": _vgg_key,
          "mobilenetv2": _mobilenet_key}[kind](top, rest)


def reference_shape(shape) -> tuple:
  """The reference's shape of one of our leaves: HWIO -> OIHW, [in, out] -> [out, in]."""
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  return tuple(shape[::-1])


def expected(net) -> dict:
  """`{reference key: (reference shape, our path)}` of every variable of zoo network `net`."""
  kind = kind_of_arch(net.zoo_arch)
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  out = {}
  for kpath, leaf in jax.tree_util.tree_leaves_with_path(shapes):
    path = tuple(str(getattr(p, "key", p)) for p in kpath)
    out[reference_key(kind, path)] = (reference_shape(leaf.shape), path)
  return out


def to_variables(net, sd: dict):
  """Our variables of `net` from a reference state_dict `{key: numpy array}` whose keys and
  shapes are exactly `expected(net)`'s (`num_batches_tracked` aside)."""
  want = expected(net)
  by_path = {path: sd[key] for key, (_, path) in want.items()}
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))

  def leaf(kpath, _):
    value = by_path[tuple(str(getattr(p, "key", p)) for p in kpath)]
    axes = (2, 3, 1, 0) if value.ndim == 4 else tuple(range(value.ndim))[::-1]
    return np.ascontiguousarray(np.transpose(value, axes), np.float32)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


# ------------------------------------------------------------------ checking a file


def _fits(sd: dict, want: dict) -> bool:
  return set(sd) == set(want) and all(tuple(sd[k].shape) == want[k][0] for k in sd)


@functools.lru_cache(maxsize=None)
def _expected_of(arch: str, num_classes: int) -> dict:
  return expected(models.build(arch, num_classes=num_classes or None))


def _fitting_archs(sd: dict, kind: str, num_classes: int) -> list:
  """The zoo archs of file kind `kind` whose tensors are exactly `sd`'s."""
  return [a for a in zoo.ZOO if kind_of_arch(a) == kind and _fits(sd, _expected_of(a, num_classes))]


def _problem(sd: dict, want: dict, arch: str):
  """The first problem of `sd` against `want`, in words (None: it fits)."""
  for key, value in sd.items():  # the file's order: the reference module's
    if key in want and tuple(value.shape) != want[key][0]:
      return (f"its first mismatched tensor is {key}: shape {tuple(value.shape)} in the file, "
              f"{want[key][0]} in {arch}")
  missing = [k for k in want if k not in sd]
  if missing:
    return f"it lacks {len(missing)} tensor(s) of {arch}, first {', '.join(missing[:_SHOWN])}"
  unused = [k for k in sd if k not in want]
  if unused:
    return (f"it has {len(unused)} tensor(s) that {arch} does not use, first "
            f"{', '.join(unused[:_SHOWN])}")
  return None


def check_kind(sd: dict, arch: str, num_classes: int, path: str) -> str:
  """The file kind of `sd`; one `UserError` unless it is `arch`'s (naming what it holds)."""
  kind, want = kind_of_file(sd), kind_of_arch(arch)
  if kind is None:
    raise UserError(f"{path} holds no network of the zoo (keys {', '.join(list(sd)[:_SHOWN])} "
                    "...); pass a RepDistiller / mdistiller CIFAR checkpoint.")
  if kind != want:
    fits = _fitting_archs(sd, kind, num_classes) if kind != "resnetv2" else []
    fix = (f"pass --arch={fits[0]}" if fits else "pass --arch=resnet18, resnet34 or resnet50 "
           "(its depth)" if kind == "resnetv2" else "no zoo arch has exactly its tensors")
    raise UserError(f"{path} looks like a {_WORDS[kind]} checkpoint, but --arch={arch} is a "
                    f"{_WORDS[want]}; {fix}.")
  return kind


def check_fits(sd: dict, net, path: str) -> None:
  """One `UserError` unless `sd` holds exactly the tensors of zoo network `net`."""
  arch = net.zoo_arch
  kind = check_kind(sd, arch, net.num_classes, path)
  problem = _problem(sd, expected(net), arch)
  if problem:
    fits = _fitting_archs(sd, kind, net.num_classes)
    hint = f"it holds {fits[0]}; pass --arch={fits[0]}" if fits else problem
    raise UserError(f"{path} does not fit --arch={arch}: {hint}.")


def _network(sd: dict, which: str, path: str) -> dict:
  """The network's state_dict: `module.` removed, a distiller's `which` picked."""
  if all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
  wrapped = sorted({k.split(".")[0] for k in sd} & set(torch_import.NETWORKS))
  if not wrapped:
    if which != "teacher":
      raise UserError(f"{path} holds one network, not a distiller's teacher and student, so "
                      f"--which={which} would change nothing; drop it.")
    return sd
  if which not in wrapped:
    raise UserError(f"{path} holds a distiller without a {which} network (it has "
                    f"{', '.join(wrapped)}); pass --which={wrapped[0]}.")
  return {k[len(which) + 1:]: v for k, v in sd.items() if k.startswith(which + ".")}


# resnetv2.py's spelling -> torchvision's (`torch_import`'s), as regex substitutions.
_RESNETV2_SPELLING = ((r"\.shortcut\.", ".downsample."), (r"^linear\.", "fc."))


def _resnetv2(path: str, sd: dict, arch: str, num_classes: int):
  """A resnetv2.py ResNet through `torch_import`: it is its CIFAR ResNet spelt
  torchvision's way but for `shortcut` (`downsample`) and `linear` (`fc`)."""
  spelt = {}
  for key, value in sd.items():
    for theirs, ours in _RESNETV2_SPELLING:
      key = re.sub(theirs, ours, key)
    spelt[key] = value
  try:
    return torch_import.convert(path, arch=arch, num_classes=num_classes, fmt="torchvision",
                                state=spelt)
  except UserError as e:  # named in the file's spelling again
    message = re.sub(r"\.downsample\.", ".shortcut.", str(e))
    raise UserError(re.sub(r"(?<![\w.])fc\.", "linear.", message)) from None


def source_hint(path: str) -> str:
  """For a file that failed as a torchvision / JointRD-release ResNet: ' (... pass
  --from=repdistiller)' when its keys are one of the toolkits' own layouts (not their
  resnet.py's, whose keys a torchvision ResNet shares), else ''."""
  try:
    tensors = torch_import.state_dict_of(torch_import.read_checkpoint(path), path)
    if all(k.startswith("module.") for k in tensors):
      tensors = {k[len("module."):]: v for k, v in tensors.items()}
    kind = kind_of_file(tensors)
  except (UserError, OSError, RuntimeError, ValueError):
    return ""
  if kind in (None, "cifar_resnet"):
    return ""
  return (f" ({path} looks like a RepDistiller / mdistiller {_WORDS[kind]} checkpoint: pass "
          f"--from=repdistiller or --from=mdistiller)")


def archs() -> tuple:
  """The archs `convert` takes: the zoo's and the CIFAR ResNets (resnetv2.py's)."""
  return (*zoo.ZOO, *(a for a, spec in models.ARCHS.items() if spec[0] == "cifar"))


def convert(path: str, *, arch: str, source: str, which: str = "teacher",
            num_classes: int = 0):
  """`(net, variables, info)` from the RepDistiller / mdistiller checkpoint at `path`.
  `num_classes` 0: read from the head."""
  models.check_choice("arch", arch, archs())
  models.check_choice("source", source, SOURCES)
  models.check_choice("network", which, torch_import.NETWORKS)
  tensors = torch_import.state_dict_of(torch_import.read_checkpoint(path), path)
  sd = {k: v.detach().float().numpy() for k, v in _network(tensors, which, path).items()
        if not k.endswith("num_batches_tracked")}
  head = _HEAD.get(kind_of_file(sd) or "", "") + "weight"
  if not num_classes and head in sd:
    num_classes = int(sd[head].shape[0])
  if arch in models.ARCHS:
    check_kind(sd, arch, num_classes, path)
    net, variables, info = _resnetv2(path, sd, arch, num_classes)
    return net, variables, dict(info, format=source, which=which)
  net = models.build(arch, "all", conv="none", num_classes=num_classes or None)
  check_fits(sd, net, path)
  info = {"format": source, "which": which, "arch": arch, "width": net.width,
          "num_classes": net.num_classes, "shortcuts": "all", "conv": "none",
          "num_tensors": len(sd), "ignored": []}
  return net, to_variables(net, sd), info
