"""Nothing half-written: an export is built in a staging folder beside `--out` and moved
into place only when everything passed.

`check_out` validates `--out` before anything is written; `staged(out_dir)` yields the
staging folder (`.<name>.<random>.staging` in the same parent, so the final move is a
rename on one file system) and, when its block succeeds, replaces `out_dir` with it (an
old export under `--overwrite` is renamed aside first and deleted only after the new one
is in place). When the block raises, the staging folder and any parent folder created
for it are removed, and `out_dir` is as it was.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from jointrd_jax.training import workdir
from jointrd_jax.errors import UserError


def check_out(out_dir: str, overwrite: bool) -> str:
  """`out_dir` as an absolute path, refused (one line) when it cannot take the export."""
  out_dir = os.path.abspath(out_dir)
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise UserError(f"--out={out_dir} is a file; pass a directory.")
  if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
    raise UserError(f"--out={out_dir} is not empty; choose a new directory or pass "
                    "--overwrite to replace its export.")
  # The export is staged beside --out and renamed into place: its parent takes the writes.
  problem = workdir.writable_problem(os.path.dirname(out_dir))
  if problem:
    raise UserError(f"cannot write to --out={out_dir} ({problem}); choose a writable "
                    "directory.")
  return out_dir


def _first_missing(path: str) -> str | None:
  """The outermost folder of `path` that does not exist (None: `path` exists)."""
  missing = None
  while not os.path.exists(path):
    missing, path = path, os.path.dirname(path)
  return missing


def _umask_mode() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return 0o777 & ~mask


def _publish(stage: str, out_dir: str) -> None:
  old = None
  if os.path.isdir(out_dir):
    if os.listdir(out_dir):
      old = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".old",
                             dir=os.path.dirname(out_dir))
      os.rmdir(old)
      os.rename(out_dir, old)
    else:
      os.rmdir(out_dir)
  try:
    os.rename(stage, out_dir)
  except OSError:
    if old:
      os.rename(old, out_dir)  # the old export back in place
    raise
  if old:
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged(out_dir: str):
  """Yields the staging folder of `out_dir` (see the module doc)."""
  parent = os.path.dirname(out_dir)
  created = _first_missing(parent)
  try:
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".staging",
                             dir=parent)
    os.chmod(stage, _umask_mode())
  except OSError as e:
    if created:
      shutil.rmtree(created, ignore_errors=True)
    raise UserError(f"cannot create --out={out_dir} ({e.strerror or e}).") from None
  try:
    yield stage
    _publish(stage, out_dir)
  except BaseException:
    shutil.rmtree(stage, ignore_errors=True)
    if created:
      shutil.rmtree(created, ignore_errors=True)
    raise
