"""Hinton's KD on the logits (`kd`): `(1 - tau) CE(z_S, y) + tau t^2 KL(p_T^t || p_S^t)`;
with `standardize`, both logits z-scored per example before the softmax (logit
standardisation, Sun et al., CVPR 2024), `t` then being the base temperature."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import FRACTION, POSITIVE, Term, register


def kd(inputs, *, tau: float, temperature: float, standardize: bool):
  return losses.kd_logits(inputs.student_logits, inputs.teacher_logits, inputs.labels,
                          tau=tau, temperature=temperature, standardize=standardize)


register(Term(
    "kd", kd, needs=frozenset({"teacher_logits"}),
    params={"tau": 0.9, "temperature": 4.0, "standardize": False},
    # tau mixes CE and KL (a fraction); the temperature divides the logits.
    ranges={"tau": FRACTION, "temperature": POSITIVE},
    formula="(1 - tau) CE(z_S, y) + tau t^2 KL(softmax(z_T/t) || softmax(z_S/t)); "
    "standardize: z -> (z - mean z) / (std z + 1e-7) per example first",
    source="Hinton et al. 2015; tau 0.9, t 4: the JointRD release's KD(logits); "
    "standardize: Sun et al., CVPR 2024"))
