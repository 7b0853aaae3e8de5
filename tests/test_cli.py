"""One behaviour for every `experiments.*` tool (experiments/cli.py, experiments/entry.py):
`--help` exits 0 and shows only the tool's own flags, each default once; booleans take
absl's spellings everywhere; the flag-name scheme and its deprecated spellings; configs/
paths from any directory; generated data only where a log line says; no TensorFlow C++
lines before a corrupt image's one error line."""
import concurrent.futures
import os
import pathlib
import re
import subprocess
import sys

import pytest
from absl import flags

from experiments import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ("main", "table12", "benchmark", "run_efficiency", "data_throughput",
         "inference_benchmark", "export", "predict", "convert_torch", "evaluate")
ARGPARSE_TOOLS = TOOLS[2:]


def _run(args, cwd=REPO, env=None, timeout=120):
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=timeout)


@pytest.fixture(scope="module")
def helps():
  """`python -m experiments.TOOL --help` of every tool, two at a time."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    procs = pool.map(lambda t: _run(["-m", f"experiments.{t}", "--help"]), TOOLS)
    return dict(zip(TOOLS, procs))


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_0_with_only_user_flags_each_default_once(tool, helps):
  proc = helps[tool]
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = proc.stdout
  assert "--" in text and proc.stderr == "", proc.stderr
  # No internal switch (absl shows a boolean as --[no]name) and no deprecated spelling.
  assert not re.search(r"--(\[no\])?_\w", text), text
  for old in ("--epochs", "--batch ", "--batch=", "--images"):
    assert old not in text, (old, text)
  # One default per flag: no "(default: X) (default: Y)", even across a line break.
  assert not re.search(r"\(default[^()]*\)\s*\(default", text), text


# ------------------------------------------------------------------ booleans

ACCEPTED = ("true", "false", "True", "FALSE", "t", "F", "1", "0")
REFUSED = ("yes", "no", "on", "off", "y", "2", "bf16", "")


@pytest.mark.parametrize("spelling", ACCEPTED + REFUSED)
def test_boolean_spellings_are_absls(spelling):
  """cli.parse_bool (every argparse tool) accepts exactly what absl's boolean flags
  (main, table12) accept, with the same value."""
  try:
    want = flags.BooleanParser().parse(spelling)
  except ValueError:
    want = None
  try:
    got = cli.parse_bool(spelling)
  except Exception:  # pylint: disable=broad-except
    got = None
  assert got == want and (want is None) == (spelling in REFUSED)


# (tool, a boolean flag of it, other arguments the parse needs)
BOOLEAN_FLAGS = [("export", "overwrite", ["--workdir=r", "--out=o"]),
                 ("convert_torch", "overwrite", ["--checkpoint=c", "--out=o", "--arch=resnet10"]),
                 ("predict", "json", ["--model=m", "x.jpg"]),
                 ("benchmark", "fold_teacher", []),
                 ("run_efficiency", "overwrite", [])]


@pytest.mark.parametrize("tool, name, rest", BOOLEAN_FLAGS)
def test_argparse_booleans_parse_alike(tool, name, rest, capsys):
  import importlib  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f"experiments.{tool}")
  parse = lambda *a: vars(module.parser().parse_args([*rest, *a]))[name]
  assert parse(f"--{name}") is True and parse(f"--no{name}") is False
  for spelling in ACCEPTED:
    assert parse(f"--{name}={spelling}") is cli.parse_bool(spelling)
  with pytest.raises(SystemExit) as e:
    parse(f"--{name}=yes")
  err = capsys.readouterr().err
  assert e.value.code == 2 and err.count("\n") == 1 and err.startswith(f"error: argument --{name}")
  assert cli.BOOL_HINT in err


def test_absl_tool_refuses_the_same_spellings():
  proc = _run(["-m", "experiments.table12", "--config=configs/table12.py:smoke",
               "--workdir=unused", "--report_only=yes"])
  assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
  assert proc.stderr.startswith("error: flag --report_only=yes: not a boolean")
  assert cli.BOOL_HINT in proc.stderr


# ------------------------------------------------------------------ flag names


def test_deprecated_spellings_still_work_with_one_warning(caplog):
  from experiments import data_throughput, run_efficiency  # pylint: disable=g-import-not-at-top
  args = run_efficiency.parse_args(["--epochs=5"])
  assert args.num_epochs == 5
  args = data_throughput.parser().parse_args(["--batch=8", "--images=64"])
  assert (args.batch_size, args.num_images) == (8, 64)
  notes = [r.getMessage() for r in caplog.records]
  assert notes == ["--epochs is deprecated; write --num_epochs (same meaning).",
                   "--batch is deprecated; write --batch_size (same meaning).",
                   "--images is deprecated; write --num_images (same meaning)."], notes


def test_same_names_for_the_same_thing():
  """Singular for one value, plural for a list, --num_* for counts, --overwrite a boolean."""
  import importlib  # pylint: disable=g-import-not-at-top
  seen = {}
  for tool in ARGPARSE_TOOLS:
    parser = importlib.import_module(f"experiments.{tool}").parser()
    for action in parser._actions:  # pylint: disable=protected-access
      if action.help != "==SUPPRESS==":
        seen.setdefault(tool, set()).update(o for o in action.option_strings if o.startswith("--"))
  every = set().union(*seen.values())
  for old in ("--epochs", "--batch", "--images", "--batch_size_list", "--method_list"):
    assert old not in every, old
  assert "--num_epochs" in seen["run_efficiency"] and "--batch_size" in seen["data_throughput"]
  assert "--methods" in seen["benchmark"] and "--method" in seen["run_efficiency"]
  for tool in ARGPARSE_TOOLS:  # --overwrite, where it exists, is a boolean flag
    parser = importlib.import_module(f"experiments.{tool}").parser()
    if "--overwrite" in seen[tool]:
      assert "overwrite" in parser._booleans, tool  # pylint: disable=protected-access
  assert {t for t in ARGPARSE_TOOLS if "--overwrite" in seen[t]} == {
      "run_efficiency", "export", "convert_torch", "inference_benchmark", "evaluate"}


# ------------------------------------------------------------------ configs/ from anywhere


def test_config_path_resolves_from_another_directory(tmp_path):
  """`--config=configs/X.py` from a directory that has no configs/: the project's file (the
  run then fails in the trainer's own validation of a value, i.e. the file loaded)."""
  env = dict(os.environ, PYTHONPATH=str(REPO))
  proc = _run(["-m", "experiments.main", "--config=configs/resnet.py:smoke",
               "--config.num_epochs=0", f"--workdir={tmp_path / 'run'}"], cwd=tmp_path, env=env)
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.splitlines()[-1].startswith("error: config.num_epochs=0 must be positive")
  proc = _run(["-m", "experiments.main", "--config=configs/nope.py",
               f"--workdir={tmp_path / 'run'}"], cwd=tmp_path, env=env)
  assert proc.returncode == 2 and "cannot load the config file" in proc.stderr
  assert list(tmp_path.iterdir()) == []


