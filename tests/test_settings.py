"""Settings checked before any work: each loss term's declared ranges (the registry), a
setting that would change nothing (a term the method lacks, a teacher it does not have, a
data_dir its dataset does not read), and the sweep's shared base config. Library-level;
the command line's one-line errors: test_bad_input.py."""
import glob
import importlib
import math
import os
import re

import numpy as np
import pytest

from jointrd_jax import methods
from jointrd_jax.training import run_setup, teachers, workdir
from jointrd_jax.errors import UserError
from jointrd_jax.methods import terms as terms_lib
from jointrd_jax.sweep import planning, study

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _resolve(term: str, key: str, value):
  """`term` alone (jointrd's preset has a teacher, so any term fits) with `key` = value, in
  a run of 200 epochs (a fraction of the run, `Term.per_run`, resolves into epochs)."""
  return methods.resolve_terms("jointrd", term, {term: {key: value}}, 200)


def _outside(r: methods.Range):
  """Values outside `r`, from its ends: non-finite ones, and just past each finite end."""
  values = [math.nan, math.inf, -math.inf]
  if math.isfinite(r.low):
    values.append(r.low if r.low_open else r.low - 1)
  if math.isfinite(r.high):
    values.append(r.high if r.high_open else r.high + 1)
  return values


def test_every_terms_numeric_settings_and_weight_have_an_enforced_range():
  for name, term in methods.TERMS.items():
    numeric = {k for k, v in term.params.items() if not isinstance(v, bool)}
    assert set(term.ranges) == numeric, name
    defaults = {**term.params, "weight": term.weight}
    for key, r in {**term.ranges, "weight": term.weight_range}.items():
      (w,) = _resolve(name, key, defaults[key])  # the default is accepted
      got = w.weight if key == "weight" else w.params.get(key)
      if key in term.per_run:  # a fraction of the run: its epochs, of 200
        got = w.params[term.per_run[key]] / 200
      assert got == defaults[key]
      for end, open_ in ((r.low, r.low_open), (r.high, r.high_open)):
        if math.isfinite(end) and not open_:
          _resolve(name, key, end)  # a closed end is inside
      for bad in _outside(r):
        with pytest.raises(methods.SettingError) as e:
          _resolve(name, key, bad)
        msg = str(e.value)
        assert msg.startswith(f"--config.loss.{name}.{key}={bad}: the {key} of loss term "
                              f"{name!r} must be "), msg


def test_the_terms_ranges_follow_their_formulas():
  # (term, setting, refused, accepted): temperatures divide logits, tau and dc are
  # fractions, the epoch counts divide the epoch, weights and KL factors are >= 0.
  for term, key, refused, accepted in (
      ("kd", "temperature", 0.0, 1e-6), ("kd", "tau", 1.01, 1.0), ("kd", "tau", -0.01, 0.0),
      ("dkd", "temperature", -4.0, 4.0), ("dkd", "beta", -1.0, 0.0),
      ("dkd", "alpha", -1e-9, 0.0), ("dkd", "warmup_epochs", 0, 1),
      ("dist", "tau", 0.0, 0.5), ("dist", "gamma", -1.0, 0.0), ("dist", "beta", -1.0, 2.0),
      ("jointrd", "dc", 1.5, 1.0), ("jointrd", "decay_epochs", 0, 1),
      ("jointrd", "decay_fraction", 0.0, 1.0), ("dkd", "warmup_fraction", 1.01, 1e-3),
      ("ce", "weight", -1.0, 0.0), ("mse_all", "weight", math.nan, 1e-3)):
    with pytest.raises(methods.SettingError):
      _resolve(term, key, refused)
    _resolve(term, key, accepted)
  assert terms_lib.POSITIVE.describe() == "finite and > 0"
  assert terms_lib.FRACTION.describe() == "in [0, 1]"
  assert terms_lib.RUN_FRACTION.describe() == "in (0, 1]"
  # Any real number type is judged by its value; booleans and strings are not numbers.
  assert np.int64(3) in terms_lib.AT_LEAST_ONE and np.float32(0.5) in terms_lib.FRACTION
  assert True not in terms_lib.FRACTION and "1" not in terms_lib.FRACTION


