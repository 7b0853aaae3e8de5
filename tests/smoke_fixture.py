"""The smoke runs' metrics, recorded: proof that a refactor changes no number, bitwise.

`tests/fixtures/smoke_metrics.json` holds, per run name (`RUNS`: every preset's CIFAR smoke
run, `cifar/<preset>`, and the ImageNet runs `imagenet/<method>`), every record of the run's
`metrics.jsonl` except the timing (`images_per_s`), as the smoke tests produce them
(tests/smoke_runs.py for every preset, tests/test_imagenet.py). Those tests call
`check(name, workdir)`, which compares exactly (floats round-trip through JSON exactly).

Bitwise equality holds for the same programs on the same machine and software: the file
holds one recording per machine fingerprint (jax/jaxlib versions, CPU and its widest vector
ISA, XLA flags). On a machine with none the check is skipped with a line saying so (a new
machine does not fail the suite); on a machine with one, a run it lacks (a new preset)
fails, naming the command that records it.

Recording (`RECORD_COMMAND`; after a deliberate change of numbers, a new preset, a new jax
or on a new machine; record from the commit whose numbers are the reference, then check the
change against it) records EVERY run or nothing: each test stages its run's records
(`check`; in a directory shared by the pytest-xdist workers, `start_recording`), and at the
end of the session `finish_recording` replaces this machine's recording only if every run
of `RUNS` was staged; the other machines' recordings are kept.
"""
import atexit
import importlib.metadata
import json
import os
import pathlib
import platform
import shutil
import tempfile

import pytest

from jointrd_jax import methods
from jointrd_jax.training import reporting

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "smoke_metrics.json"
RECORD = bool(os.environ.get("RECORD_SMOKE_FIXTURE"))
STAGING_ENV = "SMOKE_FIXTURE_STAGING"  # the staging directory of a recording session
# tests/test_imagenet.py's runs: the teacher (CE alone), a frozen teacher's features, the
# hybrid paths (the three kinds of step).
IMAGENET_METHODS = ("plain_dirac", "kd_mse_all_dirac", "jointrd")
RUNS = tuple([f"cifar/{m}" for m in methods.METHODS]
             + [f"imagenet/{m}" for m in ("resnet",) + IMAGENET_METHODS])
RECORD_COMMAND = (
    "RECORD_SMOKE_FIXTURE=1 python -m pytest -q tests/test_train.py tests/test_train_presets.py "
    "tests/test_imagenet.py -k 'every_method_on_synthetic or every_new_preset or "
    "generated_jpegs or bitwise_as_recorded'")


def _cpu() -> str:
  model, isa = platform.processor() or platform.machine(), ""
  try:
    with open("/proc/cpuinfo") as f:
      info = f.read()
  except OSError:
    return model
  for line in info.splitlines():
    if line.startswith("model name"):
      model = line.split(":", 1)[1].strip()
    if line.startswith("flags"):
      flags = set(line.split(":", 1)[1].split())
      isa = next((name for name in ("avx512f", "avx2", "avx", "sse4_2") if name in flags), "")
      break
  return f"{model} {platform.machine()} {isa}".strip()


def fingerprint() -> dict:
  v = importlib.metadata.version
  return {"jax": v("jax"), "jaxlib": v("jaxlib"), "cpu": _cpu(),
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def records(workdir) -> list:
  return [{k: v for k, v in r.items() if k != "images_per_s"}
          for r in reporting.read_metrics(workdir)]


def _load() -> list:
  """The recordings [{"fingerprint": ..., "runs": {name: records}}], one per machine and
  software (the file's first format, one recording at the top level, read as a list of one)."""
  if not FIXTURE.exists():
    return []
  data = json.loads(FIXTURE.read_text())
  return data["recordings"] if "recordings" in data else [data]


def _this_machine(recordings: list):
  return next((r for r in recordings if r["fingerprint"] == fingerprint()), None)


def start_recording() -> None:
  """Under RECORD_SMOKE_FIXTURE: one staging directory for the session (tests/conftest.py
  calls this before pytest-xdist starts its workers, which inherit the environment)."""
  if STAGING_ENV not in os.environ:
    staging = tempfile.mkdtemp(prefix="jointrd_jax_smoke_fixture_")
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    os.environ[STAGING_ENV] = staging


def stage(name: str, run_records: list) -> None:
  """Keeps `run_records` as run `name`'s for `finish_recording`."""
  path = pathlib.Path(os.environ[STAGING_ENV]) / (name.replace("/", "--") + ".json")
  path.write_text(json.dumps(run_records))


def finish_recording() -> str:
  """Writes this machine's recording if every run of `RUNS` was staged, keeping the other
  machines' recordings, and returns the line that says so; else writes nothing and returns
  an `error: ...` line naming the missing runs and `RECORD_COMMAND`."""
  staging = pathlib.Path(os.environ[STAGING_ENV])
  staged = {p.stem.replace("--", "/"): json.loads(p.read_text())
            for p in staging.glob("*.json")}
  missing = [n for n in RUNS if n not in staged]
  if missing:
    return (f"error: {FIXTURE.name} left unchanged: the session recorded {len(staged)} of "
            f"{len(RUNS)} runs (missing {', '.join(missing)}; a run whose test failed is not "
            f"recorded); record every run at once: {RECORD_COMMAND}")
  recordings = [r for r in _load() if r["fingerprint"] != fingerprint()]
  recordings.append({"fingerprint": fingerprint(), "runs": {n: staged[n] for n in RUNS}})
  FIXTURE.parent.mkdir(exist_ok=True)
  FIXTURE.write_text(json.dumps({"recordings": recordings}, indent=1, sort_keys=True) + "\n")
  return (f"{FIXTURE.name}: recorded all {len(RUNS)} runs for {fingerprint()} (kept "
          f"{len(recordings) - 1} other machines' recordings)")


def missing_runs() -> list:
  """The runs of `RUNS` this machine's recording lacks ([] without a recording)."""
  here = _this_machine(_load())
  return [] if here is None else [n for n in RUNS if n not in here["runs"]]


def check(name: str, workdir) -> None:
  """Stages the run's metrics under `name` (RECORD_SMOKE_FIXTURE=1), else compares them
  with this machine's recorded ones, bitwise."""
  got = records(workdir)
  if RECORD:
    stage(name, got)
    return
  recordings = _load()
  here = _this_machine(recordings)
  if here is None:
    pytest.skip(f"{FIXTURE.name} holds no recording made on {fingerprint()} (it has "
                f"{[r['fingerprint'] for r in recordings]}): bitwise equality holds on the "
                f"same machine and software only; to record this machine's: {RECORD_COMMAND}")
  if name not in here["runs"]:
    pytest.fail(f"{FIXTURE.name} has a recording for this machine, but none of {name} (a new "
                f"preset or run?); record every run again: {RECORD_COMMAND}")
  want = here["runs"][name]
  assert len(got) == len(want), (len(got), len(want))
  for i, (g, w) in enumerate(zip(got, want)):
    assert g == w, f"{name}: record {i} differs: {g} != {w}"
