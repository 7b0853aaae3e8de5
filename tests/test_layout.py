"""The code's layout, read from the source (tests/layout_figures.py): no import cycle inside
jointrd_jax; imports at the top of the file, except the listed, commented places; no
module imports another's private name."""
import ast
import linecache
import pathlib
import re

from tests import layout_figures as figures

# A function-level import of the library itself, allowed where importing it at the top
# would load a heavy optional dependency (TensorFlow, PyTorch) or JAX for a light module:
# (file, imported module) -> why. experiments/ defers what would slow `--help` (each
# place says so in its comment).
ALLOWED = {
    ("jointrd_jax/benchmarking/cpu_compare.py", "jointrd_jax.benchmarking"): "torch_nets: PyTorch",
    ("jointrd_jax/benchmarking/deployment.py", "jointrd_jax.datasets"): "streamed: TensorFlow",
    ("jointrd_jax/benchmarking/input_throughput.py", "jointrd_jax.datasets"): "TensorFlow",
    ("jointrd_jax/deploy/__init__.py", "jointrd_jax.deploy.loader"): "`deploy.load` loads JAX",
    # The data sources (datasets/): image_ops and imagenet_tfds import TensorFlow.
    ("jointrd_jax/datasets/imagefolder.py", "jointrd_jax.datasets"): "image_ops: TensorFlow",
    ("jointrd_jax/datasets/imagenet_tfds.py", "jointrd_jax.datasets"): "image_ops: TensorFlow",
    ("jointrd_jax/datasets/streamed.py", "jointrd_jax.datasets"): "image_ops: TensorFlow",
}
DEFERRED_FOR_HELP = ("--help", "after the backends are configured")
# datasets/ is being rebuilt as registered data sources (issue 25, item 1) on another
# branch: its third-party imports move to the top with that merge (then empty this).
PENDING = {"jointrd_jax/datasets/digits.py", "jointrd_jax/datasets/image_ops.py",
           "jointrd_jax/datasets/synthetic_folder.py"}


def _comment(file: str, line: int) -> str:
  """The comment on an import's line, or on the line above it, less pylint's directives."""
  here, above = linecache.getline(file, line), linecache.getline(file, line - 1).strip()
  comment = here[here.index("#"):] if "#" in here else above if above.startswith("#") else ""
  return re.sub(r"#\s*pylint: disable=\S+", "", comment).strip(" #\n")


def test_no_import_cycle_inside_jointrd_jax():
  assert figures.cycles(figures.import_graph()) == []


def test_function_level_imports_of_the_library_are_the_allowed_commented_ones():
  found = figures.function_imports()
  assert found  # the heavy optional dependencies at least
  wrong = []
  for file, line, name in found:
    comment = _comment(str(figures.REPO / file), line)
    if not figures.is_own(name):
      if not comment and file not in PENDING:  # a heavy optional dependency: say so
        wrong.append(f"{file}:{line} {name}: no comment says why it is not at the top")
    elif file.startswith("experiments/"):
      if not any(why in comment for why in DEFERRED_FOR_HELP):
        wrong.append(f"{file}:{line} {name}: move it to the top, or say why not (--help)")
    elif (file, name) not in ALLOWED:
      wrong.append(f"{file}:{line} {name}: move it to the top (or list it in ALLOWED)")
  assert not wrong, "\n".join(wrong)


def test_no_module_imports_a_private_name_of_another():
  private = []
  for path in figures.source_files():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ImportFrom):
        private += [f"{path.relative_to(figures.REPO)}:{node.lineno} {node.module}.{a.name}"
                    for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
  assert not private, private


def test_the_figures_find_cycles_and_resolve_relative_imports():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"f"}, "f": {"e"}, "g": set()}
  assert figures.cycles(graph) == [["a", "b", "c"], ["e", "f"]]
  assert figures.cycles({"a": {"b"}, "b": set()}) == []
  imported = figures._imported  # pylint: disable=protected-access
  node = ast.parse("from ..models import fold").body[0]
  assert imported(node, "jointrd_jax.deploy.export", False) == [
      "jointrd_jax.models", "jointrd_jax.models.fold"]
  node = ast.parse("from . import card").body[0]
  assert imported(node, "jointrd_jax.deploy", True) == ["jointrd_jax.deploy",
                                                        "jointrd_jax.deploy.card"]


def test_no_test_file_imports_another_test_file():
  """Shared test code lives in conftest.py or a helpers module, never in a test file."""
  tests = pathlib.Path(__file__).resolve().parent
  wrong = []
  for path in sorted(tests.glob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      wrong += [f"{path.name}: {n}" for n in names
                if re.fullmatch(r"(tests\.)?test_\w+", n)]
  assert not wrong, wrong