def test_config_path_resolution_rules(tmp_path, monkeypatch):
  from experiments import entry  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(tmp_path)
  resolve = entry._resolve_config_path  # pylint: disable=protected-access
  assert resolve("configs/jointrd.py:smoke") == f"{REPO / 'configs' / 'jointrd.py'}:smoke"
  assert resolve("configs/imagenet/resnet.py") == str(REPO / "configs" / "imagenet" / "resnet.py")
  for unchanged in ("configs/nope.py", "elsewhere/jointrd.py", "/abs/configs/jointrd.py"):
    assert resolve(unchanged) == unchanged
  (tmp_path / "configs").mkdir()
  (tmp_path / "configs" / "jointrd.py").write_text("")
  assert resolve("configs/jointrd.py") == "configs/jointrd.py"  # the cwd's own file first
  # (as when experiments.main has defined its --config; not imported here: table12 defines one too)
  monkeypatch.setattr(entry, "_config_file_flags", lambda: {"config"})
  argv = ["main", "--config", "configs/resnet.py:smoke", "--workdir=configs/jointrd.py"]
  assert entry._with_resolved_configs(argv) == [  # pylint: disable=protected-access
      "main", "--config", f"{REPO / 'configs' / 'resnet.py'}:smoke", "--workdir=configs/jointrd.py"]


# ------------------------------------------------------------------ what tools leave behind


