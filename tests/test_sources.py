"""jointrd_jax/datasets/sources/: the data sources by name. Today's `--config.dataset=`
spellings parse once into a source and its path; each source answers the questions about
its data; `digits` (scikit-learn's) is the source added as one module; a source defined
here, in a test, is picked up by the trainer's loading, the class names and the export's
normalisation without touching them."""
import dataclasses
import importlib.util
import sys

import jax
import numpy as np
import pytest

from configs import resnet
from experiments import make_digits
from jointrd_jax import datasets, sharding
from jointrd_jax.training import run_setup, train
from jointrd_jax.datasets import class_names, digits, sources
from jointrd_jax.datasets.sources import core
from jointrd_jax.deploy import checks
from jointrd_jax.errors import UserError

# spec -> (source, path, name, streamed for a CIFAR arch, streamed for an ImageNet arch)
SPELLINGS = {
    "cifar100": ("cifar100", "", "cifar100", False, False),
    " CIFAR10 ": ("cifar10", "", "cifar10", False, False),
    "cifar100_python:/d/c": ("cifar100_python", "/d/c", "cifar100_python:/d/c", False, False),
    "cifar10_python:rel": ("cifar10_python", "rel", "cifar10_python:rel", False, False),
    "npz:/x/a:b.npz": ("npz", "/x/a:b.npz", "npz:/x/a:b.npz", False, False),
    "digits": ("digits", "", "digits", False, False),
    "imagefolder:/data/in": ("imagefolder", "/data/in", "imagefolder:/data/in", True, True),
    "imagenet2012": ("imagenet2012", "", "imagenet2012", True, True),
    "synthetic": ("synthetic", "", "synthetic", False, True),
}


@pytest.mark.parametrize("spec", SPELLINGS)
def test_every_spelling_parses_into_its_source_and_path(spec):
  source, path, name, cifar, imagenet = SPELLINGS[spec]
  ds = sources.get(spec)
  assert (ds.source.name, ds.path, ds.name) == (source, path, name)
  assert (ds.streamed("cifar"), ds.streamed("imagenet")) == (cifar, imagenet)


def test_an_unknown_spelling_is_one_line_naming_every_choice():
  choices = ("cifar100, cifar10, cifar100_python:DIR, cifar10_python:DIR, digits, "
             "imagefolder:PATH, imagenet2012, npz:PATH, synthetic")
  for spec in ("imagenet", "cifar100:x", "npz", "imagefolder", ""):
    with pytest.raises(UserError) as e:
      sources.get(spec)
    assert str(e.value) == f"unknown dataset {spec!r}; choose one of {choices}."
  # In-memory loading of a streamed source and the reverse name their own choices.
  with pytest.raises(UserError, match=r"imagefolder:PATH' for in-memory data; valid choices: "
                                      r"cifar100, .*digits, npz:PATH, synthetic\.$"):
    sources.get("imagefolder:/x").load_arrays()
  with pytest.raises(UserError, match=r"^unknown streamed dataset 'cifar100'; valid choices: "
                                      r"imagefolder:PATH, imagenet2012, synthetic\.$"):
    sources.get("cifar100").open_stream()


def test_a_source_receives_its_own_settings_from_its_config_section():
  config = resnet.get_config("smoke")
  got = sources.get("synthetic").settings_of(config)
  assert got == sources.synthetic.Settings(train_size=512, test_size=200, num_classes=10,
                                           image_size=32)
  assert sources.get("synthetic").settings_of({"synthetic": {"num_classes": 3}}).num_classes == 3
  assert sources.get("synthetic").settings(None) == sources.synthetic.Settings()
  assert sources.get("npz:/x.npz").settings_of(config) == core.NoSettings()
  with pytest.raises(UserError, match=r"^image_sze: not a setting of dataset 'synthetic' \(its "
                                      r"settings: train_size, test_size, num_classes, "
                                      r"image_size\)\.$"):
    sources.get("synthetic").settings({"image_sze": 8})
  a = sources.get("synthetic").load_arrays(settings=dict(train_size=20, test_size=6,
                                                         num_classes=4, image_size=8))
  assert a.x_train.shape == (20, 8, 8, 3) and len(a.y_test) == 6 and a.num_classes == 4


