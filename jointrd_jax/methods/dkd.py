"""Decoupled KD (`dkd`, Zhao et al., CVPR 2022): `w(e) T^2 (alpha TCKD + beta NCKD)`,
target-class and non-target-class KD at temperature T, with the reference's linear warm-up
`w(e) = min((e + 1) / W, 1)` (e: our 0-based epoch). The CE beside it is a `ce` term."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import (AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, RUN_FRACTION,
                                       Term, register)


def dkd(inputs, *, alpha: float, beta: float, temperature: float, warmup_epochs: int,
        standardize: bool):
  loss, metrics = losses.dkd(inputs.student_logits, inputs.teacher_logits, inputs.labels,
                             alpha=alpha, beta=beta, temperature=temperature,
                             standardize=standardize)
  w = losses.dkd_warmup(inputs.epoch, warmup_epochs)
  return w * loss, dict(metrics, loss=w * loss, dkd_warmup=w)


register(Term(
    "dkd", dkd, needs=frozenset({"teacher_logits", "epoch"}),
    # W: warmup_fraction of the run (0.1: 20 of the CIFAR recipe's 200 epochs; mdistiller's
    # 20 of 240 would be 0.083), unless warmup_epochs (absolute) is set; the 20 applies only
    # where no run length is known.
    params={"alpha": 1.0, "beta": 8.0, "temperature": 4.0, "warmup_fraction": 0.1,
            "warmup_epochs": 20, "standardize": False},
    # alpha, beta weigh two KL terms; T divides the logits; W divides the epoch (1 = none).
    ranges={"alpha": NON_NEGATIVE, "beta": NON_NEGATIVE, "temperature": POSITIVE,
            "warmup_fraction": RUN_FRACTION, "warmup_epochs": AT_LEAST_ONE},
    per_run={"warmup_fraction": "warmup_epochs"},
    formula="min((e+1)/W, 1) T^2 (alpha KL(b_T || b_S) + beta KL(q_T || q_S)); b: target vs "
    "rest, q: softmax over the non-target classes",
    source="Zhao et al., CVPR 2022; mdistiller mdistiller/engine/cfg.py CFG.DKD (CIFAR-100)"))
