"""A run's name, label and description come from what it trains (`training.identity`): the
preset's when nothing changed, the preset's and the changes otherwise, in the training
log's first line, summary.json and results.md/png. (The model card and the export's lines:
test_package.py and test_export.py.) No training here: configs, built methods, fake data."""
import importlib
import pathlib
import types

import pytest

from configs import default
from jointrd_jax import methods
from jointrd_jax.training import results, run_setup, train
from jointrd_jax.training import identity

C = 10


def _config(method, **overrides):
  c = default.get_config("smoke")
  c.method = method
  c.update_from_flattened_dict(overrides)
  return c


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_a_preset_run_keeps_the_presets_name_label_and_description(method):
  preset = methods.METHODS[method]
  loss = " + ".join(t if methods.TERMS[t].weight == 1 else f"{methods.TERMS[t].weight:g} {t}"
                    for t, o in preset.term_entries() if "weight" not in o)
  for c in (_config(method), _config(method, **{
      "terms": ",".join(t for t, _ in preset.term_entries()),  # its own terms, spelt out
      "model.conv": preset.student_conv, "model.shortcuts": preset.student_shortcuts})):
    who = identity.of_config(c)
    assert (who.name, who.changes, who.label) == (method, (), preset.label or method)
    assert who.description.startswith(preset.description + "; loss ")
    if not any("weight" in o for _, o in preset.term_entries()):  # kd_ls_dirac: 0.1 ce + 9 kd
      assert who.description == f"{preset.description}; loss {loss}"
    assert who.role == ("student" if preset.teacher else "network")


# (method, overrides, name, words the description holds, words it must not hold)
CHANGED = [
    ("kd_logits_dirac", {"terms": "ce,dist"}, "kd_logits_dirac + terms ce,dist",
     ("Dirac student distilled from a frozen ResNet teacher", "; loss ce + 2 dist"), ("KD",)),
    ("kd_logits_dirac", {"model.conv": "repvgg"}, "kd_logits_dirac + conv repvgg",
     ("RepVGG-style student", "; loss kd"), ("Dirac student",)),
    ("kd_logits_dirac", {"loss.kd.temperature": 2.0, "loss.kd.weight": 0.5},
     "kd_logits_dirac + kd.weight=0.5, kd.temperature=2", ("; loss 0.5 kd",), ()),
    ("jointrd", {"terms": "+dkd:0.5", "teacher.train": "joint"},
     "jointrd + terms jointrd,dkd:0.5, teacher.train joint",
     ("; loss jointrd + 0.5 dkd", "teacher (teacher.train joint)"), ("frozen",)),
    ("kd_logits_dirac", {"terms": "ce"}, "kd_logits_dirac + terms ce",
     ("Dirac plain CNN trained from scratch (no teacher); loss ce",), ("student",)),
    ("plain", {"model.shortcuts": "none"}, "plain + shortcuts none",
     ("plain CNN (no shortcuts)",), ()),
    ("resnet", {"model.conv": "reparam"}, "resnet + conv reparam",
     ("ResNet (with shortcuts, Dirac convs) trained from scratch",), ("student",)),
]


@pytest.mark.parametrize("method,overrides,name,has,lacks", CHANGED)
def test_a_changed_run_is_named_and_described_by_what_it_trains(method, overrides, name,
                                                                has, lacks):
  c = _config(method, **overrides)
  who = identity.of_config(c)
  changes = name.split(" + ", 1)[1]
  assert who.name == name and who.method == method
  base = methods.METHODS[method].label or method
  assert who.label == f"{base}, changed: {changes}"
  assert who.description.startswith(f"{base} changed ({changes}): ")
  for words in has:
    assert words in who.description, (words, who.description)
  for words in lacks:
    assert words not in who.description.split(": ", 1)[1], (words, who.description)
  # The built method says the same: one function behind both.
  assert identity.of_built(run_setup.build_method(c, C)) == who


