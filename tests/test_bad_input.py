"""Bad input to `python -m experiments.main`: each case exits with status 2 with exactly
one `error: ...` line on stderr that names the fix (no traceback), before anything is
compiled (and, unless the check needs it, before a dataset is loaded), and leaves every
existing file untouched."""
import concurrent.futures
import importlib
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from jointrd_jax import models
from jointrd_jax.training import checkpoints, run_setup, workdir as workdir_lib
import jax_probe  # tests/

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = "configs/plain_dirac.py:smoke"
KD = "configs/kd_logits.py:smoke"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
  """Files the cases point at: teachers that do not fit, bad .npz files, a regular file, a
  workdir holding another config's run. Nothing here is compiled or trained."""
  root = tmp_path_factory.mktemp("inputs")
  # Teachers: the smoke ResNet of another width (i.e. architecture) or class count.
  config = _smoke("resnet")
  for name, width, classes in (("teacher_wide", 32, 10), ("teacher_100", 16, 100)):
    config.model.width = width
    net = run_setup.build_method(config, classes).student
    shapes = jax.eval_shape(lambda n=net: models.init(n, jax.random.key(0), (32, 32, 3)))
    variables = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype), shapes)
    checkpoints.save_network(str(root / name), net, variables, image_shape=(32, 32, 3),
                             config_dict=workdir_lib.config_to_dict(config))
  # .npz files: 4-D uint8 images with integer labels >= 0 is the contract.
  x = np.zeros((16, 8, 8, 3), np.uint8)
  y = np.arange(16) % 4
  good = dict(x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
  np.savez(root / "rank3.npz", **dict(good, x_train=x[..., 0]))
  np.savez(root / "nchw.npz", **dict(good, x_train=x.transpose(0, 3, 1, 2).copy()))
  np.savez(root / "float.npz", **dict(good, x_test=x[:8].astype(np.float32)))
  np.savez(root / "negative.npz", **dict(good, y_train=y - 1))
  np.savez(root / "one_class.npz", **dict(good, y_train=y * 0, y_test=y[:8] * 0))
  np.savez(root / "unseen.npz", **dict(good, y_test=y[:8] + 4))  # test classes 4-7
  (root / "file.txt").write_text("a regular file, not a directory")
  # A workdir holding a run of another config (seed 1): its files must survive.
  other = root / "other_run"
  other.mkdir()
  config = _smoke("plain_dirac")
  config.seed = 1
  workdir_lib.prepare(str(other), config)
  (other / "metrics.jsonl").write_text('{"split": "train", "epoch": 1, "step": 8}\n')
  (other / "checkpoints" / "8").mkdir(parents=True)
  (other / "checkpoints" / "8" / "blob").write_bytes(b"\x00\x01" * 100)
  (root / "tfds").mkdir()  # an empty TFDS data_dir
  return root


def _smoke(method):
  return importlib.import_module(f"configs.{method}").get_config("smoke")


def _snapshot(root):
  return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else None)
          for p in sorted(root.rglob("*"))}


