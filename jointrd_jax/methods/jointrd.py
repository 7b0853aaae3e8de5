"""Residual Distillation (`jointrd`): `1/4 [m(e) sum_{k=1..3} CE(z_Hk, y) + CE(z_S, y)]`,
z_Hk the hybrid paths' logits, `m(e) = dc + (1 - dc) (1 + cos(pi min(e, E) / E)) / 2`."""
from jointrd_jax import losses
from jointrd_jax.methods.terms import AT_LEAST_ONE, FRACTION, Term, register


def jointrd(inputs, *, dc: float, decay_epochs: int):
  m = losses.jointrd_weight(inputs.epoch, dc, decay_epochs)
  return losses.jointrd(inputs.student_logits, inputs.hybrid_logits, inputs.labels, m)


register(Term(
    "jointrd", jointrd, needs=frozenset({"hybrid_logits", "epoch"}),
    params={"dc": 0.5, "decay_epochs": 60},
    # m(e) decays from 1 to dc (a fraction); E divides the epoch.
    ranges={"dc": FRACTION, "decay_epochs": AT_LEAST_ONE},
    formula="1/4 [m(e) sum_{k=1..3} CE(z_Hk, y) + CE(z_S, y)], "
    "m(e) = dc + (1 - dc)(1 + cos(pi min(e, E)/E))/2",
    source="Li et al., NeurIPS 2020; dc 0.5 (CIFAR), 5e-3 (ImageNet), E 60: the release"))