@pytest.mark.parametrize("shortcuts,conv,role,words", [
    ("projection", "reparam", "student", "Dirac student"),
    ("projection", "repvgg", "student", "RepVGG-style student"),
    ("projection", "none", "student", "plain student"),
    ("projection", "none", "network", "plain CNN"),
    ("projection", "init", "network", "Dirac-initialised plain CNN"),
    ("none", "reparam", "student", "Dirac student (no shortcuts)"),
    ("all", "none", "network", "ResNet (with shortcuts)"),
    ("all", "none", "teacher", "ResNet teacher (with shortcuts)"),
    ("all", "repvgg", "student", "ResNet student (with shortcuts, RepVGG-style convs)"),
])
def test_network_words(shortcuts, conv, role, words):
  assert identity.network_words(shortcuts, conv, role) == words


def _data():
  return types.SimpleNamespace(name="synthetic", num_train=512, num_eval=200, eval_split="test",
                               image_shape=(32, 32, 3), num_classes=C)


def test_the_log_line_and_summary_name_the_changes(tmp_path):
  c = _config("kd_logits_dirac", **{"terms": "ce,dist", "model.conv": "repvgg"})
  m = run_setup.build_method(c, C)
  line = train.start_line(c, _data(), m, 1, 16, 1)
  assert line.startswith("kd_logits_dirac + terms ce,dist, conv repvgg on synthetic (KD(logits) "
                         "+ Dirac changed (terms ce,dist, conv repvgg): RepVGG-style student "
                         "distilled from a frozen ResNet teacher; loss ce + 2 dist; 512 train")
  assert "resnet10 projection conv repvgg" in line
  summary = train._summary(c, tmp_path, _data(), m, 1.0, 1.0, 1.0, {})  # no records yet
  assert summary["method"] == "kd_logits_dirac"  # the preset: sweeps group by it
  assert summary["name"] == "kd_logits_dirac + terms ce,dist, conv repvgg"
  assert summary["changes"] == ["terms ce,dist", "conv repvgg"]
  assert summary["label"] == "KD(logits) + Dirac, changed: terms ce,dist, conv repvgg"
  assert summary["description"] in line and summary["role"] == "student"
  # A summary.json read back gives the identity it recorded.
  assert identity.of_run(summary["config"], summary) == identity.of_config(c)
  # A preset run's line and summary carry the preset's own words.
  plain = _config("plain")
  m = run_setup.build_method(plain, C)
  assert train.start_line(plain, _data(), m, 1, 16, 1).startswith(
      "plain on synthetic (plain CNN from scratch; loss ce; ")
  summary = train._summary(plain, tmp_path, _data(), m, 1.0, 1.0, 1.0, {})
  assert (summary["name"], summary["label"], summary["changes"]) == (
      "plain", "Plain CNN, from scratch", [])


def _summary(method, seed, top1, **overrides):
  c = _config(method, seed=seed, **overrides)
  return {"method": method, **identity.of_config(c).as_summary(), "dataset": "synthetic",
          "eval_split": "test", "num_eval": 200, "epochs_done": 2,
          "final": {"epoch": 2, "student_top1": top1}, "best": {"epoch": 2, "student_top1": top1},
          "config": c.to_dict()}


def test_results_label_a_changed_row_by_its_changes_without_the_papers_number(tmp_path):
  pytest.importorskip("matplotlib")
  changed = {"model.conv": "repvgg"}
  rows = results.aggregate({
      "kd_logits_dirac": [_summary("kd_logits_dirac", s, 60.0 + s, **changed) for s in (0, 1)],
      "jointrd": [_summary("jointrd", 0, 70.0)],
      "resnet": []})  # no runs yet: the preset's label
  by = {r["method"]: r for r in rows}
  assert by["kd_logits_dirac"]["label"] == "KD(logits) + Dirac, changed: conv repvgg"
  assert by["kd_logits_dirac"]["paper_top1_mean"] is None  # the paper ran the Dirac student
  assert by["jointrd"]["label"] == "JointRD (ours)"
  assert by["jointrd"]["paper_top1_mean"] == methods.METHODS["jointrd"].paper_top1[0]
  assert by["resnet"]["label"] == "ResNet (with shortcuts)"
  md = results.render_markdown(rows)
  assert "| KD(logits) + Dirac, changed: conv repvgg | 2 | 60.50 ± 0.71 |" in md
  assert "| JointRD (ours) † | 1 |" in md
  assert results.read_csv(results.write(tmp_path, rows, {})["csv"])["kd_logits_dirac"][
      "label"] == "KD(logits) + Dirac, changed: conv repvgg"
  curves = {"kd_logits_dirac": [[{"epoch": 1, "student_top1": 50.0}]]}
  fig = results.figure(curves, labels={r["method"]: r["label"] for r in rows})
  assert [t.get_text() for t in fig.legends[0].get_texts()] == [
      "KD(logits) + Dirac, changed: conv repvgg (n=1)"]