# id: (arguments, {in} = the inputs dir; what the error line says). Without a --workdir
# argument, a case gets a fresh workdir.
CASES = {
    "unknown_method": ([f"--config={SMOKE}", "--config.method=resnet51"],
                       ["unknown method 'resnet51'", "--config.method"]),
    "unknown_term": ([f"--config={SMOKE}", "--config.terms=+dkdd"],
                     ["unknown loss term 'dkdd'", "--config.terms"]),
    "term_weight_not_a_number": ([f"--config={KD}", "--config.terms=kd:half"],
                                 ["the weight 'half' of loss term 'kd' is not a number"]),
    "term_needs_a_teacher": ([f"--config={SMOKE}", "--config.terms=+kd"],
                             ["loss term 'kd' needs a teacher", "method 'plain_dirac'"]),
    "loss_setting_wrong_type": ([f"--config={KD}", "--config.loss.kd.temperature=hot"],
                                ["--config.loss.kd.temperature=hot", "to float"]),
    "unknown_arch": ([f"--config={KD}", "--config.teacher.arch=wrn_40_3"],
                     ["unknown arch 'wrn_40_3'", "wrn_40_2", "--config.teacher.arch"]),
    "jointrd_unequal_stages": (["--config=configs/jointrd.py:smoke",
                               "--config.model.arch=resnet8", "--config.teacher.arch=resnet8x4"],
                              ["same shapes", "teacher resnet8x4", "pair archs of equal stages"]),
    "unknown_conv": ([f"--config={SMOKE}", "--config.model.conv=rep"],
                     ["unknown conv 'rep'", "--config.model.conv"]),
    "streamed_resize_typo": (["--config=configs/imagenet/plain.py:smoke",
                              "--config.streamed.resize=area"],
                             ["training resize 'area' (streamed.resize)", "'fast'"]),
    "unknown_key": ([f"--config={SMOKE}", "--config.num_epoch=3"],
                    ["--config.num_epoch", "no key 'num_epoch'", "configs/default.py"]),
    "unknown_nested_key": ([f"--config={SMOKE}", "--config.model.depth=18"],
                           ["--config.model.depth", "no key 'depth'"]),
    "wrong_type": ([f"--config={SMOKE}", "--config.num_epochs=ten"],
                   ["--config.num_epochs=ten", "takes an int"]),
    "wrong_type_tuple": ([f"--config={SMOKE}", "--config.optimizer.lr_drop_at=half"],
                         ["lr_drop_at", "--config.optimizer.lr_drop_at='(0.5, 0.75)'"]),
    "unknown_recipe": ([f"--config={SMOKE}", "--config.recipe=mdistiler"],
                       ["unknown recipe 'mdistiler'", "jointrd or mdistiller",
                        "--config.recipe=NAME"]),
    "zero_epochs": ([f"--config={SMOKE}", "--config.num_epochs=0"],
                    ["num_epochs=0 must be positive", "--config.num_epochs=N"]),
    "negative_batch": ([f"--config={SMOKE}", "--config.batch_size=-64"],
                       ["batch_size=-64 must be positive"]),
    "batch_not_divisible": ([f"--config={SMOKE}", "--config.batch_size=60"],
                            ["does not divide over 8 devices", "--config.batch_size=56"]),
    "missing_config_file": (["--config=configs/nope.py"],
                            ["cannot load the config file", "configs/nope.py"]),
    "missing_teacher": ([f"--config={KD}", "--config.teacher.checkpoint={in}/no_such_run"],
                        ["does not exist", "teacher.checkpoint"]),
    "teacher_other_arch": ([f"--config={KD}", "--config.teacher.checkpoint={in}/teacher_wide"],
                           ["does not fit", "width 32 (want 16)", "--config.teacher.arch/width"]),
    "teacher_other_classes": ([f"--config={KD}", "--config.teacher.checkpoint={in}/teacher_100"],
                              ["does not fit", "num_classes 100 (want 10)"]),
    "dataset_absent_no_download": ([f"--config={SMOKE}", "--config.dataset=cifar10",
                                    "--config.data_dir={in}/tfds", "--config.download=False"],
                                   ["not prepared", "tfds build cifar10",
                                    "--config.data_dir=DIR"]),
    "npz_rank3": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/rank3.npz"],
                  ["x_train has shape (16, 8, 8), not rank 4"]),
    "npz_nchw": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/nchw.npz"],
                 ["x_train has shape (16, 3, 8, 8)", "must be NHWC",
                  "x.transpose(0, 2, 3, 1)"]),
    "cifar_python_missing": ([f"--config={SMOKE}",
                              "--config.dataset=cifar100_python:{in}/no_such_dir"],
                             ["no_such_dir: no such directory", "extracted cifar-100-python/"]),
    "bad_boolean": ([f"--config={SMOKE}", "--config.download=maybe"],
                    ["--config.download=maybe: not a boolean", "true or false"]),
    "config_argument_typo": (["--config=configs/plain_dirac.py:smok"],
                             ["unknown config argument 'smok'", "configs/jointrd.py:smoke"]),
    "npz_float": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/float.npz"],
                  ["x_test has dtype float32, not uint8"]),
    "npz_negative_labels": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/negative.npz"],
                            ["y_train has negative labels"]),
    "npz_one_class": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/one_class.npz"],
                      ["training labels hold only class 0", "at least 2 classes"]),
    "npz_test_labels_never_trained": ([f"--config={SMOKE}", "--config.dataset=npz:{in}/unseen.npz"],
                                      ["y_test has label(s) 4, 5, 6, 7 (8 images) that y_train "
                                       "never has", "relabel the classes to 0..K-1"]),
    "loss_setting_of_an_absent_term": ([f"--config={KD}", "--config.loss.dkd.beta=2"],
                                       ["--config.loss.dkd.beta=2.0", "has no dkd term",
                                        "--config.terms=+dkd or drop the setting"]),
    "nan_term_weight": ([f"--config={KD}", "--config.terms=ce:nan,kd"],
                        ["--config.terms=ce:nan,kd: the weight of loss term 'ce' must be "
                         "finite and >= 0"]),
    "zero_temperature": ([f"--config={KD}", "--config.loss.kd.temperature=0"],
                         ["--config.loss.kd.temperature=0.0: the temperature of loss term 'kd' "
                          "must be finite and > 0"]),
    "epoch_fraction_and_absolute_both_set": (
        ["--config=configs/jointrd_dkd.py", "--config.loss.dkd.warmup_fraction=0.2",
         "--config.loss.dkd.warmup_epochs=10"],
        ["--config.loss.dkd.warmup_fraction=0.2 and --config.loss.dkd.warmup_epochs=10 both "
         "set dkd's warmup_epochs: set one"]),
    "dist_group_not_dividing_the_batch": (
        ["--config=configs/dist_dirac.py:smoke", "--config.loss.dist.intra_group=5"],
        ["--config.loss.dist.intra_group=5 does not divide the batch (--config.batch_size=32)",
         "a divisor of 32"]),
    "teacher_of_a_method_without_one": ([f"--config={SMOKE}",
                                         "--config.teacher.checkpoint={in}/teacher_wide"],
                                        ["--config.teacher.checkpoint=", "teacher_wide: method "
                                         "'plain_dirac'", "trains without a teacher"]),
    "data_dir_of_data_without_one": ([f"--config={SMOKE}", "--config.data_dir={in}/tfds"],
                                     ["--config.data_dir=", "dataset 'synthetic' does not read "
                                      "a data_dir"]),
    "workdir_under_a_file": ([f"--config={SMOKE}", "--workdir={in}/file.txt/run"],
                             ["cannot write to workdir", "choose a writable --workdir"]),
    "workdir_in_proc": ([f"--config={SMOKE}", "--workdir=/proc/x"],
                        ["cannot write to workdir /proc/x", "cannot create a directory in /proc",
                         "choose a writable --workdir"]),
    "workdir_in_sys": ([f"--config={SMOKE}", "--workdir=/sys/x"],
                       ["cannot write to workdir /sys/x", "cannot create a directory in /sys",
                        "choose a writable --workdir"]),
    "workdir_is_a_file": ([f"--config={SMOKE}", "--workdir={in}/file.txt"],
                          ["cannot use", "file.txt as the workdir", "choose a directory"]),
    "workdir_of_another_config": ([f"--config={SMOKE}", "--workdir={in}/other_run"],
                                  ["holds a run of a different config", "seed: 1 -> 0",
                                   "--config.overwrite=True"]),
}


