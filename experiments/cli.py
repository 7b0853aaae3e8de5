"""What every `experiments.*` tool shares on its command line. `entry.py` does the same for
the two absl tools (`main`, `table12`, which take `--config` files); the others use
argparse through this module.

One behaviour for every tool:

- `--help` exits 0 and lists the tool's own flags, each with its default once; internal
  switches never show.
- A mistake is ONE line on stderr, `error: ...` naming the flag and the fix, exit status 2,
  before any work (nothing written, nothing compiled).
- Log lines in one format: `[hh:mm:ss] message` on stdout (progress), `[hh:mm:ss]
  warning: message` on stderr (ours, the libraries' and Python's warnings alike):
  `setup_logging()` here, `entry.setup()` under absl.

Flag names, the same for the same thing in every tool:

| what | name | e.g. |
|---|---|---|
| one value | singular; a config key's name where one exists | `--method`, `--arch`, `--width`, `--batch_size`, `--num_epochs` |
| a comma-separated list of values | plural | `--methods`, `--batch_sizes`, `--seeds`, `--cores` |
| a count | `--num_<things>` | `--num_epochs`, `--num_classes`, `--num_images` |
| the directory a run lives in / a new output directory | `--workdir` / `--out` | |
| replace what an output directory holds | `--overwrite` (a boolean) | |
| a boolean | `--flag`, `--noflag`, `--flag=B` | B: true/false, 1/0, t/f, any case (absl's spellings); anything else is refused |

`--shortcuts` (a shortcut policy; `inference_benchmark` takes several) keeps the config
key's name in both forms. Old spellings still work, with one warning line each:
`run_efficiency --epochs` (now `--num_epochs`), `data_throughput --batch` (now
`--batch_size`) and `--images` (now `--num_images`).
"""
import argparse
import contextlib
import shutil
import sys
import tempfile

from absl import logging

from jointrd_jax.errors import UserError

BOOL_TRUE = ("true", "t", "1")
BOOL_FALSE = ("false", "f", "0")
BOOL_HINT = "write true or false (or 1/0, t/f; any case)"


def parse_bool(text) -> bool:
  """absl's boolean spellings: true/false, t/f, 1/0, in any case; anything else is refused
  (argparse.ArgumentTypeError, which argparse reports naming the flag)."""
  s = str(text).strip().lower()
  if s in BOOL_TRUE:
    return True
  if s in BOOL_FALSE:
    return False
  raise argparse.ArgumentTypeError(f"not a boolean: {text!r}; {BOOL_HINT}")


def parse_bool_or_auto(text):
  """`auto` -> None, else `parse_bool`."""
  if str(text).strip().lower() == "auto":
    return None
  try:
    return parse_bool(text)
  except argparse.ArgumentTypeError:
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither auto nor a boolean; write auto, true or false (or 1/0, t/f; "
        "any case)") from None


def csv(text: str) -> list:
  """A comma-separated list, blanks dropped."""
  return [x.strip() for x in str(text).split(",") if x.strip()]


def int_csv(text: str) -> list:
  try:
    return [int(x) for x in csv(text)]
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r}: write integers separated by commas, e.g. "
                                     "128,512") from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Each flag's default once: appended as `(default: D)` unless the help already says it
  (`(default...` in its own words) or the flag has no default to show."""

  def _get_help_string(self, action):
    text = action.help or ""
    if "(default" in text or action.default in (None, argparse.SUPPRESS):
      return text
    return super()._get_help_string(action)


class OneLineErrorParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors are one line: `error: ...`, exit status 2; its
  boolean flags (`add_bool`) take `--flag=B` too."""

  def parse_known_args(self, args=None, namespace=None):
    args = sys.argv[1:] if args is None else list(args)
    booleans = getattr(self, "_booleans", ())
    out = []
    for arg in args:
      name, eq, value = arg.partition("=")
      if eq and name.startswith("--") and name[2:] in booleans:
        try:
          arg = name if parse_bool(value) else f"--no{name[2:]}"
        except argparse.ArgumentTypeError as e:
          self.error(f"argument {name}: {e}")
      out.append(arg)
    return super().parse_known_args(out, namespace)

  def error(self, message):
    print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
    sys.exit(2)


class ArgumentParser(OneLineErrorParser):
  """One-line errors, and a help that shows each flag's default once. `doc`: the tool's
  docstring; its first line is the help's description."""

  def __init__(self, prog: str, doc: str, **kw):
    super().__init__(prog=prog, description=doc.strip().split("\n")[0],
                     formatter_class=HelpFormatter, **kw)


def add_bool(parser: OneLineErrorParser, name: str, default: bool, help: str):  # pylint: disable=redefined-builtin
  """A boolean flag as absl's: `--name` (true), `--noname` (false), `--name=B` (B: true/false,
  t/f, 1/0, any case). Like absl's, it never takes the next argument as its value."""
  parser._booleans = getattr(parser, "_booleans", set()) | {name}  # pylint: disable=protected-access
  parser.add_argument(f"--{name}", action="store_true", default=default, help=help)
  parser.add_argument(f"--no{name}", dest=name, action="store_false", help=argparse.SUPPRESS)


class _Deprecated(argparse.Action):
  """An old spelling of a flag: stores into the new flag's dest, with one warning line."""

  def __init__(self, option_strings, dest, new: str = "", convert=str, **kw):
    super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)
    self.new, self.convert = new, convert

  def __call__(self, parser, namespace, values, option_string=None):
    try:
      value = self.convert(values)
    except (ValueError, argparse.ArgumentTypeError) as e:
      parser.error(f"argument {option_string}: {e}")
    warn(f"{option_string} is deprecated; write {self.new} (same meaning).")
    setattr(namespace, self.dest, value)


def add_deprecated(parser, old: str, new: str, dest: str, convert=str):
  """`--old=V` accepted as `--new=V` (stored in `dest`), hidden from `--help`."""
  parser.add_argument(old, dest=dest, action=_Deprecated, new=new, convert=convert)


def setup_logging() -> None:
  """The one log format for a script outside absl's `app.run`: absl's (and every library's
  Python) records and Python warnings as `[hh:mm:ss] warning: ...` on stderr; absl's INFO
  records (e.g. JAX's backend probing) hidden."""
  from jointrd_jax.training import reporting  # deferred: loads JAX, --help stays fast
  reporting.use_one_log_format()
  logging.set_verbosity(logging.WARNING)


def warn(message: str) -> None:
  """One warning line in the one format."""
  setup_logging()
  logging.warning("%s", message)


def fail(message: str, code: int = 2):
  """The one-line error: `error: message` on stderr, then exit `code`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  sys.exit(code)


def guarded(fn, *args, **kw):
  """`fn(*args, **kw)`, a `UserError` becoming the one-line error (exit status 2)."""
  try:
    return fn(*args, **kw)
  except UserError as e:
    fail(str(e))


@contextlib.contextmanager
def private_tempdir(tool: str):
  """Python's temporary files of this process, the libraries' included, in a private
  directory removed at the end: TFDS leaves an empty `tmp*tfds` directory in the system
  temp directory each time it looks up a dataset that is not prepared."""
  saved = tempfile.tempdir
  path = tempfile.mkdtemp(prefix=f"jointrd_{tool}_")
  tempfile.tempdir = path
  try:
    yield path
  finally:
    tempfile.tempdir = saved
    shutil.rmtree(path, ignore_errors=True)
