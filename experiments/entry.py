"""What the absl entry points (`main`, `table12`) share: multi-host start-up, TensorFlow
kept off the accelerators, user errors printed as one line (`error: ...`, exit status 2),
`--help` exiting 0, and `--config=configs/X.py` found in this project's configs/ from any
working directory. The command-line conventions of every tool: `experiments/cli.py`."""
import importlib.util
import os
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections.config_flags import config_flags as ml_config_flags

from experiments import cli
from jointrd_jax import caches, tensorflow_support
from jointrd_jax.errors import Preempted, UserError
from jointrd_jax.training import reporting

flags.DEFINE_bool("multihost", False, "Multi-host run (Cloud TPU pod slice, SLURM): call "
                  "jax.distributed.initialize(), which finds the coordinator and process ids "
                  "there; run the same command on every host.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for "
                    "jax.distributed where it cannot detect it (with --num_processes and "
                    "--process_id).")
flags.DEFINE_integer("num_processes", None, "Number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "This process's index, with --coordinator_address.")
flags.DEFINE_string(
    "compilation_cache_dir", caches.xla(),
    "Compiled XLA programs kept between runs, so that a rerun or another seed of the same "
    "shapes skips compiling; '' = off. The environment variable JAX_COMPILATION_CACHE_DIR "
    "takes precedence.")


def define_distributed_flags():
  """The flags above are defined on import; this makes the dependency explicit."""


def hide_gpus_from_tensorflow():
  if jax.default_backend() != "gpu":
    return  # only GPUs can be grabbed by TF; skip importing it (seconds) elsewhere
  try:
    tensorflow_support.import_tensorflow()
  except ImportError:
    return


def setup():
  f = flags.FLAGS
  reporting.use_one_log_format()
  if not f["verbosity"].present:
    # Orbax and TFDS log every file at INFO; our progress lines go to stdout instead.
    logging.set_verbosity(logging.WARNING)
  if f.compilation_cache_dir and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    jax.config.update("jax_compilation_cache_dir", f.compilation_cache_dir)
    jax.config.update("jax_compilation_cache_max_size", 2 << 30)  # bytes; oldest evicted
  if f.coordinator_address is not None:
    jax.distributed.initialize(f.coordinator_address, f.num_processes, f.process_id)
  elif f.multihost:
    jax.distributed.initialize()
  hide_gpus_from_tensorflow()
  # A warning (shown by default) only where it says more than the run's first stdout line.
  log = logging.warning if jax.process_count() > 1 else logging.info
  log("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
      jax.process_count(), jax.local_device_count(), jax.device_count(),
      jax.devices()[0].device_kind)


def run_guarded(fn):
  """Runs `fn()`; a `UserError` exits 2 and a run stopped by a signal exits as
  `Preempted` says, each with one line on stderr; so does a Ctrl-C outside the training
  loop (before it starts, or a second Ctrl-C while a checkpoint is being saved)."""
  try:
    return fn()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
  except Preempted as e:
    print(str(e), file=sys.stderr, flush=True)
    sys.exit(e.exit_code)
  except KeyboardInterrupt:
    print("interrupted; nothing more was saved: rerun the same command to resume from the "
          "last checkpoint, if the run had saved one.", file=sys.stderr, flush=True)
    sys.exit(130)


def run_app(main):
  """`app.run(main)`, with config-flag mistakes (unknown key, wrong type) as one line,
  `--help` exiting 0 (absl's exits 1), and Ctrl-C while starting up as one line."""
  try:
    app.run(main, flags_parser=_parse_flags)
  except KeyboardInterrupt:  # Ctrl-C while starting up (imports, flag parsing)
    print("interrupted before the run started; nothing was written.", file=sys.stderr,
          flush=True)
    sys.exit(130)


_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")


def _asks_for_help(argv) -> bool:
  return any(a.lstrip("-").split("=", 1)[0] in _HELP_FLAGS
             for a in argv[1:] if a.startswith("-"))


def _project_configs_dir():
  """The `configs/` directory of this project (a checkout, or where `pip install` put it),
  or None."""
  spec = importlib.util.find_spec("configs")
  if spec is None or not spec.submodule_search_locations:
    return None
  for folder in spec.submodule_search_locations:
    if os.path.isfile(os.path.join(folder, "default.py")):
      return folder
  return None


def _resolve_config_path(value: str) -> str:
  """`configs/X.py[:arg]` that does not exist relative to the working directory: the same
  file of this project's configs/ (so that commands work from any directory once the
  project is installed); any other value unchanged."""
  path, sep, arg = value.partition(":")
  norm = path.replace(os.sep, "/")
  if not norm.startswith("configs/") or os.path.exists(path):
    return value
  folder = _project_configs_dir()
  if folder is None:
    return value
  candidate = os.path.join(folder, *norm[len("configs/"):].split("/"))
  return candidate + sep + arg if os.path.isfile(candidate) else value


def _config_file_flags() -> set:
  return {name for name in flags.FLAGS
          if isinstance(flags.FLAGS[name].parser, ml_config_flags.ConfigFileFlagParser)}


def _with_resolved_configs(argv) -> list:
  """argv with each config-file flag's `configs/...` path resolved (`_resolve_config_path`)."""
  names, out, i = _config_file_flags(), list(argv[:1]), 1
  while i < len(argv):
    arg = argv[i]
    m = re.match(r"(--?)([A-Za-z_]\w*)(=(.*))?$", arg)
    if m and m.group(2) in names:
      if m.group(3) is not None:
        arg = f"{m.group(1)}{m.group(2)}={_resolve_config_path(m.group(4))}"
      elif i + 1 < len(argv):  # `--config PATH`
        out.append(arg)
        i += 1
        arg = _resolve_config_path(argv[i])
    out.append(arg)
    i += 1
  return out


def _fail(message: str):
  print(f"error: {' '.join(message.split())}", file=sys.stderr, flush=True)
  sys.exit(2)


def _last_line(text: str) -> str:
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  return lines[-1] if lines else ""


def _one_line(text: str) -> str:
  """A multi-line message (e.g. a config file's traceback) as its first and last line."""
  lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
  return lines[0] if len(lines) < 2 else f"{lines[0]} {lines[-1]}"


def _config_value(name, argv):
  """The config of config-file flag `name`: its value, or argv's `--name=PATH` loaded
  again (absl sets no value when a later flag fails to parse); None for other flags."""
  flag = flags.FLAGS[name]
  if not isinstance(flag.parser, ml_config_flags.ConfigFileFlagParser):
    return None
  if flag.value is not None:
    return flag.value
  paths = [a.split("=", 1)[1] for a in argv[1:] if a.startswith((f"--{name}=", f"-{name}="))]
  try:
    return flag.parser.parse(paths[-1]) if paths else None
  except Exception:  # pylint: disable=broad-except
    return None


def _unknown_override(argv):
  """`(flag, key)` for the first `--FLAG.a.b=...` of argv whose key path is not in FLAG's
  config, or None."""
  for arg in argv[1:]:
    m = re.match(r"--?([A-Za-z_]\w*)\.([\w.]+)(=|$)", arg)
    if not m or m.group(1) not in flags.FLAGS:
      continue
    node = _config_value(m.group(1), argv)
    if node is None or type(node).__name__ == "_ErrorConfig":
      continue
    for part in m.group(2).split("."):
      try:
        node = node[part]
      except Exception:  # pylint: disable=broad-except
        return f"--{m.group(1)}.{m.group(2)}", part
  return None


def _check_config_files(argv):
  """ml_collections reports a config file that failed to load when it is first used (or
  as a bare OSError from an override); report it now, as one line."""
  for name in flags.FLAGS:
    value = _config_value(name, argv)
    if type(value).__name__ == "_ErrorConfig":  # its deferred load error
      try:
        value.to_dict()
      except OSError as e:
        _fail(f"--{name}: cannot load the config file ({_last_line(e)}); pass a file from "
              "configs/, e.g. --config=configs/jointrd.py (or configs/jointrd.py:smoke).")


def _type_hint(message: str, argv) -> str:
  """For `flag --config.a.b=V: ...` (a value of the wrong type): what the key takes."""
  m = re.match(r"flag --([A-Za-z_]\w*)\.([\w.]+)=", message)
  if not m or m.group(1) not in flags.FLAGS:
    return ""
  node = _config_value(m.group(1), argv)
  try:
    for part in m.group(2).split("."):
      node = node[part]
  except Exception:  # pylint: disable=broad-except
    return ""
  if node is None or isinstance(node, dict) or hasattr(node, "keys"):
    return ""
  kind = type(node).__name__
  return (f"; {m.group(1)}.{m.group(2)} takes {'an' if kind[0] in 'aeiou' else 'a'} {kind}, "
          f"e.g. --{m.group(1)}.{m.group(2)}={node!r}")


def _parse_flags(argv):
  argv = ["--help" if a == "-h" else a for a in _with_resolved_configs(argv)]  # as argparse
  try:
    parsed = flags.FLAGS(argv)
  except SystemExit as e:  # absl's --help & co. exit 1 after printing the help
    if e.code == 1 and _asks_for_help(argv):
      sys.exit(0)
    raise
  except flags.Error as e:
    m = re.match(r"(flag --[\w.]+=\S*): \('Non-boolean argument to boolean flag', .*\)", str(e))
    if m:
      _fail(f"{m.group(1)}: not a boolean; {cli.BOOL_HINT}.")
    _fail(f"{_one_line(e)}{_type_hint(str(e), argv)}")
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    # ml_collections raises these (not flags.Error) for an override of an unknown key, or
    # of any key when the config file did not load.
    _check_config_files(argv)
    unknown = _unknown_override(argv)
    if unknown:
      flag, part = unknown
      _fail(f"{flag}: the config has no key {part!r}; see configs/default.py for the keys "
            "(--config.KEY=VALUE).")
    _fail(f"invalid flags ({type(e).__name__}: {_last_line(e)}); "
          "see --helpfull and configs/default.py.")
  _check_config_files(argv)
  return parsed
