"""The code layout's figures, read from the source (no import runs): function-level imports
(all, and those of the project itself), files over 400 lines, functions over 60 lines, and
the import cycles among jointrd_jax's modules.

  python -m tests.layout_figures          # the figures for jointrd_jax/ and experiments/

tests/test_layout.py holds the layout to these figures.
"""
import ast
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("jointrd_jax", "experiments")
OWN = ("jointrd_jax", "experiments", "configs")  # what counts as the project itself
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def source_files(packages=PACKAGES) -> list:
  return sorted(p for name in packages for p in (REPO / name).rglob("*.py"))


def module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(REPO).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _imported(node, module: str, is_package: bool) -> list:
  """The absolute names an import statement names (`from a import b`: `a` and `a.b`)."""
  if isinstance(node, ast.Import):
    return [a.name for a in node.names]
  base = node.module or ""
  if node.level:  # relative: resolved against the importing module's package
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[:len(package) - node.level + 1]
    base = ".".join(package + ([base] if base else []))
  return [base] + [f"{base}.{a.name}" for a in node.names if a.name != "*"]


def _walk_scoped(tree):
  """(node, the function it is in or None) for every node of `tree`."""
  stack = [(tree, None)]
  while stack:
    node, function = stack.pop()
    yield node, function
    inner = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
    stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def function_imports(paths=None) -> list:
  """(file, line, the imported name) of every import inside a function."""
  found = []
  for path in paths or source_files():
    module = module_name(path)
    tree = ast.parse(path.read_text())
    for node, function in _walk_scoped(tree):
      if function is not None and isinstance(node, (ast.Import, ast.ImportFrom)):
        name = _imported(node, module, path.name == "__init__.py")[0]
        found.append((str(path.relative_to(REPO)), node.lineno, name))
  return sorted(found)


def is_own(name: str) -> bool:
  return name.split(".")[0] in OWN


def long_files(paths=None, limit=MAX_FILE_LINES) -> list:
  return [(str(p.relative_to(REPO)), n) for p in paths or source_files()
          if (n := len(p.read_text().splitlines())) > limit]


def long_functions(paths=None, limit=MAX_FUNCTION_LINES) -> list:
  found = []
  for path in paths or source_files():
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > limit:
          found.append((str(path.relative_to(REPO)), node.name, n))
  return found


def import_graph(package="jointrd_jax") -> dict:
  """module -> the modules of `package` it imports (at any depth of the file); importing
  `a.b.c` runs the packages `a.b` and `a` first, so those count as imported too."""
  paths = source_files((package,))
  modules = {module_name(p): p for p in paths}
  graph = {}
  for name, path in modules.items():
    edges = set()
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        for target in _imported(node, name, path.name == "__init__.py"):
          while target and target not in modules:
            target = target.rpartition(".")[0]
          while target:
            if target != name and not name.startswith(target + "."):
              edges.add(target)
            target = target.rpartition(".")[0]
    graph[name] = edges
  return graph


def cycles(graph) -> list:
  """The strongly connected components of more than one module (Tarjan), each sorted."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in graph.get(v, ()):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
  for v in sorted(graph):
    if v not in index:
      visit(v)
  return sorted(found)


def main() -> None:
  imports = function_imports()
  own = [i for i in imports if is_own(i[2])]
  print(f"function-level imports: {len(imports)} ({len(own)} of the project itself)")
  for file, line, name in own:
    print(f"  {file}:{line} {name}")
  files = long_files()
  print(f"files over {MAX_FILE_LINES} lines: {len(files)}")
  for file, n in files:
    print(f"  {file}: {n}")
  functions = long_functions()
  print(f"functions over {MAX_FUNCTION_LINES} lines: {len(functions)}")
  for file, name, n in functions:
    print(f"  {file}:{name}: {n}")
  found = cycles(import_graph())
  print(f"import cycles in jointrd_jax: {len(found)}")
  for component in found:
    print("  " + " <-> ".join(component))


if __name__ == "__main__":
  main()
