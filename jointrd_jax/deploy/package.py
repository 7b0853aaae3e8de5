"""The model package: an export directory that describes itself and can prove it is intact.
This module reads and verifies packages; `package_writer.write` writes them.

`export.export` calls `package_writer.write` once every model file and export.json are
written; it adds

- `weights_folded.safetensors`: the folded parameters (the deployed network), the flat
  '/'-joined keys of params.npz (`stage1_block0/conv1/conv/kernel`, ...);
- `weights_trained.safetensors`: the trained network's variables, `params/...` and
  `batch_stats/...` (what fine-tuning or another fold starts from);
- `training_config.json`: the run's config.json as recorded (the command in the card
  retrains from it exactly);
- `README.md`: the model card (`card.render`), Hugging Face front matter first;
- `SHA256SUMS`, written last: `<sha256 hex>  <relative path>` for every other file of the
  directory (those inside saved_model/ too), sorted, in `sha256sum` format, so that
  `sha256sum -c SHA256SUMS` in the directory checks it without this library. A module that
  adds a file later calls `write_checksums(directory)` again.

`verify(directory)` recomputes every listed file's SHA-256 and refuses a modified or
missing one with a one-line `UserError` naming the file and the fix (re-export, or
download the package again). `predict` and `deploy.load` call it before they read anything.
A directory without SHA256SUMS (an export made before packages, or a partial copy) is
refused the same way; its user opts out explicitly (`verify=False`, `predict --noverify`).
Files the list does not name (a hub's `.gitattributes`) are ignored; the files a caller
is about to use must be listed (`needed`).

Importing this module imports neither JAX nor TensorFlow (predict imports it).
"""
from __future__ import annotations

import hashlib
import os
import re

import numpy as np
from safetensors import numpy as st

from jointrd_jax.deploy.files import CHECKSUMS_FILE
from jointrd_jax.errors import UserError

REFETCH = ("re-export the run (python -m experiments.export --workdir=RUN --out=DIR "
           "--overwrite) or download the package again")
_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")
_CHUNK = 1 << 20


def save_safetensors(path: str, flat: dict, metadata: dict | None = None) -> None:
  """`{'a/b/kernel': array}` as a safetensors file (string metadata in its header),
  written by `open` like every other file of the export (mode 0666 less the umask;
  `safetensors.numpy.save_file` creates it 0600)."""
  data = st.save({k: np.ascontiguousarray(v) for k, v in flat.items()},
                 metadata={"format": "np", **(metadata or {})})
  with open(path, "wb") as f:
    f.write(data)


def load_safetensors(path: str) -> dict:
  """The nested tree of a safetensors file whose keys are '/'-joined paths."""
  try:
    flat = st.load_file(path)
  except Exception as e:  # pylint: disable=broad-except  # SafetensorError, OSError
    raise UserError(f"{path} cannot be read as safetensors ({type(e).__name__}: "
                    f"{' '.join(str(e).split())[:160]}); {REFETCH}.") from None
  tree: dict = {}
  for key, value in flat.items():
    node = tree
    *parents, leaf = key.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


# ------------------------------------------------------------------ checksums


def sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(_CHUNK), b""):
      h.update(block)
  return h.hexdigest()


def listing(directory: str) -> list:
  """Every file under `directory` (relative, '/'-separated, sorted), SHA256SUMS (and a
  SHA256SUMS.tmp left by an interrupted write) excepted."""
  out = []
  for root, dirs, files in os.walk(directory):
    dirs.sort()
    for name in files:
      rel = os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/")
      if rel not in (CHECKSUMS_FILE, CHECKSUMS_FILE + ".tmp"):
        out.append(rel)
  return sorted(out)


def write_checksums(directory: str) -> str:
  """Writes `directory/SHA256SUMS` over every other file (atomically); returns its path."""
  lines = [f"{sha256(os.path.join(directory, rel))}  {rel}\n" for rel in listing(directory)]
  path = os.path.join(directory, CHECKSUMS_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8", newline="\n") as f:
    f.write("".join(lines))
  os.replace(tmp, path)
  return path


def read_checksums(directory: str) -> dict:
  """`{relative path: hex}` of `directory/SHA256SUMS`; UserError if absent or garbled."""
  path = os.path.join(directory, CHECKSUMS_FILE)
  if not os.path.isfile(path):
    raise UserError(f"{directory} holds no {CHECKSUMS_FILE}, so its files cannot be verified "
                    "(an export made before packages, or an incomplete copy); "
                    f"{REFETCH}, or opt out of the check (verify=False in Python: "
                    "deploy.load, predict.open_export; --noverify on the command line: "
                    "experiments.predict, experiments.inference_benchmark --runs).")
  sums = {}
  try:
    with open(path, encoding="utf-8") as f:
      lines = f.read().splitlines()
  except (OSError, UnicodeDecodeError) as e:
    raise UserError(f"{path} cannot be read ({e}); {REFETCH}.") from None
  for i, line in enumerate(lines, 1):
    m = _LINE.fullmatch(line)
    rel = m.group(2) if m else ""
    if not m or rel.startswith("/") or ".." in rel.split("/"):
      raise UserError(f"line {i} of {path} is not a sha256sum line naming a file in the "
                      f"folder ({line[:80]!r}); {REFETCH}.")
    sums[rel] = m.group(1).lower()
  return sums


def _listed(sums: dict, name: str) -> bool:
  return name in sums or any(k.startswith(name.rstrip("/") + "/") for k in sums)


def verify(directory: str, needed=()) -> dict:
  """Checks every file SHA256SUMS lists against its SHA-256; returns the list.

  UserError (one line, naming the file and the fix) when SHA256SUMS is absent or garbled,
  a listed file is missing or differs, or a file of `needed` (files or folders the caller
  is about to use) exists but is not listed. A `needed` file that does not exist is the
  caller's to report (it knows the better fix)."""
  sums = read_checksums(directory)
  missing, modified = [], []
  for rel, want in sorted(sums.items()):
    path = os.path.join(directory, *rel.split("/"))
    if not os.path.isfile(path):
      missing.append(rel)
    elif sha256(path) != want:
      modified.append(rel)

  def more(names):
    return f" (and {len(names) - 1} more)" if len(names) > 1 else ""

  if modified:
    raise UserError(f"{modified[0]} in {directory} does not match its SHA-256 in "
                    f"{CHECKSUMS_FILE}{more(modified)}: it was modified or damaged after the "
                    f"export; {REFETCH}.")
  if missing:
    raise UserError(f"{missing[0]} is listed in {directory}/{CHECKSUMS_FILE} but missing"
                    f"{more(missing)}; {REFETCH}.")
  for name in needed:
    if os.path.exists(os.path.join(directory, name)) and not _listed(sums, name):
      raise UserError(f"{name} in {directory} is not listed in {CHECKSUMS_FILE}, so it "
                      f"cannot be verified (added after the export?); {REFETCH}.")
  return sums
