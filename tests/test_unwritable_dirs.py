"""A directory a command cannot write to (--workdir, --out), refused in one line before any
work: also in /proc and /sys, where root's permission bits say "writable" but nothing can
be created (tests/test_bad_input.py runs experiments.main on them)."""
import os

import pytest

from experiments import convert_torch, export as export_cli
from jointrd_jax.training import workdir
from jointrd_jax.deploy import export

UNWRITABLE = {"/proc/x": "cannot create a directory in /proc: ",
              "/proc/x/y": "cannot create a directory in /proc: ",
              "/sys/x": "cannot create a directory in /sys: "}


def test_writable_problem_names_the_directory_that_refuses(tmp_path):
  for path, start in UNWRITABLE.items():
    assert workdir.writable_problem(path).startswith(start), path
  (tmp_path / "file").write_text("")
  assert workdir.writable_problem(str(tmp_path / "file" / "run")) == (
      f"{tmp_path / 'file'} is not a directory")
  # Writable, new or existing: nothing is left behind (the probes are removed).
  assert workdir.writable_problem(str(tmp_path / "new" / "run")) is None
  assert workdir.writable_problem(str(tmp_path)) is None
  assert sorted(os.listdir(tmp_path)) == ["file"]


def test_read_only_directory(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes into a read-only (0o555) directory")
  (tmp_path / "ro").mkdir(mode=0o555)
  assert workdir.writable_problem(str(tmp_path / "ro" / "run")).startswith(
      f"cannot create a directory in {tmp_path / 'ro'}: Permission denied")


def test_export_refuses_an_unwritable_out_before_loading_the_run(tmp_path, monkeypatch,
                                                                  capsys):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / workdir.CONFIG_FILE).write_text("{}")

  def never(*args, **kwargs):
    raise AssertionError("the run's network was loaded")

  monkeypatch.setattr(export.checkpoints, "load_network", never)
  for out, start in UNWRITABLE.items():
    assert export_cli.main([f"--workdir={tmp_path / 'run'}", f"--out={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write to --out={out} ({start}"), err
    assert err.count("\n") == 1
    assert "choose a writable directory" in err


def test_convert_torch_refuses_an_unwritable_out_before_reading_the_file(tmp_path, capsys):
  for out, start in UNWRITABLE.items():
    # No such checkpoint either: --out is refused first, so nothing is read.
    args = [f"--checkpoint={tmp_path / 'no.pt'}", f"--out={out}", "--arch=resnet10"]
    assert convert_torch.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write to --out={out} ({start}"), err
    assert err.count("\n") == 1 and "choose a writable directory" in err
