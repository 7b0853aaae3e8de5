"""Writing the model package of an export (what it holds: `package.py`, which reads and
verifies it). Separate from the reader, which must stay light: the writer renders the model
card (`card.py`: JAX, the run's results), and the card's checks use the reader."""
import json
import os
import shutil

from jointrd_jax.deploy import card, package
from jointrd_jax.deploy.files import (CARD_FILE, CHECKSUMS_FILE, SAFETENSORS_FOLDED,
                                      SAFETENSORS_TRAINED, TRAINING_CONFIG_FILE)
from jointrd_jax.models import fold
from jointrd_jax.training import workdir as workdir_lib

FILES = (SAFETENSORS_FOLDED, SAFETENSORS_TRAINED, TRAINING_CONFIG_FILE, CARD_FILE,
         CHECKSUMS_FILE)


def write(out_dir: str, report: dict, *, net, variables, folded, run_dir: str) -> list:
  """Writes the package files into the export directory `out_dir` (export.json and the
  model files already there); `variables`: the trained network's, `folded`: the folded
  `{'params': ...}`. Returns the names written. SHA256SUMS comes last."""
  arch = json.dumps(report.get("architecture") or {}, sort_keys=True)
  package.save_safetensors(os.path.join(out_dir, SAFETENSORS_FOLDED),
                           fold.to_numpy(folded["params"]),
                           {"network": "folded", "architecture": arch})
  trained = {k: variables[k] for k in ("params", "batch_stats") if k in variables}
  package.save_safetensors(os.path.join(out_dir, SAFETENSORS_TRAINED), fold.to_numpy(trained),
                           {"network": "trained", "architecture": arch})
  config_path = os.path.join(run_dir, workdir_lib.CONFIG_FILE)
  if os.path.isfile(config_path):
    shutil.copyfile(config_path, os.path.join(out_dir, TRAINING_CONFIG_FILE))
  text = card.render(report, run_dir=run_dir, net=net, variables=variables,
                     files=sorted(os.listdir(out_dir)) + [CARD_FILE, CHECKSUMS_FILE])
  with open(os.path.join(out_dir, CARD_FILE), "w", encoding="utf-8") as f:
    f.write(text)
  package.write_checksums(out_dir)
  return [n for n in FILES if os.path.exists(os.path.join(out_dir, n))]
