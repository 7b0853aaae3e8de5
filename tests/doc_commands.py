"""The check-only form of documented commands (tests/test_docs.py): for each command, do
what the tool does with its command line before any work, and nothing after.

    python tests/doc_commands.py TOOL < commands.json     # a JSON list of argv lists

TOOL `main`, `table12` or `study` (the absl tools, one per process: both define --config): parse
the flags as the tool does (`entry._parse_flags`: config file, every `--config.KEY=VALUE`
override, booleans), then the config checks the tool runs before its first write
(`run_setup.validate`; a sweep's `planning.plan`, which validates every run's config).
TOOL `argparse`: each argv is `[tool, args...]` of an argparse tool (`export`, `predict`,
...), parsed by that tool's own parser. Prints a JSON list: per command, "ok" or the one
`error: ...` line the tool would have printed.
"""
import contextlib
import importlib
import io
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402  (after the repository root is on the path)

from jointrd_jax.errors import UserError  # noqa: E402


def _guarded(fn) -> str:
  """"ok", or the error line `fn` printed (or raised) instead of running."""
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      fn()
  except SystemExit as e:
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {e.code}"
  except UserError as e:
    return f"error: {e}"
  return "ok"


def _check_absl(tool: str, argv: list) -> str:
  module = importlib.import_module(f"experiments.{tool}")
  from experiments import entry  # pylint: disable=g-import-not-at-top

  def check():
    # ml_collections finds the `--config.KEY=VALUE` overrides in sys.argv, as under `app.run`.
    sys.argv = [f"experiments.{tool}"] + argv
    entry._parse_flags(sys.argv)  # pylint: disable=protected-access
    if tool == "main":
      from jointrd_jax.training import run_setup  # pylint: disable=g-import-not-at-top
      run_setup.validate(flags.FLAGS.config)
    elif tool == "study":  # the cells and each cell's sweep config (not its data: hours away)
      from jointrd_jax.sweep import planning, study  # pylint: disable=g-import-not-at-top
      for cell in study.cells(flags.FLAGS.config):
        planning.check_sweep_config(study.sweep_config(flags.FLAGS.config, cell, "w"))
    else:
      from jointrd_jax.sweep import planning  # pylint: disable=g-import-not-at-top
      module._apply_shorthands(flags.FLAGS.config)  # pylint: disable=protected-access
      planning.plan(flags.FLAGS.config, flags.FLAGS.workdir)

  try:
    return _guarded(check)
  finally:  # the next command starts from a fresh parse: no values, no override flags
    flags.FLAGS.unparse_flags()
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
      delattr(flags.FLAGS, name)


def _check_argparse(argv: list) -> str:
  module = importlib.import_module(f"experiments.{argv[0]}")
  return _guarded(lambda: module.parser().parse_args(argv[1:]))


def main() -> None:
  tool = sys.argv[1]
  commands = json.load(sys.stdin)
  if tool == "argparse":
    results = [_check_argparse(argv) for argv in commands]
  else:
    results = [_check_absl(tool, argv) for argv in commands]
  print(json.dumps(results))


if __name__ == "__main__":
  main()