# The ImageNet recipe's presets (configs/imagenet/<method>.py, on configs/imagenet/default.py)
# set their own loss values (JointRD's dc 5e-3, kd_ls_dirac's CE weight 1, DKD's beta 0.5):
# a run of such a file as it is is the preset itself.
IMAGENET_PRESETS = sorted(p.stem for p in (pathlib.Path(default.__file__).parent / "imagenet")
                          .glob("*.py") if p.stem not in ("__init__", "default"))


@pytest.mark.parametrize("arg", ["", "smoke"])
@pytest.mark.parametrize("method", IMAGENET_PRESETS)
def test_an_imagenet_preset_run_is_its_preset(method, arg):
  c = importlib.import_module(f"configs.imagenet.{method}").get_config(arg)
  assert c.method == method and identity.is_imagenet_recipe(c.to_dict())
  who = identity.of_config(c)
  preset = methods.METHODS[method]
  assert (who.name, who.changes, who.label) == (method, (), preset.label or method)
  assert who.description.startswith(preset.description + "; loss ")
  assert identity.preset_file(method, True) == f"configs/imagenet/{method}.py"


def _imagenet(method, **overrides):
  c = importlib.import_module(f"configs.imagenet.{method}").get_config("smoke")
  c.update_from_flattened_dict(overrides)
  return c


@pytest.mark.parametrize("config,name", [
    # A change of the ImageNet preset's own values, and nothing of those it keeps.
    (lambda: _imagenet("jointrd", **{"loss.jointrd.dc": 0.5}), "jointrd + jointrd.dc=0.5"),
    (lambda: _imagenet("kd_ls_dirac", **{"loss.ce.weight": 0.1}),
     "kd_ls_dirac + ce.weight=0.1"),
    (lambda: _imagenet("dkd_dirac", **{"model.conv": "repvgg"}), "dkd_dirac + conv repvgg"),
    (lambda: _imagenet("jointrd_dkd", terms="+dist"), "jointrd_dkd + terms jointrd,dkd,dist"),
    # The ImageNet recipe on a folder of images: still the preset.
    (lambda: _imagenet("kd_ls_dirac", dataset="imagefolder:/data/in"), "kd_ls_dirac"),
    # The CIFAR recipe's kd_ls_dirac has CE weight 0.1: ImageNet's 1 is a change there.
    (lambda: _config("kd_ls_dirac", **{"loss.ce.weight": 1.0}), "kd_ls_dirac + ce.weight=1"),
])
def test_a_changed_run_is_compared_with_its_recipes_preset(config, name):
  assert identity.of_config(config()).name == name


def test_an_imagenet_preset_runs_log_line_summary_and_config_json_name_the_preset(tmp_path):
  c = _imagenet("jointrd")
  m = run_setup.build_method(c, C)
  assert train.start_line(c, _data(), m, 1, 16, 1).startswith(
      f"jointrd on synthetic ({methods.METHODS['jointrd'].description}; loss jointrd; ")
  summary = train._summary(c, tmp_path, _data(), m, 1.0, 1.0, 1.0, {})
  assert (summary["name"], summary["changes"]) == ("jointrd", [])
  # A config.json without the identity fields (an earlier version's summary): the same.
  assert identity.of_run(summary["config"], None).name == "jointrd"
