"""Package metadata lives in setup.cfg; the dependencies in requirements.txt, read here:
`pip install .` (or `-e .`) installs every requirement above its `# Tests` line; those
below it (test-only) come with the `test` extra (`pip install -e ".[test]"`) or with
`pip install -r requirements.txt`."""
import pathlib

import setuptools

TESTS_HEADER = "# Tests"


def requirements() -> tuple:
  """(runtime requirements, test-only requirements) of requirements.txt."""
  runtime, test = [], []
  section = runtime
  for line in (pathlib.Path(__file__).parent / "requirements.txt").read_text().splitlines():
    if line.strip() == TESTS_HEADER:
      section = test
    req = line.split("#", 1)[0].strip()
    if req:
      section.append(req)
  return runtime, test


if __name__ == "__main__":  # as pip runs it
  RUNTIME, TEST = requirements()
  setuptools.setup(install_requires=RUNTIME, extras_require={"test": TEST})
