"""The documentation (README.md and the site built from docs/ by mkdocs.yml): the site builds
with `mkdocs build --strict` (a broken link or anchor fails), and every ```bash and ```python
block of README.md and docs/*.md is executed, or checked, as follows.

- ```python: run as written, each in a fresh Python process whose working directory is a
  temporary folder holding `export/jointrd` (an export of a tiny random network, made by
  the documented export command itself, below); a snippet defines its own inputs.
- ```bash: joined at backslash line ends, one command per line, `#` comments dropped; each
  command goes by the first of `RULES` whose pattern it matches:
  - `run`: executed as written by bash in that folder (which also holds `runs/jointrd`,
    a tiny run, and the images `photo.jpg`, `cat.png`): the export of `runs/jointrd`,
    `predict` on it, `sha256sum -c` of its package;
  - `check`: the `experiments.*` commands that train for hours, need data or accelerators
    this machine lacks, or are run by other tests already (the smoke runs: test_train.py,
    test_imagenet.py, test_table12.py): their command line is parsed and validated as the
    tool does before any work (tests/doc_commands.py: the absl tools' flags, config file,
    overrides and config checks; the argparse tools' parsers), and must pass;
  - `external`: other programs (pip, tfds, gcloud, git, hf) that need a network or a cloud:
    not run; what can be checked here is (pip's extras exist, the dataset is one the
    project reads, the `experiments.*` command a gcloud line runs passes `check`);
  - `suite`: `python -m pytest`, this very suite (also recording its smoke fixture).
  A command no rule matches fails `test_every_documented_command_has_a_rule`: a new
  documented command needs a rule here. Blocks without a language (or ```text) are sample
  output and are not executed; any other language fails.
"""
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from export_helpers import make_run

REPO = pathlib.Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md"))
CHECKER = REPO / "tests" / "doc_commands.py"
OUTPUT_LANGS = ("", "text")
EXPERIMENT = r"python -m experiments\.(\w+)"
# (pattern matched at the start of a command, mode); the first match wins.
RULES = [
    (r"python -m experiments\.export --workdir=runs/jointrd --out=export/jointrd$", "run"),
    (r"python -m experiments\.predict --model=export/jointrd [\w. ]+$", "run"),
    (r"cd export/jointrd && sha256sum -c SHA256SUMS$", "run"),
    (EXPERIMENT, "check"),
    (r"pip install ", "external"),
    (r"tfds build ", "external"),
    (r"gcloud compute tpus tpu-vm ssh ", "external"),
    (r"hf upload ", "external"),
    (r"python -m pytest", "suite"),
    (r"RECORD_SMOKE_FIXTURE=1 python -m pytest", "suite"),  # tests/test_smoke_fixture.py
]
ABSL_TOOLS = ("main", "table12", "study")
TFDS_NAMES = ("cifar10", "cifar100", "imagenet2012")


def blocks():
  """(file, line, language, text) of every fenced block of the documentation."""
  found = []
  for path in DOC_FILES:
    lines = path.read_text().split("\n")
    i = 0
    while i < len(lines):
      m = re.match(r"\s*```(\w*)\s*$", lines[i])
      if not m:
        i += 1
        continue
      end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
      indent = len(lines[i]) - len(lines[i].lstrip())
      text = "\n".join(line[indent:] for line in lines[i + 1:end])
      found.append((path.relative_to(REPO), i + 1, m.group(1), text))
      i = end + 1
  return found


def commands(text: str) -> list:
  """The commands of a bash block: backslash-continued lines joined, comments dropped."""
  joined = re.sub(r"\\\n\s*", " ", text)
  out = []
  for line in joined.split("\n"):
    tokens = shlex.split(line, comments=True)
    if tokens:
      out.append(" ".join(shlex.quote(t) if t != "&&" else t for t in tokens))
  return out


def rule(command: str):
  return next((mode for pattern, mode in RULES if re.match(pattern, command)), None)


def documented():
  """{mode: [(where, command)]} over every bash block; mode None: no rule matches."""
  by_mode = {}
  for path, line, lang, text in blocks():
    if lang == "bash":
      for command in commands(text):
        by_mode.setdefault(rule(command), []).append((f"{path}:{line}", command))
  return by_mode


def _test_requirements() -> list:
  """requirements.txt's lines below `# Tests`: what setup.py's `[test]` extra installs."""
  lines = (REPO / "requirements.txt").read_text().split("\n")
  below = lines[lines.index("# Tests") + 1:]
  return [line for line in below if line.split("#", 1)[0].strip()]


def _check_external(command: str) -> list:
  """What can be checked of a command of another program; returns experiments commands to
  check too."""
  tokens = shlex.split(command)
  if tokens[0] == "pip":
    for t in tokens[2:]:
      m = re.fullmatch(r"\.\[(\w+)\]", t)
      assert not m or (m.group(1) == "test" and _test_requirements()), (command, "no extra")
    return []
  if tokens[0] == "tfds":
    assert tokens[2] in TFDS_NAMES, (command, "a dataset the project does not read")
    return []
  if tokens[0] == "gcloud":
    inner = next(t.split("=", 1)[1] for t in tokens if t.startswith("--command="))
    parts = [p.strip() for p in inner.split("&&")]
    for part in parts:
      assert re.match(rf"(git clone|cd|pip install) |{EXPERIMENT}", part), (command, part)
    return [p for p in parts if re.match(EXPERIMENT, p)]
  return []  # hf upload: needs the Hub and a login