def test_a_term_without_ranges_or_with_a_default_outside_them_does_not_register():
  fn = lambda inputs, *, t: (0.0, {"loss": 0.0})  # noqa: E731
  with pytest.raises(ValueError, match="declare a Range in `ranges` for each numeric"):
    methods.Term("new", fn, params={"t": 2.0})
  with pytest.raises(ValueError, match="the default of 't' is outside its range"):
    methods.Term("new", fn, params={"t": 0.0}, ranges={"t": terms_lib.POSITIVE})
  with pytest.raises(ValueError, match="the default of 'weight' is outside its range"):
    methods.Term("new", fn, weight=-1.0)
  assert "new" not in methods.TERMS


def test_a_weight_in_the_terms_string_must_be_finite_and_non_negative():
  for spec in ("ce:-1,kd", "ce:nan,kd", "ce:inf,kd", "+ce:-0.5"):
    with pytest.raises(methods.SettingError, match=(
        rf"^--config\.terms={re.escape(spec)}: the weight of loss term '(ce|kd)' must be "
        r"finite and >= 0\.$")):
      methods.resolve_terms("kd_logits", spec)
  assert [w.weight for w in methods.resolve_terms("kd_logits", "ce:0,kd")] == [0.0, 1.0]


def test_a_setting_of_a_term_the_method_does_not_have_is_refused():
  with pytest.raises(methods.SettingError, match=(
      r"^--config\.loss\.dkd\.beta=2\.0: method 'jointrd' has no dkd term, .* add the term "
      r"with --config\.terms=\+dkd or drop the setting\.$")):
    methods.resolve_terms("jointrd", "", {"dkd": {"beta": 2.0, "alpha": None}})
  # Set to its default value it would change nothing either.
  with pytest.raises(methods.SettingError, match="--config.loss.kd.tau=0.9"):
    methods.resolve_terms("resnet", "", {"kd": {"tau": 0.9}})
  # With the term added, the setting applies.
  w = methods.resolve_terms("jointrd", "+dkd", {"dkd": {"beta": 2.0}})
  assert [x.name for x in w] == ["jointrd", "dkd"] and w[1].params["beta"] == 2.0
  # Removed by a terms string: its settings are refused too.
  with pytest.raises(methods.SettingError, match=r"--config\.loss\.mse_all\.weight=0\.1: method "
                                                 r"'kd_mse_all_dirac' with --config\.terms=ce "
                                                 "has no mse_all term"):
    methods.resolve_terms("kd_mse_all_dirac", "ce", {"mse_all": {"weight": 0.1}})


def _smoke(method):
  return importlib.import_module(f"configs.{method}").get_config("smoke")


def test_teacher_settings_that_would_change_nothing_are_refused():
  for key, value in (("checkpoint", "/runs/resnet"), ("arch", "resnet18"), ("width", 32),
                     ("train", "joint"), ("fold", False)):
    c = _smoke("plain_dirac")
    c.teacher[key] = value
    with pytest.raises(UserError, match=rf"^--config\.teacher\.{key}={value}: method "
                                        "'plain_dirac' trains without a teacher"):
      run_setup.validate(c)
    # kd_logits with only CE has no teacher either.
    c = _smoke("kd_logits")
    c.terms = "ce"
    c.teacher[key] = value
    with pytest.raises(UserError, match=rf"{key}={value}: method 'kd_logits' with "
                                        "--config.terms=ce trains without a teacher"):
      run_setup.validate(c)
  # A jointly trained teacher starts from scratch and is never folded.
  for key, value in (("checkpoint", "/runs/resnet"), ("fold", False)):
    c = _smoke("jointrd")
    c.teacher.train = "joint"
    c.teacher[key] = value
    with pytest.raises(UserError, match=rf"--config\.teacher\.{key}={value}: with "
                                        "teacher.train='joint'"):
      run_setup.validate(c)
  c = _smoke("jointrd")
  c.teacher.update(dict(checkpoint="/runs/resnet", arch="resnet18", width=32, fold=False))
  run_setup.validate(c)


def test_a_data_dir_its_dataset_does_not_read_is_refused():
  for dataset in ("npz:/data/x.npz", "synthetic", "imagefolder:/data/in"):
    c = _smoke("plain_dirac")
    c.dataset, c.data_dir = dataset, "/data/tfds"
    with pytest.raises(UserError, match=r"^--config\.data_dir=/data/tfds: dataset .* does "
                                        "not read a data_dir"):
      run_setup.validate(c)
  for name, dataset in (("plain_dirac", "cifar10"), ("plain_dirac", "cifar100"),
                        ("imagenet.plain_dirac", "synthetic"),  # its generated folder
                        ("imagenet.plain_dirac", "imagenet2012")):
    c = _smoke(name)
    c.dataset, c.data_dir = dataset, "/data/tfds"
    run_setup.validate(c)