# The refusals that need the dataset: its class count (the loss terms and the teacher are
# checked as the method is built for it) or its labels. They read the data (the smoke
# configs' small synthetic set, a tiny .npz), still compiling nothing.
READ_THE_DATA = {"term_needs_a_teacher", "jointrd_unequal_stages", "missing_teacher",
                 "teacher_other_arch", "teacher_other_classes", "npz_one_class",
                 "npz_test_labels_never_trained"}


@pytest.fixture(scope="module")
def results(inputs, tmp_path_factory):
  """Every case, two processes at a time (each mostly imports and waits on the disk), each
  through tests/jax_probe.py, which records what JAX compiled and what data was read.

  Each case gets a fresh workdir. Returns {case: (process, probe record, workdir)} and the
  snapshots of the inputs before and after."""
  before = _snapshot(inputs)

  def run(case):
    args, _ = CASES[case]
    workdir = tmp_path_factory.mktemp(case) / "run"
    args = [a.format(**{"in": inputs}) for a in args]
    if not any(a.startswith("--workdir=") for a in args):
      args.append(f"--workdir={workdir}")
    record = workdir.parent / "probe.json"
    return case, (*jax_probe.run(record, "experiments.main", args), workdir)

  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    out = dict(pool.map(run, CASES))
  return out, before, _snapshot(inputs)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_before_anything_compiles(case, results):
  (proc, probe, workdir), before, after = results[0][case], results[1], results[2]
  _, expected = CASES[case]
  lines = proc.stderr.strip().splitlines()
  errors = [line for line in lines if line.startswith("error:")]
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
  assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr[-3000:]
  for text in expected:
    assert text in errors[0], (text, errors[0])
  # The other lines, if any, are log records in the run's one format, e.g. the
  # synthetic-data notice; no raw Python values (tuples) in the error.
  assert all(re.match(r"\[\d\d:\d\d:\d\d\] warning: ", line) for line in lines[:-1]), lines
  assert not re.search(r"\('|',\)", errors[0]), errors[0]
  # What makes a refusal fast: nothing lowered or compiled (so nothing ran on a device;
  # a shape check by jax.eval_shape traces only), no dataset loaded (a bad .npz is
  # refused while it is read) unless the check needs it.
  work = {jax_probe.LOWER, jax_probe.COMPILE}
  assert not work & set(probe["events"]), probe["events"]
  assert probe["datasets_loaded"] == (case in READ_THE_DATA)
  assert after == before  # existing files untouched (by any case)
  # A new workdir is not even created.
  assert not workdir.exists()


