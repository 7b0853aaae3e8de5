"""The workdir contract: one run per workdir, identified by its config.

A workdir holds `config.json` (written once the run has been validated), `checkpoints/`,
`metrics.jsonl`, `tensorboard/`, `summary.json` at the end, and `teacher/` when a
distillation run trained its own teacher. A workdir that holds a run of another config
is refused unless `--config.overwrite=True`.
"""
import json
import os
import pathlib
import shutil
import tempfile

import jax
from etils import epath

from jointrd_jax import methods
from jointrd_jax.training import recipes
from jointrd_jax.errors import UserError

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
# Keys that may differ when resuming: they change neither the result nor the run's identity.
RESUME_SAFE_KEYS = ("overwrite", "log_every_steps", "checkpoint_every_epochs",
                    "keep_checkpoints", "download", "data_dir", "eval_batch_size")


# Keys of earlier versions: the loss settings before each term had its own key. A value
# equal to its default then is "unset" now (the method's value, which is the same).
RENAMED = {"kd_tau": (("kd", "tau"), 0.9), "kd_temperature": (("kd", "temperature"), 4.0),
           "mse_alpha": (("mse_all", "weight"), 1e-3), "jointrd_dc": (("jointrd", "dc"), 0.5),
           "jointrd_decay_epochs": (("jointrd", "decay_epochs"), 60)}


def config_to_dict(config) -> dict:
  return json.loads(config.to_json_best_effort(sort_keys=True))


def migrate(d: dict) -> dict:
  """A saved config (dict) in this version's keys: keys added since at the value earlier
  runs used (`_add_new_keys`), the flat `loss.*` keys of earlier versions moved under their
  term (`loss.kd_tau` -> `loss.kd.tau`, ...); settings that never applied to the run unset
  (`_drop_inert`)."""
  d = _add_new_keys(d)
  loss = d.get("loss")
  if not isinstance(loss, dict) or not set(loss) & set(RENAMED):
    return _drop_inert(d)
  new_loss = {k: v for k, v in loss.items() if k not in RENAMED}
  for old, ((term, key), default) in RENAMED.items():
    if old in loss and loss[old] != default:
      new_loss.setdefault(term, {})[key] = loss[old]
  return _drop_inert(dict(d, loss=new_loss))


def _add_new_keys(d: dict) -> dict:
  """Keys added since, at the value every earlier run trained with: `recipe` ('jointrd',
  whose values the run's config.json holds) and `optimizer.skip_zero_sum_grads` (off)."""
  if not isinstance(d.get("optimizer"), dict) or "method" not in d:
    return d  # not a run config; its checks say why
  return dict(d, recipe=d.get("recipe", recipes.DEFAULT),
              optimizer={"skip_zero_sum_grads": False, **d["optimizer"]})


def _drop_inert(d: dict) -> dict:
  """`d` with the settings that never applied to its run unset, as this version's configs
  leave them (it refuses them): earlier versions kept them, e.g. the ImageNet recipe's
  `loss.jointrd.dc` on every method, the student's loss settings and `teacher.fold` in the
  config of the teacher it trained, `teacher.*` of a method without a teacher."""
  try:
    used = {w.name for w in methods.resolve_terms(d["method"], d.get("terms", ""))}
    teacher = methods.needs_teacher(d["method"], d.get("terms", ""))
  except (KeyError, TypeError, UserError):
    return d  # not a config this version can run; its checks say why
  out = dict(d)
  if isinstance(d.get("loss"), dict):
    out["loss"] = {t: (s if t in used or not isinstance(s, dict) else dict.fromkeys(s))
                   for t, s in d["loss"].items()}
  if not teacher and isinstance(d.get("teacher"), dict):
    out["teacher"] = {k: methods.TEACHER_UNSET.get(k, v) for k, v in d["teacher"].items()}
  return out


def _identity(d: dict) -> dict:
  return {k: v for k, v in d.items() if k not in RESUME_SAFE_KEYS}


def _unset(v) -> bool:
  """Absent, None, '' or a section of such: a key a config leaves to the method (or one
  that an earlier version did not have)."""
  return v is None or v == "" or (isinstance(v, dict) and all(_unset(x) for x in v.values()))


def _diff(a: dict, b: dict, prefix=""):
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k), b.get(k)
    if isinstance(va, dict) and isinstance(vb, dict):
      out += _diff(va, vb, f"{prefix}{k}.")
    elif va != vb and not (_unset(va) and _unset(vb)):
      out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
  return out


def differences(saved: dict, config) -> list:
  """What differs between a saved config (dict) and `config`, keys that may change on a
  resume left out: `['key: old -> new', ...]`, empty for the same run."""
  new = _identity(config_to_dict(config))
  return _diff(_earlier_epochs(_identity(migrate(saved)), new), new)