def _configs():
  for path in sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True)):
    module = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
    if not module.endswith(("__init__", "from_json", "recipe_keys")):  # not config files
      yield module


def test_every_config_its_teacher_and_every_sweep_run_validate():
  for module in _configs():
    for arg in ("", "smoke"):
      c = importlib.import_module(module).get_config(arg)
      if "base" not in c:
        run_setup.validate(c)
        run_setup.validate(teachers.teacher_config(c))
        continue
      # A study (configs/study_digits.py, configs/kd_zoo.py) is many sweeps: each of its
      # cells is checked.
      is_study = "groups" in c or study.is_zoo(c)
      sweeps = ([study.sweep_config(c, cell, "/w") for cell in study.cells(c)]
                if is_study else [c])
      for s in sweeps:
        # (the study's npz is written by a command; its presence is tested in test_study)
        (planning.check_sweep_config if is_study else planning.check_base_settings)(s)
        run_setup.validate(teachers.teacher_config(s.base))
        for m in s.methods:
          run_setup.validate(planning.run_config(s.base, m, 0, "/teacher"))


def test_the_sweeps_shared_settings_go_to_the_runs_they_apply_to():
  sc = importlib.import_module("configs.table12").get_config("smoke")  # resnet, jointrd
  sc.base.loss.jointrd.dc = 0.2
  sc.base.teacher.fold = False
  planning.check_base_settings(sc)
  j = planning.run_config(sc.base, "jointrd", 0, "/teacher")
  r = planning.run_config(sc.base, "resnet", 0, "/teacher")
  assert (j.loss.jointrd.dc, j.teacher.fold, j.teacher.checkpoint) == (0.2, False, "/teacher")
  assert (r.loss.jointrd.dc, r.teacher.fold, r.teacher.checkpoint) == (None, True, "")
  t = teachers.teacher_config(j)
  assert t.loss.jointrd.dc is None and t.teacher.fold and t.method == "resnet"
  for run in (j, r, t):
    run_setup.validate(run)
  # A setting no method of the sweep uses would change nothing: refused.
  sc.base.loss.dkd.beta = 2.0
  with pytest.raises(UserError, match=r"^--config\.base\.loss\.dkd\.beta=2\.0: no method of "
                                      r"the sweep \(resnet, jointrd\) has a dkd term"):
    planning.check_base_settings(sc)
  sc.base.loss.dkd.beta = None
  sc.methods = ("resnet", "plain")
  sc.base.loss.jointrd.dc = None
  with pytest.raises(UserError, match=r"^--config\.base\.teacher\.fold=False: no method"):
    planning.check_base_settings(sc)
  sc.base.teacher.fold = True
  sc.teacher_checkpoint = "/runs/resnet"
  with pytest.raises(UserError, match=r"^--config\.teacher_checkpoint=/runs/resnet: no "):
    planning.check_base_settings(sc)


def test_runs_of_earlier_versions_with_inert_settings_resume_and_reload():
  # Earlier versions kept settings that never applied: the ImageNet recipe's jointrd dc on
  # every method, the student's loss settings and teacher.fold in its teacher's config.
  # A run saved so is the same run as its config now (it resumes), and it reloads.
  c = importlib.import_module("configs.imagenet.resnet").get_config("smoke")
  saved = workdir.config_to_dict(c)
  saved["loss"]["jointrd"]["dc"] = 5e-3
  saved["loss"]["kd"]["tau"] = 0.5
  saved["teacher"]["fold"] = False
  assert not workdir.differences(saved, c)
  migrated = workdir.migrate(saved)
  assert migrated["loss"]["jointrd"]["dc"] is None and migrated["teacher"]["fold"] is True
  # Where the setting applies, a different value is a different run.
  j = importlib.import_module("configs.imagenet.jointrd").get_config("smoke")
  saved = workdir.config_to_dict(j)
  saved["loss"]["jointrd"]["dc"] = 0.5
  saved["teacher"]["fold"] = False
  assert workdir.differences(saved, j) == ["loss.jointrd.dc: 0.5 -> 0.005",
                                           "teacher.fold: False -> True"]
