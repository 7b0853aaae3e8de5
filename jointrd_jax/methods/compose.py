"""From a method's name (and, optionally, a composition of terms and their settings) to a
`Method`: which terms, with which weights and hyper-parameters, which networks.

A term's weight and parameters, from the weakest to the strongest say: the term's own
defaults (`terms.Term`), the preset's (`presets.py`), `loss_params[term]` (the config's
`loss.<term>.<key>`; None = not set), and for the weight a `name:weight` in `terms`.

A setting counted in epochs (`Term.per_run`) is a fraction of the run, turned into epochs
here from `num_epochs` (the run's length), unless its absolute number of epochs is set.

`terms` (the config's `terms`): '' = the preset's terms; 'a,b:0.5' = exactly these;
'+b:0.5' = the preset's terms and these. E.g. `--config.method=jointrd
--config.terms=+dkd:0.5`: JointRD's loss plus half a DKD term on the student's logits.
"""
from typing import Mapping, Optional

import jax.numpy as jnp

from jointrd_jax import models
from jointrd_jax.errors import UserError
from jointrd_jax.methods import presets, terms as terms_lib
from jointrd_jax.methods.method import Method


def parse_terms(spec: str, preset: presets.Preset):
  """`[(term name, weight or None)]` of a `terms` string (see the module docstring)."""
  spec = (spec or "").strip()
  own = [(name, None) for name, _ in preset.term_entries()]
  if not spec:
    return own
  extend = spec.startswith("+")
  chosen = list(own) if extend else []
  for item in spec.lstrip("+").split(","):
    item = item.strip()
    if not item:
      continue
    name, _, weight = item.partition(":")
    name = name.strip()
    terms_lib.get(name)
    if any(name == n for n, _ in chosen):
      raise UserError(f"loss term {name!r} appears twice in terms {spec!r}; give each once.")
    if weight.strip():
      try:
        weight = float(weight)
      except ValueError:
        raise UserError(f"the weight {weight.strip()!r} of loss term {name!r} is not a number; "
                        f"write e.g. {name}:0.5.") from None
    chosen.append((name, weight if weight != "" else None))
  if not chosen:
    raise UserError(f"terms {spec!r} names no loss term; e.g. ce or +dkd:0.5.")
  return chosen


def resolve_terms(name: str, terms: str = "", loss_params: Optional[Mapping] = None,
                  num_epochs: Optional[int] = None):
  """The method's `terms.Weighted` terms (see the module docstring). Each setting is checked
  against its term's range, and a setting of a term the method does not have is refused.
  `num_epochs`: the run's, for the settings counted in epochs (None: no run; a term's
  absolute default applies, and a fraction set is refused)."""
  preset = presets.get_spec(name)
  own = dict(preset.term_entries())
  loss_params = loss_params or {}
  chosen = parse_terms(terms, preset)
  _refuse_unused(method_label(name, terms), {n for n, _ in chosen}, loss_params)
  out = []
  for term_name, spec_weight in chosen:
    term = terms_lib.get(term_name)
    given = {k: v for k, v in (loss_params.get(term_name) or {}).items() if v is not None}
    settings = {**own.get(term_name, {}), **given}
    unknown = sorted(set(settings) - set(term.params) - {"weight"})
    if unknown:
      raise UserError(f"loss term {term_name!r} has no setting {unknown[0]!r}; its settings: "
                      f"{', '.join(['weight', *term.params])}.")
    for key, value in given.items():
      term.check(key, value, f"--config.loss.{term_name}.{key}={value}")
    weight = settings.pop("weight", term.weight)
    if spec_weight is not None:
      term.check("weight", spec_weight, f"--config.terms={terms}")
      weight = spec_weight
    params, resolved = _per_run(term, own.get(term_name, {}), given,
                                {**term.params, **settings}, num_epochs)
    out.append(terms_lib.Weighted(term, float(weight), params, resolved))
  return tuple(out)


def _per_run(term, own: Mapping, given: Mapping, params: dict, num_epochs: Optional[int]):
  """`params` with each `per_run` fraction turned into its epochs, and how (`Weighted`)."""
  resolved = {}
  for frac, key in term.per_run.items():
    fraction = params.pop(frac)
    flag = f"--config.loss.{term.name}"
    if frac in given and key in given:
      raise terms_lib.SettingError(
          f"{flag}.{frac}={given[frac]} and {flag}.{key}={given[key]} both set {term.name}'s "
          f"{key}: set one, the fraction of the run (e.g. {flag}.{frac}=0.25 for a quarter) or "
          f"the absolute number of epochs (where the config file sets one, give that one).")
    if key in given or (frac not in given and key in own):
      resolved[key] = f"{params[key]:g} (set in epochs)"
    elif num_epochs is not None:
      params[key] = fraction * num_epochs
      resolved[key] = f"{params[key]:g} ({fraction:g} of {num_epochs} epochs)"
    elif frac in given:
      raise UserError(f"{flag}.{frac}={fraction} is a fraction of the run; give the run's "
                      "num_epochs to resolve it.")
  return params, resolved


