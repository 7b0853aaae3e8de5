"""What a run trains, in words: its name, table label and description, derived from the
preset and what the config changes (the loss terms, a term's weight or setting, the
student's shortcut policy or conv kind, a jointly trained teacher).

`of_method` is the one function; `of_config` (a config or config.json) and `of_run`
(a workdir's config.json and summary.json) resolve what a run trains and call it. Every
place that names a run uses these: the training log, summary.json, results.md/csv/png,
the learning-curve plot, an export's lines and its model card. A run of an unchanged
preset keeps the preset's name, label and description; a changed one is named
`preset + changes` (e.g. `kd_logits_dirac + terms ce,dist`) and described from parts.

"Unchanged" is measured against the preset's own config file under the run's recipe
(`preset_file`): configs/<method>.py for the CIFAR recipe, configs/imagenet/<method>.py
for the ImageNet one, whose loss settings differ (e.g. JointRD's dc 5e-3).
"""
import dataclasses
import functools
import importlib
from typing import Mapping, Optional, Sequence, Tuple

from jointrd_jax import compat, models
from jointrd_jax.datasets import sources
from jointrd_jax.methods import compose, presets, terms as terms_lib
from jointrd_jax.training import workdir as workdir_lib

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


def term_changes(method: str, weighted: Sequence[terms_lib.Weighted], terms: str = "",
                 loss: Optional[Mapping] = None, epochs: Sequence = (None,)) -> list:
  """What `weighted` changes of the preset's loss (its `terms` and `loss` settings, those of
  its config file; none: the preset's alone): 'terms a,b:0.5' when the list of terms
  differs, then each weight ('kd.weight=0.5', unless in the list) and setting
  ('kd.temperature=2') that differs from the preset's value for that term. A setting counted
  in epochs is the preset's when it equals the preset's resolved for one of `epochs` (the
  run's: a fraction of the run; the recipe's: the same number of epochs)."""
  names = [w.name for w in weighted]
  # These terms, as the preset, for each run length.
  naturals = [compose.resolve_terms(method, ",".join(names), loss, n) for n in epochs]
  natural = naturals[0]
  out = []
  listed = names != [w.name for w in compose.resolve_terms(method, terms, loss, epochs[0])]
  if listed:
    out.append("terms " + ",".join(w.name if w.weight == n.weight else f"{w.name}:{w.weight:g}"
                                   for w, n in zip(weighted, natural)))
  for i, (w, n) in enumerate(zip(weighted, natural)):
    if not listed and w.weight != n.weight:
      out.append(f"{w.name}.weight={w.weight:g}")
    at = [ns[i].params for ns in naturals]
    out += [f"{w.name}.{k}={_value(v)}" for k, v in sorted(w.params.items())
            if all(v != p.get(k) for p in at)]
  return out


def of_method(method: str, weighted: Sequence[terms_lib.Weighted], shortcuts: str, conv: str,
              teacher_train: str = "frozen", base: Optional[Mapping] = None,
              num_epochs: Optional[int] = None) -> Identity:
  """The identity of a run of preset `method` that trains a student of `shortcuts` and
  `conv` with the resolved loss terms `weighted`, compared with `base`: the preset's own
  config under the run's recipe, as a dict (`preset_config`); None: the preset as
  presets.py defines it, nothing set. `num_epochs`: the run's (`term_changes`)."""
  preset = presets.get_spec(method)
  base = base or {}
  changes = term_changes(method, weighted, _get(base, "terms"), base.get("loss") or {},
                         (num_epochs, base.get("num_epochs")))
  if shortcuts != (_get(base, "model", "shortcuts") or preset.student_shortcuts):
    changes.append(f"shortcuts {shortcuts}")
  if conv != (_conv(base) or preset.student_conv):
    changes.append(f"conv {conv}")
  teacher = any(w.term.needs_teacher for w in weighted)
  if teacher and teacher_train != _get(base, "teacher", "train", default="frozen"):
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


def of_built(m, base: Optional[Mapping] = None) -> Identity:
  """The identity of a built `Method` (`compose.build`), compared with `base` (`of_method`)."""
  return of_method(m.name, m.terms, m.student.shortcuts, m.student.conv, m.teacher_train,
                   base, m.num_epochs)


def _get(cfg: Mapping, *keys, default=""):
  for k in keys[:-1]:
    cfg = cfg.get(k) or {}
  return cfg.get(keys[-1], default) or default


def _conv(cfg: Mapping) -> str:
  return compat.conv_of_model(cfg.get("model") or {})


def is_imagenet_recipe(cfg: Mapping) -> bool:
  """Whether a run (its config as a dict) follows the ImageNet recipe (configs/imagenet/):
  streamed data, as its data source says for its arch (`datasets.sources`: imagefolder:PATH,
  imagenet2012, or synthetic with an imagenet_* arch, as configs/imagenet/default.py sets)."""
  dataset = str(cfg.get("dataset") or "")
  arch = models.ARCHS.get((cfg.get("model") or {}).get("arch"))
  return bool(dataset) and sources.get(dataset).streamed(arch[0] if arch else None)


def preset_file(method: str, imagenet: bool) -> str:
  """The config file of preset `method` under a recipe: 'configs/<method>.py' (CIFAR) or
  'configs/imagenet/<method>.py' (ImageNet, `imagenet`), relative to the project's root."""
  return f"configs/{'imagenet/' if imagenet else ''}{method}.py"


def preset_config(method: str, imagenet: bool):
  """Preset `method`'s own config under a recipe (a new ConfigDict): its file
  (`preset_file`) without overrides; for a preset without one, its recipe's default.py
  with `method` set."""
  module = preset_file(method, imagenet)[:-len(".py")].replace("/", ".")
  try:
    get_config = importlib.import_module(module).get_config
  except ModuleNotFoundError as e:
    if e.name != module:
      raise
    get_config = importlib.import_module(module.rsplit(".", 1)[0] + ".default").get_config
  c = get_config()
  c.method = method
  return c


@functools.lru_cache(maxsize=None)
def _base(method: str, imagenet: bool) -> dict:
  return preset_config(method, imagenet).to_dict()  # read only: cached


def of_config(config) -> Identity:
  """The identity of a run of `config` (a ConfigDict, or config.json as a dict), compared
  with its preset's own config under its recipe (`preset_config`)."""
  cfg = config.to_dict() if hasattr(config, "to_dict") else workdir_lib.migrate(dict(config))
  method = cfg.get("method") or ""
  preset = presets.get_spec(method)
  num_epochs = cfg.get("num_epochs")
  weighted = compose.resolve_terms(method, _get(cfg, "terms"), cfg.get("loss") or {},
                                   num_epochs)
  return of_method(method, weighted, _get(cfg, "model", "shortcuts") or preset.student_shortcuts,
                   _conv(cfg) or preset.student_conv,
                   _get(cfg, "teacher", "train", default="frozen"),
                   _base(method, is_imagenet_recipe(cfg)), num_epochs)


def of_run(cfg: Mapping, summary) -> Identity:
  """A finished or stopped run's identity: as its summary.json records it, else derived
  from its config.json (`cfg`; a summary of an earlier version records none)."""
  if summary and all(f in summary for f in SUMMARY_FIELDS):
    return Identity(summary["method"], tuple(summary["changes"]), summary["label"],
                    summary["description"], summary["role"])
  return of_config(cfg)
