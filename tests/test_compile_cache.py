"""The persistent XLA compilation cache works with what requirements.txt installs.

JAX writes its cache only when its own optional dependencies are present (without
`filelock` it writes nothing and prints a UserWarning on every run): a run must leave
compiled programs in `--compilation_cache_dir`, and a second run must read them back.
"""
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def _run(workdir, cache_dir):
  env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
  # JAX keeps programs that took at least this long to compile (default 1 s): 0 keeps the
  # smoke network's every program, so the check does not depend on the machine's speed.
  env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  return subprocess.run(
      [sys.executable, "-m", "experiments.main", "--config=configs/resnet.py:smoke",
       f"--workdir={workdir}", "--config.num_epochs=1", f"--compilation_cache_dir={cache_dir}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_a_run_fills_the_compilation_cache_and_a_rerun_reads_it(tmp_path):
  cache = tmp_path / "xla"
  first = _run(tmp_path / "a", cache)
  assert first.returncode == 0, first.stderr[-2000:]
  entries = {p.name for p in cache.iterdir()} if cache.exists() else set()
  programs = {n for n in entries if not n.endswith(("-atime", ".lock"))}
  assert len(programs) >= 3, sorted(entries)  # train step, evaluation, initialisation
  assert "Warning" not in first.stderr and "filelock" not in first.stderr, first.stderr
  # Another workdir, the same shapes: every program comes from the cache, none is added.
  second = _run(tmp_path / "b", cache)
  assert second.returncode == 0, second.stderr[-2000:]
  again = {p.name for p in cache.iterdir() if not p.name.endswith(("-atime", ".lock"))}
  assert again == programs