def _earlier_epochs(old: dict, new: dict) -> dict:
  """A config saved before the settings counted in epochs were fractions of the run
  (`Term.per_run`; its term's settings lack the fraction key) ran the absolute value (its
  own, else the term's default then): the same as `new` where `new` resolves to the same
  epochs (e.g. 60 of 200), else that absolute value, so that the difference shows."""
  try:
    now = {w.name: w.params for w in methods.resolve_terms(
        new["method"], new.get("terms", ""), new.get("loss") or {}, new.get("num_epochs"))}
  except (KeyError, TypeError, UserError):
    return old  # a config the run's own checks refuse
  loss = dict(old.get("loss") or {})
  for name, params in now.items():
    saved, term = loss.get(name), methods.TERMS[name]
    saved = saved if isinstance(saved, dict) else {}
    for frac, key in term.per_run.items():
      if frac in saved:
        continue  # saved by this version
      then = saved.get(key) if saved.get(key) is not None else term.params[key]
      same = then == params[key]
      ours = (new.get("loss") or {}).get(name) or {}
      saved = dict(saved, **({frac: ours.get(frac), key: ours.get(key)} if same else
                             {frac: None, key: then}))
    loss[name] = saved
  return dict(old, loss=loss)


def writable_problem(directory: str) -> str | None:
  """Why this process cannot write to `directory` (None: it can), without creating it: a
  probe directory is created and removed at once in `directory` or, when that does not
  exist yet, in its nearest existing parent (permission bits do not tell it for root, nor
  in /proc, /sys or on a read-only mount). A remote path (gs://) gets a probe file (one
  per process, no races) where it exists; a new one is checked when first written."""
  if "://" in str(directory):
    path = epath.Path(directory)
    try:
      if path.exists():
        probe = path / f".write_probe.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
      return f"cannot create a file in {directory}: {e.strerror or e}"
    return None
  where = pathlib.Path(os.path.abspath(directory))
  while not where.exists():
    where = where.parent
  if not where.is_dir():
    return f"{where} is not a directory"
  try:
    os.rmdir(tempfile.mkdtemp(prefix=".write_probe.", dir=where))
  except OSError as e:
    return f"cannot create a directory in {where}: {e.strerror or e}"
  return None


def check_writable(workdir: str) -> epath.Path:
  """`workdir` as a path; refused (one line) when this process cannot write to it
  (`writable_problem`)."""
  problem = writable_problem(workdir)
  if problem:
    raise UserError(f"cannot write to workdir {workdir} ({problem}); "
                    "choose a writable --workdir.")
  return epath.Path(workdir)


def check(workdir: str, config) -> bool:
  """Refuses a workdir that holds a run of another config, or other files, unless
  `overwrite` is set; reads only. True if it holds a run of another config (to discard)."""
  path = epath.Path(workdir)
  saved_file = path / CONFIG_FILE
  if saved_file.exists():
    try:
      saved = json.loads(saved_file.read_text())
    except (OSError, ValueError) as e:
      raise UserError(f"cannot read {saved_file} ({e}); use a new --workdir, or "
                      "--config.overwrite=True to discard it.") from None
    diff = differences(saved, config)
    if diff and not config.overwrite:
      shown = "; ".join(diff[:3]) + (f"; and {len(diff) - 3} more" if len(diff) > 3 else "")
      raise UserError(f"workdir {workdir} holds a run of a different config ({shown}); "
                      "use a new --workdir, or --config.overwrite=True to discard it.")
    return bool(diff)
  try:
    names = sorted(p.name for p in path.iterdir()) if path.exists() else []
  except OSError as e:  # a regular file, or unreadable
    raise UserError(f"cannot use {workdir} as the workdir ({e.strerror or e}); choose a "
                    "directory for --workdir.") from None
  if (any(n != "teacher" and not n.startswith(".write_probe") for n in names)
      and not config.overwrite):
    names = names[:5]
    raise UserError(f"workdir {workdir} is not empty and holds no run config ({', '.join(names)}); "
                    "use a new --workdir, or --config.overwrite=True.")
  return False


def prepare(workdir: str, config, discard=None) -> epath.Path:
  """Checks the workdir against `config`; on a fresh or overwritten one, writes config.json.

  Nothing is written unless the workdir is new, holds this very run, or `overwrite` is set.
  `discard`: the result of an earlier `check` (multi-process runs check before any process
  writes, as process 0's writes would change what the others see).
  """
  path = epath.Path(workdir)
  if discard is None:
    discard = check(workdir, config)
  if discard and jax.process_index() == 0:
    for name in ("checkpoints", "metrics.jsonl", "tensorboard", SUMMARY_FILE, CONFIG_FILE):
      p = path / name
      if p.is_dir():
        shutil.rmtree(str(p))
      elif p.exists():
        p.unlink()
  check_writable(workdir)
  path.mkdir(parents=True, exist_ok=True)
  if jax.process_index() == 0:
    (path / CONFIG_FILE).write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True))
  return path


def read_config(workdir: str) -> dict:
  f = epath.Path(workdir) / CONFIG_FILE
  if not f.exists():
    raise UserError(f"{workdir} holds no {CONFIG_FILE}: it is not a run's workdir "
                    "(check --config.teacher.checkpoint).")
  return json.loads(f.read_text())


def read_summary(workdir: str):
  f = epath.Path(workdir) / SUMMARY_FILE
  return json.loads(f.read_text()) if f.exists() else None


def write_json(path: epath.Path, obj) -> None:
  if jax.process_index() == 0:
    tmp = path.parent / (path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    tmp.replace(path)