def _check_only(cases) -> list:
  """Runs tests/doc_commands.py over `cases` [(tool, argv)]: its verdict per case."""
  groups = {}
  for i, (tool, argv) in enumerate(cases):
    kind = tool if tool in ABSL_TOOLS else "argparse"
    groups.setdefault(kind, []).append((i, argv if kind != "argparse" else [tool] + argv))
  verdicts = [None] * len(cases)
  env = dict(os.environ, PYTHONPATH=str(REPO))
  for kind, items in groups.items():
    proc = subprocess.run([sys.executable, str(CHECKER), kind], cwd=REPO, env=env,
                          input=json.dumps([argv for _, argv in items]),
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for (i, _), verdict in zip(items, json.loads(proc.stdout.strip().splitlines()[-1])):
      verdicts[i] = verdict
  return verdicts


def _as_case(command: str):
  tokens = shlex.split(command)
  return tokens[2].split(".", 1)[1], tokens[3:]


# A command a doc might get wrong, and the check's verdict: proof the check is not a no-op.
MISTAKES = [
    ("python -m experiments.main --config=configs/jointrd.py --workdir=w --config.nmu_epochs=1",
     "no key 'nmu_epochs'"),
    ("python -m experiments.main --config=configs/jointrd.py --workdir=w --config.terms=+dkdd",
     "unknown loss term 'dkdd'"),
    ("python -m experiments.table12 --config=configs/table12.py --workdir=w --methods=jointrdd",
     "unknown method 'jointrdd'"),
    ("python -m experiments.export --workdir=w --out=o --quantise=int8", "--quantise"),
]


def test_site_builds_strictly(tmp_path):
  site = tmp_path / "site"
  proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                         str(site)], cwd=REPO, capture_output=True, text=True, timeout=300,
                        check=False, env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  reference = (site / "reference" / "index.html").read_text()
  for name in ("train_and_evaluate", "make_train_step", "kd_logits", "LoadedModel"):
    assert name in reference  # the API reference is generated from the docstrings
  # A broken anchor in a copy of the docs fails the strict build.
  shutil.copytree(REPO / "docs", tmp_path / "docs")
  config = (REPO / "mkdocs.yml").read_text().replace("paths: [.]", f"paths: [{REPO}]")
  (tmp_path / "mkdocs.yml").write_text(config)
  with open(tmp_path / "docs" / "index.md", "a") as f:
    f.write("\n[broken](speed.md#no-such-section)\n")
  proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                         str(tmp_path / "site2")], cwd=tmp_path, capture_output=True,
                        text=True, timeout=300, check=False,
                        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
  assert proc.returncode != 0 and "no-such-section" in proc.stderr, proc.stderr[-2000:]


def test_readme_is_the_short_front_door():
  text = (REPO / "README.md").read_text()
  assert len(text.splitlines()) < 250
  for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
    assert (REPO / target).exists(), target  # every relative link of the README resolves


def test_every_documented_command_has_a_rule():
  langs = {lang for *_, lang, _ in blocks()}
  assert langs <= {"bash", "python", *OUTPUT_LANGS}, langs
  by_mode = documented()
  assert None not in by_mode, f"no rule in tests/test_docs.py for: {by_mode[None]}"
  assert by_mode.get("run") and by_mode.get("check") and by_mode.get("external")


def test_checked_commands_pass_the_tools_own_checks():
  """Every `check` command (and each experiments command a gcloud line runs) is accepted
  by its tool's command-line parsing and config checks; each of MISTAKES is refused."""
  by_mode = documented()
  cases = [(where, command) for where, command in by_mode["check"]]
  for where, command in by_mode["external"]:
    cases += [(where, inner) for inner in _check_external(command)]
  verdicts = _check_only([_as_case(c) for _, c in cases] + [_as_case(c) for c, _ in MISTAKES])
  failed = [(where, command, v) for (where, command), v in zip(cases, verdicts) if v != "ok"]
  assert not failed, failed
  for (command, expected), verdict in zip(MISTAKES, verdicts[len(cases):]):
    assert verdict.startswith("error: ") and expected in verdict, (command, verdict)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  """The folder the `run` commands and Python snippets run in: a tiny run `runs/jointrd`,
  two images, and `export/jointrd`, made by the first `run` command (the export)."""
  root = tmp_path_factory.mktemp("docs_workspace")
  make_run(root / "runs" / "jointrd")
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for name, colour in (("photo.jpg", (200, 30, 30)), ("cat.png", (20, 20, 220))):
    Image.new("RGB", (40, 30), colour).save(root / name)
  return root


def _bash(command: str, cwd) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO),
             PATH=f"{pathlib.Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
  return subprocess.run(["bash", "-c", command.replace("python ", f"{sys.executable} ", 1)],
                        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                        check=False)


@pytest.mark.slow
def test_run_commands_and_python_snippets_run_as_written(workspace):
  runs = documented()["run"]
  export = [c for _, c in runs if "experiments.export" in c]
  assert export, "the export command the other run commands need is no longer documented"
  for command in export[:1] + [c for _, c in runs if "experiments.export" not in c]:
    proc = _bash(command, workspace)
    assert proc.returncode == 0, (command, proc.stderr[-3000:])
    if "predict" in command:  # each image: its name, then its top 5 classes
      for image in re.findall(r"\S+\.(?:jpg|png)", command):
        assert re.search(rf"^{re.escape(image)}:\n(\s+[\d.]+%\s+\S+.*\n){{5}}", proc.stdout,
                         re.M), proc.stdout
    if "sha256sum" in command:
      assert "FAILED" not in proc.stdout and ": OK" in proc.stdout, proc.stdout
  snippets = [(f"{p}:{line}", text) for p, line, lang, text in blocks() if lang == "python"]
  assert snippets
  for where, text in snippets:
    proc = subprocess.run([sys.executable, "-c", text], cwd=workspace, capture_output=True,
                          text=True, timeout=600, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 0, (where, proc.stderr[-3000:])
