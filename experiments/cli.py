"""What the argparse-based tools share: one-line errors (`error: ...`, exit status 2, no
usage dump) and a short `--help` (the first line of the tool's docstring and its flags
with their defaults; the rest of the docstring is for readers of the source)."""
import argparse
import sys


class OneLineErrorParser(argparse.ArgumentParser):
  """`argparse.ArgumentParser` whose errors are one line: `error: ...`, exit status 2."""

  def error(self, message):
    print(f"error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True)
    sys.exit(2)


class ArgumentParser(OneLineErrorParser):
  """One-line errors, and a help that shows each flag's default."""

  def __init__(self, prog: str, doc: str, **kw):
    super().__init__(prog=prog, description=doc.strip().split("\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kw)
