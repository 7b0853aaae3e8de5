"""Loss terms: pure functions registered by name, each declaring what it needs.

A term is `fn(inputs, **params) -> (loss, metrics)`: arrays in (`Inputs`, of which it reads
only what it declares in `needs`), a float32 scalar and a dict of float32 scalar metrics out
(its own un-weighted loss under 'loss'). A method is a student network plus weighted terms
(`presets.py`); the train step computes only what its terms need (`method.py`):

- always: the student's logits and the labels;
- `student_feats`: the student's four pre-ReLU stage outputs;
- `teacher_logits`, `teacher_feats`: the frozen teacher's forward pass on the batch;
- `hybrid_logits`: JointRD's hybrid paths (the student's stage k through the teacher's
  stages k+1..4 and head, k = 1..3);
- `epoch`: the 0-based epoch (an int32 scalar, constant within an epoch).

A setting counted in epochs scales with the run: `per_run` pairs its fraction of the run
(`fraction` key, in (0, 1]) with its absolute number of epochs (the `fn` argument). The
fraction applies unless the absolute one is set (the override; setting both is refused);
`compose.resolve_terms` turns it into epochs once, from the run's `num_epochs`.

Each module of this package registers its terms (`register`); hyper-parameters are the
keyword arguments of `fn` with their defaults in `params` (config keys `loss.<term>.<param>`,
and `loss.<term>.weight` for the term's weight in the sum). Each numeric setting declares its
valid `Range` in `ranges` (a term without one is refused when it registers), the weight
too (`weight_range`, default `NON_NEGATIVE`); `check` applies them before any work.
"""
import dataclasses
import math
import numbers
from typing import Any, Callable, Mapping, Optional, Tuple

import jax

from jointrd_jax.errors import UserError
from jointrd_jax.registry import Registry

Array = jax.Array
NEEDS = ("student_feats", "teacher_logits", "teacher_feats", "hybrid_logits", "epoch")
TEACHER_NEEDS = frozenset({"teacher_logits", "teacher_feats", "hybrid_logits"})


class SettingError(UserError):
  """A term setting out of its range; the message names the config key."""


@dataclasses.dataclass(frozen=True)
class Range:
  """The finite values from `low` to `high`, each end included unless `*_open`."""
  low: float = -math.inf
  high: float = math.inf
  low_open: bool = False
  high_open: bool = False

  def __contains__(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
      return False
    if not math.isfinite(value):
      return False
    above = value > self.low if self.low_open else value >= self.low
    below = value < self.high if self.high_open else value <= self.high
    return above and below

  def describe(self) -> str:
    """E.g. 'finite and > 0', 'in [0, 1]'."""
    if math.isfinite(self.low) and math.isfinite(self.high):
      return (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
              f"{')' if self.high_open else ']'}")
    if math.isfinite(self.low):
      return f"finite and {'>' if self.low_open else '>='} {self.low:g}"
    if math.isfinite(self.high):
      return f"finite and {'<' if self.high_open else '<='} {self.high:g}"
    return "finite"


POSITIVE = Range(0.0, low_open=True)       # e.g. a temperature
NON_NEGATIVE = Range(0.0)                  # e.g. a weight
FRACTION = Range(0.0, 1.0)                 # e.g. a mixing coefficient
AT_LEAST_ONE = Range(1.0)                  # e.g. a number of epochs that divides
RUN_FRACTION = Range(0.0, 1.0, low_open=True)  # a fraction of the run's epochs (`per_run`)


@dataclasses.dataclass(frozen=True)
class Inputs:
  """What the step computed for a batch; a term reads only what it declared."""
  student_logits: Array
  labels: Array
  student_feats: Optional[Tuple[Array, ...]] = None
  teacher_logits: Optional[Array] = None
  teacher_feats: Optional[Tuple[Array, ...]] = None
  hybrid_logits: Optional[Tuple[Array, ...]] = None
  epoch: Optional[Array] = None


@dataclasses.dataclass(frozen=True)
class Term:
  """A registered loss term (see the module docstring)."""
  name: str
  fn: Callable[..., Tuple[Array, dict]]
  needs: frozenset = frozenset()
  params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  weight: float = 1.0          # its weight in a method's sum unless the method says
  formula: str = ""            # one line, for the README's and docs' tables
  source: str = ""             # where the formula and its defaults come from
  ranges: Mapping[str, Range] = dataclasses.field(default_factory=dict)  # numeric params
  weight_range: Range = NON_NEGATIVE
  per_run: Mapping[str, str] = dataclasses.field(default_factory=dict)  # fraction -> epochs

  def __post_init__(self):
    for frac, epochs in self.per_run.items():
      if {frac, epochs} - set(self.params) or self.ranges.get(frac) != RUN_FRACTION:
        raise ValueError(f"term {self.name!r}: per_run pairs two of its settings, the "
                         f"fraction with range RUN_FRACTION; got {frac!r}, {epochs!r}")
    unknown = set(self.needs) - set(NEEDS)
    if unknown:
      raise ValueError(f"term {self.name!r} needs unknown inputs {sorted(unknown)}")
    numeric = {k for k, v in self.params.items() if not isinstance(v, bool)}
    if set(self.ranges) != numeric:
      raise ValueError(f"term {self.name!r}: declare a Range in `ranges` for each numeric "
                       f"setting ({sorted(numeric)}), none for others; got {sorted(self.ranges)}")
    bad = [k for k, r in {**self.ranges, "weight": self.weight_range}.items()
           if {**self.params, "weight": self.weight}[k] not in r]
    if bad:
      raise ValueError(f"term {self.name!r}: the default of {bad[0]!r} is outside its range")

  def check(self, key: str, value, where: str) -> None:
    """Refuses `value` of setting `key` ('weight' or a param) outside its range, naming
    `where` (how the user set it, e.g. '--config.loss.kd.temperature=0')."""
    r = self.weight_range if key == "weight" else self.ranges.get(key)
    if r is not None and value not in r:
      raise SettingError(f"{where}: the {key} of loss term {self.name!r} must be "
                         f"{r.describe()}.")

  @property
  def needs_teacher(self) -> bool:
    return bool(self.needs & TEACHER_NEEDS)


TERMS = Registry("loss term")
get = TERMS.get


def register(term: Term) -> Term:
  return TERMS.register(term.name, term)


@dataclasses.dataclass(frozen=True)
class Weighted:
  """A term of a method: the term, its weight and its hyper-parameters, resolved."""
  term: Term
  weight: float
  params: Mapping[str, Any]
  # How each `per_run` setting was resolved, e.g. {'decay_epochs': '0.3 of 200 epochs'}.
  resolved: Mapping[str, str] = dataclasses.field(default_factory=dict)

  @property
  def name(self) -> str:
    return self.term.name

  def __call__(self, inputs: Inputs):
    return self.term.fn(inputs, **self.params)


def combine(weighted, inputs: Inputs):
  """`(sum_i w_i L_i, metrics)`: each term's metrics (names kept; a name two terms share
  gets the later term's name as prefix), each term's un-weighted loss under its own name
  when there are several, and the total under 'loss'."""
  total, metrics = None, {}
  for w in weighted:
    loss, m = w(inputs)
    m = dict(m)
    own = m.pop("loss")
    if len(weighted) > 1:
      m.setdefault(w.name, own)
    for key, value in m.items():
      metrics[key if key not in metrics else f"{w.name}_{key}"] = value
    term_loss = w.weight * loss
    total = term_loss if total is None else total + term_loss
  metrics["loss"] = total
  return total, metrics