def test_the_probe_sees_a_compile_and_a_dataset(tmp_path):
  """tests/jax_probe.py records what the cases above must not do: a tiny jitted function
  compiled and a dataset read (here a synthetic one)."""
  (tmp_path / "work.py").write_text(
      "import jax, jax.numpy as jnp\n"
      "from jointrd_jax.datasets import sources\n"
      "sources.get('synthetic').load_arrays(settings=dict(train_size=16, test_size=8))\n"
      "print(jax.jit(lambda x: x * 2)(jnp.arange(3.0)).sum())\n")
  env = dict(os.environ, PYTHONPATH=str(tmp_path))
  proc, probe = jax_probe.run(tmp_path / "probe.json", "work", [], cwd=tmp_path, env=env)
  assert proc.returncode == 0 and proc.stdout == "6.0\n", proc.stderr[-3000:]
  events = probe["events"]
  assert {jax_probe.TRACE, jax_probe.LOWER, jax_probe.COMPILE} <= set(events), events
  assert probe["datasets_loaded"] == 1


def test_overwrite_true_accepts_the_workdir_of_another_config(inputs, tmp_path):
  # The way out the error names: --config.overwrite=True discards the other run's files
  # (checked at the library level: it is `prepare` the trainer calls; nothing trains here).
  other = tmp_path / "other_run"
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.copytree(inputs / "other_run", other)
  config = _smoke("plain_dirac")
  config.overwrite = True
  workdir_lib.prepare(str(other), config)
  assert sorted(p.name for p in other.iterdir()) == ["config.json"]
  assert workdir_lib.read_config(str(other))["seed"] == 0


def test_scripts_log_in_the_one_format():
  """Outside `app.run` (experiments.benchmark, run_efficiency) absl's first record would
  install logging.basicConfig's plain handler ('WARNING:absl:...'); use_one_log_format,
  called first, gives the script the run's format."""
  def stderr_lines(setup):
    code = (f"from absl import logging; from jointrd_jax.training import reporting; {setup}"
            "logging.warning('one'); logging.vlog(1, 'hidden'); logging.warning('two')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=True)
    return proc.stderr.strip().splitlines()

  assert stderr_lines("") == ["WARNING:absl:one", "WARNING:absl:two"]  # what it prevents
  lines = stderr_lines("reporting.use_one_log_format(); ")
  assert [re.sub(r"^\[\d\d:\d\d:\d\d\] warning: ", "", x) for x in lines] == ["one", "two"], lines
