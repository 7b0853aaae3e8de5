"""What a run trains, in words: its name, table label and description, derived from the
preset and what the config changes (the loss terms, a term's weight or setting, the
student's shortcut policy or conv kind, a jointly trained teacher).

`of_method` is the one function; `of_config` (a config or config.json) and `of_run`
(a workdir's config.json and summary.json) resolve what a run trains and call it. Every
place that names a run uses these: the training log, summary.json, results.md/csv/png,
the learning-curve plot, an export's lines and its model card. A run of an unchanged
preset keeps the preset's name, label and description; a changed one is named
`preset + changes` (e.g. `kd_logits_dirac + terms ce,dist`) and described from parts.
"""
import dataclasses
from typing import Mapping, Sequence, Tuple

from jointrd_jax import workdir as workdir_lib
from jointrd_jax.methods import compose, presets, terms as terms_lib

# A conv kind (`models.CONVS`) as an adjective of the network.
CONV_WORDS = {"none": "plain", "init": "Dirac-initialised", "reparam": "Dirac",
              "repvgg": "RepVGG-style"}
# summary.json's fields of a run's identity (beside 'method', the preset).
SUMMARY_FIELDS = ("name", "label", "description", "changes", "role")


@dataclasses.dataclass(frozen=True)
class Identity:
  method: str                 # the preset
  changes: Tuple[str, ...]    # what the config changes, e.g. ('terms ce,dist', 'conv repvgg')
  label: str                  # the table label
  description: str
  role: str                   # the trained network's: 'student' (has a teacher) or 'network'

  @property
  def name(self) -> str:
    return " + ".join([self.method, ", ".join(self.changes)] if self.changes else [self.method])

  def as_summary(self) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in ((f, getattr(self, f)) for f in SUMMARY_FIELDS)}


def network_words(shortcuts: str, conv: str, role: str) -> str:
  """'Dirac student', 'plain CNN', 'RepVGG-style student (no shortcuts)', 'ResNet (with
  shortcuts)', 'ResNet teacher (with shortcuts)': a network by its shortcuts, conv and role
  ('student', 'teacher' or 'network': trained without a teacher)."""
  kind = CONV_WORDS.get(conv, f"{conv}-conv")
  if shortcuts == "all":
    noun = "ResNet" if role == "network" else f"ResNet {role}"
    return f"{noun} (with shortcuts" + ("" if conv == "none" else f", {kind} convs") + ")"
  noun = "plain CNN" if role == "network" else role
  words = noun if (conv == "none" and role == "network") else f"{kind} {noun}"
  return words + (" (no shortcuts)" if shortcuts == "none" else "")


def loss_words(weighted: Sequence[terms_lib.Weighted]) -> str:
  """The loss as a sum, e.g. 'ce + 0.001 mse_all'."""
  return " + ".join(w.name if w.weight == 1 else f"{w.weight:g} {w.name}" for w in weighted)


def _value(v) -> str:
  return f"{v:g}" if isinstance(v, float) else str(v)


def term_changes(method: str, weighted: Sequence[terms_lib.Weighted]) -> list:
  """What `weighted` changes of the preset's loss: 'terms a,b:0.5' when the list of terms
  differs, then each weight ('kd.weight=0.5', unless in the list) and setting
  ('kd.temperature=2') that differs from the preset's value for that term."""
  names = [w.name for w in weighted]
  natural = compose.resolve_terms(method, ",".join(names))  # these terms, nothing set
  out = []
  listed = names != [w.name for w in compose.resolve_terms(method)]
  if listed:
    out.append("terms " + ",".join(w.name if w.weight == n.weight else f"{w.name}:{w.weight:g}"
                                   for w, n in zip(weighted, natural)))
  for w, n in zip(weighted, natural):
    if not listed and w.weight != n.weight:
      out.append(f"{w.name}.weight={w.weight:g}")
    out += [f"{w.name}.{k}={_value(v)}" for k, v in sorted(w.params.items())
            if v != n.params.get(k)]
  return out


def of_method(method: str, weighted: Sequence[terms_lib.Weighted], shortcuts: str, conv: str,
              teacher_train: str = "frozen") -> Identity:
  """The identity of a run of preset `method` that trains a student of `shortcuts` and
  `conv` with the resolved loss terms `weighted`."""
  preset = presets.get_spec(method)
  changes = term_changes(method, weighted)
  if shortcuts != preset.student_shortcuts:
    changes.append(f"shortcuts {shortcuts}")
  if conv != preset.student_conv:
    changes.append(f"conv {conv}")
  teacher = any(w.term.needs_teacher for w in weighted)
  if teacher and teacher_train != "frozen":
    changes.append(f"teacher.train {teacher_train}")
  role = "student" if teacher else "network"
  loss = loss_words(weighted)
  if not changes:
    return Identity(method, (), preset.label or method, f"{preset.description}; loss {loss}",
                    role)
  how = ("trained from scratch (no teacher)" if not teacher else
         "distilled from a frozen ResNet teacher" if teacher_train == "frozen" else
         f"distilled from a ResNet teacher (teacher.train {teacher_train})")
  base = preset.label or method
  return Identity(
      method, tuple(changes), f"{base}, changed: {', '.join(changes)}",
      f"{base} changed ({', '.join(changes)}): {network_words(shortcuts, conv, role)} {how}; "
      f"loss {loss}", role)


def of_built(m) -> Identity:
  """The identity of a built `Method` (`compose.build`)."""
  return of_method(m.name, m.terms, m.student.shortcuts, m.student.conv, m.teacher_train)


def _get(cfg: Mapping, *keys, default=""):
  for k in keys[:-1]:
    cfg = cfg.get(k) or {}
  return cfg.get(keys[-1], default) or default


def of_config(config) -> Identity:
  """The identity of a run of `config` (a ConfigDict, or config.json as a dict)."""
  cfg = config.to_dict() if hasattr(config, "to_dict") else workdir_lib.migrate(dict(config))
  method = cfg.get("method") or ""
  preset = presets.get_spec(method)
  weighted = compose.resolve_terms(method, _get(cfg, "terms"), cfg.get("loss") or {})
  conv = _get(cfg, "model", "conv") or _get(cfg, "model", "dirac") or preset.student_conv
  return of_method(method, weighted, _get(cfg, "model", "shortcuts") or preset.student_shortcuts,
                   conv, _get(cfg, "teacher", "train", default="frozen"))


def of_run(cfg: Mapping, summary) -> Identity:
  """A finished or stopped run's identity: as its summary.json records it, else derived
  from its config.json (`cfg`; a summary of an earlier version records none)."""
  if summary and all(f in summary for f in SUMMARY_FIELDS):
    return Identity(summary["method"], tuple(summary["changes"]), summary["label"],
                    summary["description"], summary["role"])
  return of_config(cfg)
