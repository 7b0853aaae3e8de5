"""Test-session setup shared by all tests.

- 8 fake CPU devices, so sharding is exercised on one machine. Tests that want one
  device use `jax.devices('cpu')[:1]`.
- `--xla_backend_optimization_level=0`: XLA:CPU skips LLVM's optimisation passes, which
  more than halves compile time (the suite is dominated by compiling small networks);
  the computation is the same.
XLA reads these flags when jax initialises its backends, so they are set here, before
any test module imports jax; subprocesses started by tests inherit them.
"""
import os

_flags = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in _flags:
  _flags += " --xla_force_host_platform_device_count=8"
if "--xla_backend_optimization_level" not in _flags:
  _flags += " --xla_backend_optimization_level=0"
os.environ["XLA_FLAGS"] = _flags.strip()

# One compilation cache for the whole test session (its subprocesses included): the
# same small programs are compiled by many tests. A fresh directory each session, so
# the suite's time on CI is what a clean clone costs.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="jointrd_jax_test_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

# Generated data (the ImageNet smoke configs' image folders) goes to the project's cache
# (jointrd_jax/caches.py): a fresh one per test session, never the user's.
if "JOINTRD_JAX_CACHE_DIR" not in os.environ:
  _generated = tempfile.mkdtemp(prefix="jointrd_jax_test_generated_")
  atexit.register(shutil.rmtree, _generated, ignore_errors=True)
  os.environ["JOINTRD_JAX_CACHE_DIR"] = _generated

# Hypothesis: random examples locally (a new seed each run, so local runs explore), a
# derandomized profile for CI (`.ci/run` sets HYPOTHESIS_PROFILE=ci; CI=true does too): a CI
# run can never fail by the luck of the draw, and a failure there reproduces exactly.
from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI") else "dev"))

import pytest  # noqa: E402

import smoke_fixture  # noqa: E402  (after the XLA flags above: it imports jax)

# Recording the smoke fixture (RECORD_SMOKE_FIXTURE=1): one staging directory for the
# session, made here, before pytest-xdist starts its workers (they inherit it); the
# controller writes the fixture at the end, only when every run was recorded.
if smoke_fixture.RECORD:
  smoke_fixture.start_recording()


def pytest_sessionfinish(session, exitstatus):
  del exitstatus
  if smoke_fixture.RECORD and not hasattr(session.config, "workerinput"):
    line = smoke_fixture.finish_recording()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    reporter.write_line("")
    reporter.write_line(line)
    if line.startswith("error: "):
      session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def mock_tfds(monkeypatch):
  """`tfds.testing.mock_data`, for `with mock_tfds(num_examples=N): ...`. Under it TFDS's
  download step is a no-op, so the probe of the real download host (which fails offline,
  as it should) is bypassed too."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from jointrd_jax.datasets import arrays  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(arrays, "_reachable", lambda host, timeout=None: True)
  return tfds.testing.mock_data


@pytest.fixture(scope="module")
def one_device():
  """The trainer on ONE of the 8 fake devices for a whole test module: end-to-end runs cost
  ~40 % less than sharded over 8 CPU "devices" (which share the machine's 2 cores anyway).
  The sharded path has tests of its own (test_train's 8-vs-1 comparison, the reliability
  and multi-process tests)."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jointrd_jax import sharding  # pylint: disable=g-import-not-at-top
  with pytest.MonkeyPatch.context() as m:
    m.setattr(sharding, "make_mesh", lambda devices=None: sharding.Mesh(
        np.asarray(jax.devices()[:1]), (sharding.DATA_AXIS,)))
    yield
