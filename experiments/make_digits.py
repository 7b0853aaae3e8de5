r"""Write scikit-learn's digits as an .npz for `--config.dataset=npz:PATH`.

  python -m experiments.make_digits --out=digits32.npz

1,437 training and 360 test images, 32x32x3 uint8, 10 classes; the same file on every
machine (fixed split; jointrd_jax/datasets/digits.py). Needs scikit-learn (requirements.txt).
Exit status 0, or 2 with one line `error: ...` on stderr.
"""
import os
import sys

import numpy as np

from experiments import cli
from jointrd_jax.datasets import digits
from jointrd_jax.errors import UserError


def parser() -> cli.ArgumentParser:
  p = cli.ArgumentParser("python -m experiments.make_digits", __doc__)
  p.add_argument("--out", required=True, metavar="PATH", help="The .npz to write. Required.")
  cli.add_bool(p, "overwrite", False, "Replace an existing PATH (default: refuse).")
  return p


def _write(out: str, overwrite: bool) -> str:
  if not out.endswith(".npz"):
    raise UserError(f"--out={out} must end in .npz (e.g. --out=digits32.npz)")
  if os.path.exists(out) and not overwrite:
    raise UserError(f"{out} exists: pass --overwrite to replace it, or choose another --out")
  parent = os.path.dirname(os.path.abspath(out))
  if not os.path.isdir(parent):
    raise UserError(f"--out: folder {parent} does not exist: create it first")
  a = digits.arrays()
  tmp = out[:-4] + ".partial.npz"
  np.savez_compressed(tmp, **a)
  os.replace(tmp, out)
  return (f"wrote {out}: {len(a['y_train'])} train / {len(a['y_test'])} test images, "
          f"{a['x_train'].shape[1]}x{a['x_train'].shape[2]}x3, 10 classes")


def main(argv=None) -> int:
  args = parser().parse_args(sys.argv[1:] if argv is None else argv)
  msg = cli.guarded(_write, args.out, args.overwrite)
  print(msg)
  return 0


if __name__ == "__main__":
  sys.exit(main())
