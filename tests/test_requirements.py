"""requirements.txt alone is a complete install: every third-party module the project
imports (library, tools, configs, tests) comes from a distribution it names.

CI installs optional extras (PyTorch) after the suite's main run, and other packages may
be on a machine already; this test makes sure none of them hides a missing requirement.
"""
import ast
import importlib.metadata
import pathlib
import re
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
# The project's own packages, and test modules that import each other.
PROJECT = {"jointrd_jax", "experiments", "configs", "tests"} | {
    p.stem for p in (REPO / "tests").glob("*.py")}
# Imported only where they are optional (pytest.importorskip, or a one-line error naming
# the package to install), and documented as optional in the README.
OPTIONAL = {"torch"}


def _normal(name: str) -> str:
  return re.sub(r"[-_.]+", "-", name).lower()


def _requirements() -> set:
  names = set()
  for line in (REPO / "requirements.txt").read_text().splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
      names.add(_normal(re.split(r"[<>=!~\[; ]", line, maxsplit=1)[0]))
  return names


def _imports():
  """{top-level module: first file importing it} over the project's Python files."""
  found = {}
  for folder in ("jointrd_jax", "experiments", "configs", "tests"):
    for path in sorted((REPO / folder).rglob("*.py")):
      for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
          names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
          names = [node.module]
        else:
          continue
        for name in names:
          found.setdefault(name.split(".")[0], path.relative_to(REPO))
  return found


def test_every_imported_module_comes_from_requirements_txt():
  required = _requirements()
  providers = importlib.metadata.packages_distributions()
  missing = []
  for module, where in sorted(_imports().items()):
    if module in sys.stdlib_module_names or module in PROJECT or module in OPTIONAL:
      continue
    dists = {_normal(d) for d in providers.get(module, [])}
    if not dists & required:
      missing.append(f"{module} ({where}; from {sorted(dists) or 'no installed package'})")
  assert not missing, "imported but not in requirements.txt: " + ", ".join(missing)


def test_ci_runs_every_pytorch_test_file_in_its_pytorch_stage():
  """The suite's first CI run has no PyTorch, so a test file that skips without it
  (`torch = pytest.importorskip(...)`) runs only if .ci/run names it in the PyTorch stage."""
  ci = (REPO / ".ci" / "run").read_text()
  stage = ci[ci.index("pip install -q --disable-pip-version-check torch"):]
  skips = re.compile(r"^\s*torch = pytest\.importorskip\([\"']torch[\"']\)", re.MULTILINE)
  needs_torch = sorted(p.name for p in (REPO / "tests").glob("test_*.py")
                       if skips.search(p.read_text()))
  assert "test_zoo_torch.py" in needs_torch  # the search finds what it should
  missing = [name for name in needs_torch if f"tests/{name}" not in stage]
  assert not missing, f"add to .ci/run's PyTorch stage: {missing}"
