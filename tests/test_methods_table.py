"""docs/methods.md's tables are the rendering of the registries (experiments/methods_table.py):
the committed text equals it, and a preset, term or conv kind registered appears in it."""
import pytest

from experiments import methods_table
from jointrd_jax import methods, models
from jointrd_jax.errors import UserError
from jointrd_jax.methods.presets import Preset
from jointrd_jax.methods.terms import Term
from jointrd_jax.models.convs import ConvKind


def test_committed_tables_are_the_rendering_of_the_registries():
  text = methods_table.DOC.read_text()
  assert methods_table.replaced(text) == text, (
      "docs/methods.md's tables differ from the registries: run "
      "python -m experiments.methods_table --write")


def test_a_registered_preset_term_and_conv_appear_in_the_tables(monkeypatch):
  monkeypatch.setitem(methods.TERMS, "fake", Term(
      "fake", lambda inputs: None, weight=2.0, formula="F(z | y)", source="Nobody, 2099"))
  monkeypatch.setitem(methods.METHODS, "fake_dirac", Preset(
      "projection", "reparam", (("ce", {"weight": 0.5}), "fake"), "a fake", teacher=True,
      label="Fake + Dirac", paper_top1=(12.5, 0.25)))
  monkeypatch.setitem(models.CONVS, "fakeconv", ConvKind(
      "fakeconv", None, None, "a fake conv"))
  text = methods_table.render()
  assert ("| `fake_dirac` | Fake + Dirac | Dirac student, frozen ResNet teacher | `0.5 ce` + "
          "`2 fake` | 12.50 ± 0.25 |") in text.split("\n")
  assert "| `fake` | F(z \\| y) | weight 2 | Nobody, 2099 |" in text.split("\n")
  assert "| `fakeconv` | a fake conv |" in text.split("\n")
  # Every preset, term and conv of the registries has its row, in the registries' order.
  names = [line.split("`")[1] for line in text.split("\n") if line.startswith("| `")]
  assert names == [*methods.METHODS, *methods.TERMS, *models.CONVS]


def test_write_replaces_only_the_generated_part(monkeypatch, tmp_path, capsys):
  doc = tmp_path / "methods.md"
  doc.write_text(f"# Title\n\nprose\n\n{methods_table.BEGIN}\nold table\n{methods_table.END}\n"
                 "after\n")
  monkeypatch.setattr(methods_table, "DOC", doc)
  assert methods_table.main(["--write"]) == 0
  assert doc.read_text() == f"# Title\n\nprose\n\n{methods_table.render()}\nafter\n"
  assert capsys.readouterr().out == "wrote the tables of methods.md\n"
  doc.write_text("no markers\n")
  with pytest.raises(UserError, match="must hold the line"):
    methods_table.replaced(doc.read_text())