def test_the_normalisation_and_the_data_dir_each_source_declares():
  assert sources.get("cifar10_python:/d").normalization(False) == (
      sources.cifar.CIFAR10.mean, sources.cifar.CIFAR10.std)  # TFDS CIFAR-10's constants
  for spec in ("imagefolder:/d", "imagenet2012"):
    assert sources.get(spec).normalization(True) == ((0.485, 0.456, 0.406),
                                                     (0.229, 0.224, 0.225))
  for spec in ("npz:/x.npz", "digits"):  # the training images' statistics
    assert sources.get(spec).normalization(False) is None
  syn = sources.get("synthetic")
  assert syn.normalization(False) is None and syn.normalization(True) == (
      sources.IMAGENET_MEAN, sources.IMAGENET_STD)
  readers = [n for n in SPELLINGS if sources.get(n).reads_data_dir(SPELLINGS[n][4])]
  assert readers == ["cifar100", " CIFAR10 ", "imagenet2012", "synthetic"]
  assert not syn.reads_data_dir(False)  # the in-memory arrays are generated, not read


# ------------------------------------------------------------------------ digits


def test_digits_are_the_arrays_make_digits_writes(tmp_path, capsys):
  out = tmp_path / "digits32.npz"
  assert make_digits.main([f"--out={out}"]) == 0
  capsys.readouterr()
  a = sources.get("digits").load_arrays()
  b = sources.get(f"npz:{out}").load_arrays()
  for key in ("x_train", "y_train", "x_test", "y_test", "mean", "std"):
    np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
  assert a.num_classes == b.num_classes == 10
  assert a.x_train.shape == (1437, 32, 32, 3) and a.x_test.shape == (360, 32, 32, 3)
  with np.load(out) as f:
    np.testing.assert_array_equal(a.y_test, f["y_test"])
  # The class names are the digits, counted against the network's classes.
  assert sources.get("digits").class_names(10)[0] == tuple("0123456789")
  assert sources.get("digits").class_names(4)[0] == core.generic(4)


def test_digits_without_scikit_learn_is_one_line_naming_the_install(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "sklearn" else real(name, *a))
  config = resnet.get_config("smoke")
  config.dataset = "digits"
  with pytest.raises(UserError) as e:
    run_setup.check_data_present(config)  # before anything is loaded
  assert str(e.value) == "the digits dataset needs scikit-learn: pip install scikit-learn"
  monkeypatch.setitem(sys.modules, "sklearn", None)  # an import of it fails
  with pytest.raises(UserError, match="^the digits dataset needs scikit-learn: pip install "
                                      "scikit-learn$"):
    digits.arrays()


def test_dataset_digits_trains_a_tiny_run(tmp_path, one_device):
  del one_device
  config = resnet.get_config("smoke")
  config.dataset = "digits"
  config.num_epochs = 1
  config.eval_hybrids_every_epochs = 0
  summary = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert summary["dataset"] == "digits" and summary["num_eval"] == 360
  # 44 steps of the smoke net: 20.6 % here; chance is 10 % (+- 1.6 % over 360 images), where
  # images and labels that do not belong together would leave it.
  assert summary["final"]["student_top1"] > 15


# -------------------------------------------------------- a source is one module


@dataclasses.dataclass(frozen=True)
class _Settings:
  num_images: int = 12


class _Stripes(core.Source):
  """A source as a contributor writes one: name, settings, loader, class names."""
  name, settings_key, Settings = "stripes", "stripes", _Settings

  def class_names(self, path, spec):
    return ("dark", "light"), "stripes' own names"

  def load_arrays(self, path, settings, *, data_dir, download):
    n = settings.num_images
    y = np.arange(n) % 2
    x = np.broadcast_to((y * 200 + 20).astype(np.uint8)[:, None, None, None], (n, 4, 4, 3))
    return core.make_arrays(self.name, 2, np.array(x), y, np.array(x[:4]), y[:4])


def test_a_new_source_is_picked_up_by_everything_that_asks_about_data(monkeypatch):
  monkeypatch.setitem(sources.SOURCES, "stripes", _Stripes())
  data = datasets.load("stripes", mesh=sharding.make_mesh(jax.devices()[:1]),
                       settings={"num_images": 10})
  assert data.name == "stripes" and data.num_classes == 2 and data.image_shape == (4, 4, 3)
  # mean/std: the statistics of its 10 training images, 5 at 20/255 and 5 at 220/255
  np.testing.assert_allclose(data.mean, [120 / 255] * 3, rtol=1e-6)
  np.testing.assert_allclose(data.std, [100 / 255] * 3, rtol=1e-6)
  assert sources.get("stripes").class_names(2) == (("dark", "light"), "stripes' own names")
  cfg = {"dataset": "stripes", "model": {"arch": "resnet10"}, "stripes": {"num_images": 6}}
  assert not checks.is_streamed(cfg)
  mean, _ = checks.normalization("run", cfg, "stripes")
  np.testing.assert_allclose(mean, [120 / 255] * 3, rtol=1e-6)
  assert "stripes" in str(pytest.raises(UserError, sources.get, "stripe").value)
  assert class_names.CIFAR10[3] == "cat"  # the shared name lists stay where they were
