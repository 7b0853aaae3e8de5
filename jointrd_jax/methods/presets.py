"""The named methods: each a student network and its weighted loss terms.

A preset line: the student's shortcut policy and conv kind, its terms (a term name, or
`(name, {param or 'weight': value})` for a preset's own defaults of that term), whether it
has a teacher, a label for tables, and the paper's Table 12 number where the paper has one
(CIFAR-100, plain-CNN 50, mean and std over seeds). Config keys override any term's weight
and parameters (`loss.<term>.<key>`), and `terms` changes or extends the list.
"""
import dataclasses
from typing import Any, Mapping, Optional, Tuple, Union

from jointrd_jax.registry import Registry

TermEntry = Union[str, Tuple[str, Mapping[str, Any]]]


@dataclasses.dataclass(frozen=True)
class Preset:
  student_shortcuts: str
  student_conv: str
  terms: Tuple[TermEntry, ...]
  description: str
  teacher: bool = False
  label: str = ""
  paper_top1: Optional[Tuple[float, float]] = None

  @property
  def needs_teacher(self) -> bool:
    return self.teacher

  def term_entries(self):
    """`[(name, {overrides})]`."""
    return [(t, {}) if isinstance(t, str) else (t[0], dict(t[1])) for t in self.terms]


P = Preset
METHODS = Registry("method", {
    # The methods of the paper's Table 12 and beside it.
    "resnet": P("all", "none", ("ce",), "the ResNet baseline (also how every teacher is "
                "trained)", label="ResNet (with shortcuts)", paper_top1=(78.39, 0.40)),
    "plain": P("projection", "none", ("ce",), "plain CNN from scratch",
               label="Plain CNN, from scratch"),
    "plain_dirac": P("projection", "reparam", ("ce",), "plain CNN + Dirac, from scratch",
                     label="Plain CNN + Dirac, from scratch"),
    "kd_logits": P("projection", "none", ("kd",), "Hinton KD from the ResNet teacher",
                   teacher=True, label="KD(logits)"),
    "kd_logits_dirac": P("projection", "reparam", ("kd",), "Hinton KD, Dirac student",
                         teacher=True, label="KD(logits) + Dirac", paper_top1=(70.93, 3.36)),
    "kd_mse_all_dirac": P("projection", "reparam", ("ce", "mse_all"),
                          "CE + MSE on all 4 stage outputs, Dirac student", teacher=True,
                          label="KD(MSE_ALL) + Dirac", paper_top1=(63.82, 9.97)),
    "jointrd": P("projection", "reparam", ("jointrd",),
                 "Residual Distillation: student stages through the teacher's later stages",
                 teacher=True, label="JointRD (ours)", paper_top1=(78.16, 0.20)),
    # The strongest logit losses of today's distillation toolkits, Dirac students, each with
    # its paper's CIFAR-100 recipe (docs/method.md §10).
    "dkd_dirac": P("projection", "reparam", ("ce", "dkd"), "CE + decoupled KD (DKD), Dirac "
                   "student", teacher=True, label="DKD + Dirac"),
    "dist_dirac": P("projection", "reparam", ("ce", "dist"), "CE + DIST (relations of the "
                    "softmax outputs), Dirac student", teacher=True, label="DIST + Dirac"),
    "kd_ls_dirac": P("projection", "reparam",
                     (("ce", {"weight": 0.1}),
                      ("kd", {"weight": 9.0, "tau": 1.0, "temperature": 2.0,
                              "standardize": True})),
                     "KD on standardised logits (logit standardisation), Dirac student",
                     teacher=True, label="KD + logit std. + Dirac"),
    # DKD on standardised logits as the logit-standardisation authors ran it: alpha and beta
    # times their KD weight 9, base temperature 2 (DKD's CE weight 1 and warm-up kept).
    "dkd_ls_dirac": P("projection", "reparam",
                      ("ce", ("dkd", {"alpha": 9.0, "beta": 72.0, "temperature": 2.0,
                                      "standardize": True})),
                      "CE + DKD on standardised logits (logit standardisation), Dirac student",
                      teacher=True, label="DKD + logit std. + Dirac"),
    "jointrd_dkd": P("projection", "reparam", ("jointrd", "dkd"), "JointRD's loss plus a DKD "
                     "term on the student's logits", teacher=True, label="JointRD + DKD"),
    # RepVGG-style students (models/repvgg.py): 3x3 conv + BN, 1x1 conv + BN, identity BN.
    "plain_repvgg": P("projection", "repvgg", ("ce",), "plain CNN, RepVGG-style 3x3 convs, "
                      "from scratch", label="Plain CNN + RepVGG, from scratch"),
    "kd_logits_repvgg": P("projection", "repvgg", ("kd",), "Hinton KD, RepVGG-style student",
                          teacher=True, label="KD(logits) + RepVGG"),
    "jointrd_repvgg": P("projection", "repvgg", ("jointrd",), "Residual Distillation into a "
                        "RepVGG-style student", teacher=True, label="JointRD + RepVGG"),
})
TEACHER_TRAIN = ("frozen", "joint")
# The teacher's config settings (`teacher.*`) unset: where a method without one leaves them.
TEACHER_UNSET = {"checkpoint": "", "arch": "", "width": 0, "train": "frozen", "fold": True}


get_spec = METHODS.get  # the preset of a method name
