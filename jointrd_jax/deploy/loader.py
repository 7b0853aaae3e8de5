"""`jointrd_jax.deploy.load`: an exported model package as a Flax module, its variables
and a callable, from a local folder or a Hugging Face Hub repository.

    model = deploy.load("export/jointrd")           # or "org/name" (the Hub, or its cache)
    logits = model(images)                          # uint8 [N, H, W, C] -> float32 logits
    model.module, model.variables                   # the folded flax network and its params
    deploy.load("export/jointrd", folded=False)     # the trained network (BatchNorm, Dirac)

Steps: verify every file against SHA256SUMS (`package.verify`; a modified, missing or
unlisted file is refused in one line; `verify=False` skips the check, for exports made
before packages), read export.json, rebuild the network from its recorded `architecture`
(`models.from_description`; folded: the same network with `folded=True` and plain convs,
as `models.fold.fold` returns it) and its variables from `weights_folded.safetensors`
(`params.npz` for an export without it) or `weights_trained.safetensors` (`params` and
`batch_stats`), checked against the module's own variable shapes and refused when one
holds a NaN or inf (naming the tensor). The call normalises
inside exactly as the exported models do (`checks.inference_fn`: `(x / 255 - mean) / std`
with export.json's mean and std, fp32 convolutions).

A name that is not a folder here but reads `org/name` is a Hub repository:
`huggingface_hub.snapshot_download` fetches it (or, with `local_files_only=True`, finds it
in the local Hub cache: `cache_dir`, else `HF_HUB_CACHE`) and the snapshot folder is loaded
as above. Module named `loader` (not `load`) so that the package attribute `deploy.load`
stays the function.
"""
from __future__ import annotations

import dataclasses
import os
import re

import jax
import numpy as np

from jointrd_jax import models
from jointrd_jax.deploy import checks, formats, package, predict, runtimes
from jointrd_jax.deploy.files import (EXPORT_HINT, PARAMS_FILE, REPORT_FILE,
                                      SAFETENSORS_FOLDED, SAFETENSORS_TRAINED)
from jointrd_jax.errors import UserError

_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_EXTRA_FIELDS = ("folded", "num_params_folded")  # export.json architecture, not the network's


@dataclasses.dataclass(eq=False)
class LoadedModel:
  """An exported network: `module`, `variables`, and how to feed it."""
  directory: str
  module: models.ResNet = dataclasses.field(repr=False)
  variables: dict = dataclasses.field(repr=False)  # {'params'}; trained: + 'batch_stats'
  folded: bool
  class_names: tuple
  input_shape: tuple  # (H, W, C)
  mean: np.ndarray  # float32 (C,)
  std: np.ndarray
  preprocessing: dict  # as export.json; `predict.load_image` applies it
  report: dict = dataclasses.field(repr=False)
  _fn: object = dataclasses.field(default=None, repr=False)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __call__(self, images) -> np.ndarray:
    """float32 logits [N, num_classes] of uint8 images [N, H, W, C] (raw 0..255 pixels)."""
    x = np.asarray(images)
    runtimes.check_images(x, self.input_shape)
    if self._fn is None:
      self._fn = checks.inference_fn(self.module, self.variables, self.mean, self.std)
    return runtimes.run_in_batches(self._fn, x, runtimes.batch_size(self.input_shape))


def load(directory: str, *, folded: bool = True, verify: bool = True,
         revision: str | None = None, cache_dir: str | None = None,
         local_files_only: bool = False) -> LoadedModel:
  """The model package in `directory` (an export folder, or a Hub repo id `org/name`);
  `folded`: the deployed (folded) network, else the trained one. See the module doc."""
  directory = _resolve(str(directory), revision, cache_dir, local_files_only)
  weights = SAFETENSORS_FOLDED if folded else SAFETENSORS_TRAINED
  report = predict.read_report(directory, verify=verify, needed=(weights, PARAMS_FILE))
  net = _network(directory, report, folded)
  variables = _variables(directory, weights, folded)
  _check_tree(directory, weights, net, variables, report)
  _check_finite(directory, weights, variables["params"] if folded else variables)
  inp = report["input"]
  names = (report.get("classes") or {}).get("names") or [
      f"class_{i}" for i in range(int(report["output"]["shape"][-1]))]
  shape = tuple(int(d) for d in inp["shape"][1:])
  return LoadedModel(
      directory=directory, module=net, variables=variables, folded=folded,
      class_names=tuple(str(n) for n in names), input_shape=shape,
      mean=np.asarray(inp["mean"], np.float32), std=np.asarray(inp["std"], np.float32),
      preprocessing=report.get("preprocessing") or predict.default_preprocessing(
          (report.get("architecture") or {}).get("variant"), shape),
      report=report)


