"""The smoke fixture's recorder (tests/smoke_fixture.py): every run or nothing, the other
machines' recordings kept, the command that re-records selects exactly the recording tests,
and this machine's recording (if any) holds every run of today's presets."""
import ast
import json
import pathlib
import shlex

import pytest
from _pytest.mark.expression import Expression

import smoke_fixture

TESTS = pathlib.Path(__file__).resolve().parent
ARCHITECTURE = TESTS.parent / "docs" / "architecture.md"


def test_this_machines_recording_holds_every_run():
  recordings = smoke_fixture._load()  # pylint: disable=protected-access
  here = smoke_fixture._this_machine(recordings)  # pylint: disable=protected-access
  if here is None:
    pytest.skip(f"no recording for {smoke_fixture.fingerprint()}; to record one: "
                f"{smoke_fixture.RECORD_COMMAND}")
  missing = smoke_fixture.missing_runs()
  stale = sorted(set(here["runs"]) - set(smoke_fixture.RUNS))
  assert not missing and not stale, (
      f"this machine's recording lacks {missing} (a new preset?) and holds {stale} (a "
      f"removed one?): record every run again: {smoke_fixture.RECORD_COMMAND}")


def _staged(monkeypatch, tmp_path):
  staging = tmp_path / "staging"
  staging.mkdir()
  monkeypatch.setenv(smoke_fixture.STAGING_ENV, str(staging))
  monkeypatch.setattr(smoke_fixture, "FIXTURE", tmp_path / "fixtures" / "smoke_metrics.json")


def test_recorder_writes_every_run_or_nothing_and_keeps_other_machines(monkeypatch, tmp_path):
  _staged(monkeypatch, tmp_path)
  other = {"fingerprint": {"cpu": "another machine"}, "runs": {"cifar/plain": [{"loss": 1.5}]}}
  old_here = {"fingerprint": smoke_fixture.fingerprint(), "runs": {"cifar/gone": []}}
  smoke_fixture.FIXTURE.parent.mkdir()
  smoke_fixture.FIXTURE.write_text(json.dumps({"recordings": [other, old_here]}))
  before = smoke_fixture.FIXTURE.read_bytes()
  runs = {name: [{"step": i, "loss": i / 3}] for i, name in enumerate(smoke_fixture.RUNS)}
  last = smoke_fixture.RUNS[-1]
  for name in smoke_fixture.RUNS[:-1]:
    smoke_fixture.stage(name, runs[name])
  line = smoke_fixture.finish_recording()
  assert line.startswith("error: ") and "\n" not in line
  assert f"missing {last};" in line and line.endswith(smoke_fixture.RECORD_COMMAND)
  assert smoke_fixture.FIXTURE.read_bytes() == before  # nothing written
  smoke_fixture.stage(last, runs[last])
  assert not smoke_fixture.finish_recording().startswith("error")
  written = json.loads(smoke_fixture.FIXTURE.read_text())["recordings"]
  # The other machine's recording as it was; this machine's replaced by exactly the staged
  # runs (its stale run dropped), floats bitwise through JSON.
  assert written == [other, {"fingerprint": smoke_fixture.fingerprint(), "runs": runs}]
  assert smoke_fixture.missing_runs() == []


def test_a_run_missing_from_this_machines_recording_fails_naming_the_command(
    monkeypatch, tmp_path):
  _staged(monkeypatch, tmp_path)
  monkeypatch.setattr(smoke_fixture, "RECORD", False)
  smoke_fixture.FIXTURE.parent.mkdir()
  smoke_fixture.FIXTURE.write_text(json.dumps({"recordings": [
      {"fingerprint": smoke_fixture.fingerprint(), "runs": {"cifar/plain": []}}]}))
  with pytest.raises(pytest.fail.Exception, match="none of cifar/new_preset") as e:
    smoke_fixture.check("cifar/new_preset", tmp_path)
  assert str(e.value).endswith(smoke_fixture.RECORD_COMMAND)
  assert smoke_fixture.missing_runs() == [n for n in smoke_fixture.RUNS if n != "cifar/plain"]
  # Another machine's recording only: a skip (a new machine does not fail the suite).
  smoke_fixture.FIXTURE.write_text(json.dumps({"recordings": [
      {"fingerprint": {"cpu": "another machine"}, "runs": {}}]}))
  with pytest.raises(pytest.skip.Exception, match="holds no recording made on"):
    smoke_fixture.check("cifar/plain", tmp_path)


def _records_a_run(fn: ast.FunctionDef) -> bool:
  """Whether the test calls `smoke_fixture.check` or `check_smoke_run`."""
  for node in ast.walk(fn):
    f = node.func if isinstance(node, ast.Call) else None
    if isinstance(f, ast.Name) and f.id == "check_smoke_run":
      return True
    if (isinstance(f, ast.Attribute) and f.attr == "check"
        and isinstance(f.value, ast.Name) and f.value.id == "smoke_fixture"):
      return True
  return False


def test_record_command_selects_exactly_the_tests_that_record():
  argv = shlex.split(smoke_fixture.RECORD_COMMAND)
  files = {a for a in argv if a.startswith("tests/")}
  keyword = Expression.compile(argv[argv.index("-k") + 1])
  for path in sorted(set(TESTS.glob("test_*.py")) - {pathlib.Path(__file__).resolve()}):
    tests = [n for n in ast.parse(path.read_text()).body
             if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    recording = {t.name for t in tests if _records_a_run(t)}
    if f"tests/{path.name}" not in files:
      assert not recording, (path.name, recording)
      continue
    # -k matches a substring of the test's name (pytest: case-insensitive).
    selected = {t.name for t in tests if keyword.evaluate(lambda s, n=t.name: s.lower() in n)}
    assert recording and selected == recording, (path.name, selected, recording)


def test_architecture_doc_shows_the_record_command():
  lines = [line.strip() for line in ARCHITECTURE.read_text().split("\n")]
  assert smoke_fixture.RECORD_COMMAND in lines
