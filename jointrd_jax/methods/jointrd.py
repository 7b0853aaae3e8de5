"""Residual Distillation (`jointrd`): `1/4 [m(e) sum_{k=1..3} CE(z_Hk, y) + CE(z_S, y)]`,
z_Hk the hybrid paths' logits, `m(e) = dc + (1 - dc) (1 + cos(pi min(e, E) / E)) / 2`."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import AT_LEAST_ONE, FRACTION, RUN_FRACTION, Term, register


def jointrd(inputs, *, dc: float, decay_epochs: int):
  m = losses.jointrd_weight(inputs.epoch, dc, decay_epochs)
  return losses.jointrd(inputs.student_logits, inputs.hybrid_logits, inputs.labels, m)


register(Term(
    "jointrd", jointrd, needs=frozenset({"hybrid_logits", "epoch"}),
    # E: decay_fraction of the run (0.3: 60 of the CIFAR recipe's 200 epochs), unless
    # decay_epochs (absolute) is set; the 60 applies only where no run length is known.
    params={"dc": 0.5, "decay_fraction": 0.3, "decay_epochs": 60},
    # m(e) decays from 1 to dc (a fraction); E divides the epoch.
    ranges={"dc": FRACTION, "decay_fraction": RUN_FRACTION, "decay_epochs": AT_LEAST_ONE},
    per_run={"decay_fraction": "decay_epochs"},
    formula="1/4 [m(e) sum_{k=1..3} CE(z_Hk, y) + CE(z_S, y)], "
    "m(e) = dc + (1 - dc)(1 + cos(pi min(e, E)/E))/2",
    source="Li et al., NeurIPS 2020; dc 0.5 (CIFAR), 5e-3 (ImageNet), E 60 epochs: the "
    "release (0.3 of 200 epochs on CIFAR, 0.5 of 120 on ImageNet)"))