def _resolve(name: str, revision, cache_dir, local_files_only) -> str:
  """A local folder as it is; `org/name` that is no path here: the Hub snapshot folder."""
  if os.path.exists(name) or not _REPO_ID.fullmatch(name):
    return name  # read_report refuses a missing path or a file with one line
  try:
    from huggingface_hub import snapshot_download  # optional here: the error names the fix
  except ImportError as e:
    raise UserError(f"{name} is no folder here, and loading it from the Hugging Face Hub needs "
                    f"huggingface_hub: pip install huggingface_hub ({e}).") from None
  try:
    return snapshot_download(name, revision=revision, cache_dir=cache_dir,
                             local_files_only=local_files_only)
  except Exception as e:  # pylint: disable=broad-except  # offline, not found, gated, ...
    where = "in the local Hub cache" if local_files_only else "on the Hugging Face Hub"
    reason = " ".join(str(e).split())[:200]
    raise UserError(f"{name} is no folder here and cannot be found {where} "
                    f"({type(e).__name__}: {reason}); pass {EXPORT_HINT}, or a Hub repo id "
                    "org/name that is online or in the cache.") from None


def _network(directory: str, report: dict, folded: bool) -> models.ResNet:
  arch = {k: v for k, v in (report.get("architecture") or {}).items()
          if k not in _EXTRA_FIELDS}
  try:
    net = models.from_description(arch)
  except UserError:
    raise
  except (TypeError, KeyError, ValueError) as e:
    raise UserError(f"{directory}/{REPORT_FILE} records no buildable architecture "
                    f"({type(e).__name__}: {e}); {package.REFETCH}.") from None
  # The deployed form, as models.fold.fold builds it: plain biased convs.
  return dataclasses.replace(net, folded=True, conv="none") if folded else net


def _variables(directory: str, weights: str, folded: bool) -> dict:
  path = os.path.join(directory, weights)
  if os.path.isfile(path):
    tree = package.load_safetensors(path)
    return {"params": tree} if folded else tree
  npz = os.path.join(directory, PARAMS_FILE)
  if folded and os.path.isfile(npz):  # an export made before packages
    return {"params": formats.load_npz(npz)}
  raise UserError(f"{directory} holds no {weights} (an export made before model packages); "
                  "re-export the run (python -m experiments.export --overwrite).")


def _check_tree(directory, weights, net, variables, report) -> None:
  """The weights have exactly the module's variables (names, shapes, float32)."""
  shape = tuple(int(d) for d in report["input"]["shape"][1:])
  want = jax.eval_shape(lambda: models.init(net, jax.random.key(0), shape))
  spec = lambda t: jax.tree_util.tree_map(lambda x: (tuple(x.shape), str(x.dtype)), t)  # noqa: E731
  if spec(dict(variables)) != spec(dict(want)):
    raise UserError(f"{weights} in {directory} does not hold the variables of the network "
                    f"export.json describes; {package.REFETCH}.")


def _check_finite(directory, weights, tree) -> None:
  """Every weight of `tree` (as the file holds it: its keys are the tensors' names) is
  finite: a NaN or inf (a damaged file whose checksums were rewritten, a diverged run)
  would turn every logit into NaN."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    bad = int(np.size(leaf) - np.count_nonzero(np.isfinite(leaf)))
    if bad:
      name = "/".join(str(getattr(k, "key", k)) for k in path)
      raise UserError(f"{weights} in {directory}: tensor {name} holds {bad} non-finite "
                      f"value(s) (NaN or inf), so the model would output NaN; "
                      f"{package.REFETCH}.")