def test_data_throughput_keeps_generated_images_only_in_the_cache_it_names(tmp_path,
                                                                          monkeypatch):
  """A tiny `--pipeline=imagenet` run: the generated JPEGs go to
  $XDG_CACHE_HOME/jointrd_jax/generated/, named in one log line; nothing in the temp
  directory, the working directory or elsewhere; a second run reuses them."""
  cache, tmp, cwd = tmp_path / "cache", tmp_path / "tmp", tmp_path / "cwd"
  for d in (tmp, cwd):
    d.mkdir()
  monkeypatch.delenv("JOINTRD_JAX_CACHE_DIR", raising=False)  # the test session's cache
  env = dict(os.environ, XDG_CACHE_HOME=str(cache), TMPDIR=str(tmp), PYTHONPATH=str(REPO),
             MPLCONFIGDIR=str(tmp_path / "mpl"))
  proc = _run(["-m", "experiments.data_throughput", "--pipeline=imagenet", "--num_images=8",
               "--image_shape=24,32", "--cores=1", "--batch_size=2", "--repeats=1",
               "--seconds=0.01"], cwd=cwd, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  folder = cache / "jointrd_jax" / "generated" / "throughput_8_24x32"
  (line,) = [x for x in proc.stdout.splitlines() if "generated images" in x]
  m = re.match(rf"\[\d\d:\d\d:\d\d\] generated images: (\d+) files \(\d+\.\d MB\) written "
               rf"to {re.escape(str(folder))}; kept for the next run", line)
  assert m and int(m.group(1)) == sum(len(f) for _, _, f in os.walk(folder)), line
  assert "PIL with draft" in proc.stdout and proc.stderr == "", proc.stderr
  assert sorted(p.name for p in (cache / "jointrd_jax" / "generated").iterdir()) == [folder.name]
  assert list(tmp.iterdir()) == [] and list(cwd.iterdir()) == []
  from jointrd_jax.benchmarking import input_throughput  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
  assert input_throughput.generated_folder(8, 24, 32) == (str(folder), False)  # reused


# ------------------------------------------------------------------ TensorFlow's C++ lines

_CORRUPT_RUN = """
import sys
import jax  # first, as in a training run: JAX sets TF_CPP_MIN_LOG_LEVEL=1
from experiments import entry
from jointrd_jax.datasets import streamed
from jointrd_jax.sharding import make_mesh
data = streamed.load("imagefolder:" + sys.argv[1], mesh=make_mesh(jax.devices()[:1]),
                     image_size=16)
entry.run_guarded(lambda: list(data.train_batches(seed=0, epoch=0, batch_size=4)))
"""


def test_corrupt_image_is_one_error_line_without_tensorflow_cpp_lines(tmp_path):
  """The input pipeline of a training run meets a corrupt JPEG: stderr holds exactly the
  one `error:` line, no `W0000 ... local_rendezvous` (or any I/W/E0000) line of
  TensorFlow's C++ logging before it."""
  from jointrd_jax.datasets.synthetic_folder import make_image_folder  # pylint: disable=g-import-not-at-top
  root = make_image_folder(str(tmp_path / "folder"), 2, 4, 2, seed=0, height_range=(20, 24),
                           width_range=(20, 24))
  bad = sorted((tmp_path / "folder" / "train" / "class0001").iterdir())[1]
  bad.write_bytes(b"<html>404</html>")
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  proc = _run(["-c", _CORRUPT_RUN, root], env=env)
  lines = proc.stderr.strip().splitlines()
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: ") and str(bad) in lines[0]
  assert not re.search(r"^[IWEF]\d{4} ", proc.stderr, re.M)


# ------------------------------------------------------------------ pip install -e .


def test_install_ships_the_commands_configs_and_runtime_requirements():
  """setup.cfg packages jointrd_jax, experiments and configs (every subpackage); setup.py
  installs every requirement of requirements.txt but the test-only ones (the `test` extra)."""
  import configparser  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import setuptools  # pylint: disable=g-import-not-at-top
  cfg = configparser.ConfigParser()
  cfg.read(REPO / "setup.cfg")
  include = [x.strip() for x in cfg["options.packages.find"]["include"].split(",")]
  found = set(setuptools.find_packages(where=str(REPO), include=include))
  on_disk = {str(p.parent.relative_to(REPO)).replace(os.sep, ".")
             for top in ("jointrd_jax", "experiments", "configs")
             for p in (REPO / top).rglob("__init__.py")}
  assert found == on_disk and {"experiments", "configs", "configs.imagenet"} <= found
  spec = importlib.util.spec_from_file_location("project_setup", REPO / "setup.py")
  setup = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(setup)  # not __main__: defines, does not run setup()
  runtime, test = setup.requirements()
  lines = [l.split("#")[0].strip() for l in (REPO / "requirements.txt").read_text().splitlines()]
  assert sorted(runtime + test) == sorted(l for l in lines if l)
  assert {"pytest", "pytest-xdist", "hypothesis"} <= {t.split(">")[0] for t in test}
  assert not any(r.startswith(("pytest", "hypothesis")) for r in runtime)
  assert any(r.startswith("jax") for r in runtime) and any(r.startswith("Pillow") for r in runtime)