def per_run_words(weighted) -> str:
  """The settings counted in epochs, resolved: e.g. 'jointrd.decay_epochs = 60 (0.3 of 200
  epochs)' ('' when none), for the run's log."""
  return "; ".join(f"{w.name}.{k} = {v}" for w in weighted for k, v in w.resolved.items())


def method_label(name: str, terms: str = "") -> str:
  """E.g. "method 'jointrd'", "method 'jointrd' with --config.terms=+kd", for messages."""
  return f"method {name!r}" + (f" with --config.terms={terms}" if (terms or "").strip() else "")


def _refuse_unused(label: str, chosen, loss_params: Mapping) -> None:
  """A setting (`loss.<term>.<key>` not None) of a term that the method (`label`) does not
  have would change nothing: refused, naming the fix."""
  for term_name, settings in sorted(loss_params.items()):
    for key, value in sorted((settings or {}).items()):
      if value is not None and term_name not in chosen:
        raise terms_lib.SettingError(
            f"--config.loss.{term_name}.{key}={value}: {label} has no {term_name} term, so "
            f"the setting would change nothing; add the term with "
            f"--config.terms=+{term_name} or drop the setting.")


def needs_teacher(name: str, terms: str = "") -> bool:
  """Whether the method (with `terms`) has a teacher: a term of it needs one."""
  return any(w.term.needs_teacher for w in resolve_terms(name, terms))


def build(name: str, *, arch: str, num_classes: int, width: int = 64, shortcuts: str = "",
          teacher_arch: str = "", teacher_width: int = 0,
          teacher_train: str = "frozen", dtype=jnp.float32, conv: str = "", terms: str = "",
          loss_params: Optional[Mapping] = None, num_epochs: Optional[int] = None) -> Method:
  """A `Method` for `name`; empty `shortcuts`/`conv` take the method's defaults.

  The teacher is always a ResNet (`shortcuts='all'`, plain convs) of `teacher_arch`
  (default: the student's arch) and `teacher_width` (default: the student's width); it
  exists when one of the method's terms needs it. `num_epochs`: the run's, for the
  settings counted in epochs (`resolve_terms`).
  """
  spec = presets.get_spec(name)
  if teacher_train not in presets.TEACHER_TRAIN:
    raise UserError(f"unknown teacher.train {teacher_train!r}; choose frozen or joint.")
  params = {}
  for t, p in (loss_params or {}).items():
    params.setdefault(t, {}).update({k: v for k, v in (p or {}).items() if v is not None})
  weighted = resolve_terms(name, terms, params, num_epochs)
  wants_teacher = any(w.term.needs_teacher for w in weighted)
  if wants_teacher and not spec.teacher:
    needy = next(w.name for w in weighted if w.term.needs_teacher)
    raise UserError(f"loss term {needy!r} needs a teacher, and method {name!r} trains without "
                    "one; start from a method with a teacher (e.g. kd_logits_dirac or jointrd) "
                    "and set its terms.")
  if teacher_train == "joint" and not any(w.name == "jointrd" for w in weighted):
    raise UserError(f"teacher.train='joint' is JointRD's option; method {name!r} uses a "
                    "frozen teacher.")
  student = models.build(arch, shortcuts or spec.student_shortcuts,
                         conv=conv or spec.student_conv, num_classes=num_classes,
                         width=width, dtype=dtype)
  teacher = None
  if wants_teacher:
    teacher = models.build(teacher_arch or arch, "all", conv="none", num_classes=num_classes,
                           width=teacher_width or width, dtype=dtype)
    if any(w.term.needs & {"teacher_feats", "hybrid_logits"} for w in weighted) and (
        student.stage_channels() != teacher.stage_channels()):
      raise UserError(
          f"{name} needs the student's and teacher's stage outputs to have the same shapes; "
          f"student {arch} width {width} has {student.stage_channels()}, teacher "
          f"{teacher_arch or arch} width {teacher_width or width} has "
          f"{teacher.stage_channels()}; pair archs of equal stages (e.g. resnet32x4 and a plain "
          "resnet32x4) or use a logit method (e.g. kd_logits).")
  return Method(name, student, teacher, teacher_train, weighted, num_epochs)
