"""The smoke runs' metrics, recorded: proof that a refactor changes no number, bitwise.

`tests/fixtures/smoke_metrics.json` holds, per run name, every record of the run's
`metrics.jsonl` except the timing (`images_per_s`), as the smoke tests of test_train.py
(every CIFAR method) and test_imagenet.py (ImageNet configs) produce them. Those tests call
`check(name, workdir)`, which compares exactly (floats round-trip through JSON exactly).

Bitwise equality holds for the same programs on the same machine and software: the file
holds one recording per machine fingerprint (jax/jaxlib versions, CPU and its widest vector
ISA, XLA flags); on a machine with none the check is skipped with a line saying so. To
record this machine's (after a deliberate change of numbers, on a new jax, or on a new
machine; the recordings of other machines are kept; record from the commit whose numbers
are the reference, then check the change against it):

    RECORD_SMOKE_FIXTURE=1 python -m pytest -q tests/test_train.py tests/test_imagenet.py \
        -k 'every_method_on_synthetic or generated_jpegs or bitwise_as_recorded'
"""
import json
import os
import pathlib
import platform

import importlib.metadata

import jax
import pytest

from jointrd_jax.training import reporting

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "smoke_metrics.json"
RECORD = bool(os.environ.get("RECORD_SMOKE_FIXTURE"))


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
  return {"jax": jax.__version__, "jaxlib": importlib.metadata.version("jaxlib"), "cpu": _cpu(),
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


def check(name: str, workdir) -> None:
  """Records the run's metrics under `name` in this machine's recording
  (RECORD_SMOKE_FIXTURE=1; the other machines' recordings are kept), else compares them
  with this machine's recorded ones, bitwise."""
  got = records(workdir)
  recordings = _load()
  here = next((r for r in recordings if r["fingerprint"] == fingerprint()), None)
  if RECORD:
    if here is None:
      here = {"fingerprint": fingerprint(), "runs": {}}
      recordings.append(here)
    here["runs"][name] = got
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps({"recordings": recordings}, indent=1, sort_keys=True) + "\n")
    return
  if here is None:
    pytest.skip(f"{FIXTURE.name} holds no recording made on {fingerprint()} (it has "
                f"{[r['fingerprint'] for r in recordings]}): bitwise equality holds on the "
                "same machine and software only (see tests/smoke_fixture.py to record it here)")
  if name not in here["runs"]:
    pytest.fail(f"no recorded metrics for {name} in {FIXTURE} for this machine; record them "
                "(see tests/smoke_fixture.py)")
  want = here["runs"][name]
  assert len(got) == len(want), (len(got), len(want))
  for i, (g, w) in enumerate(zip(got, want)):
    assert g == w, f"{name}: record {i} differs: {g} != {w}"
