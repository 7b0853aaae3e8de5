"""Feature distillation on the stage outputs (`mse_all`, the release's KD(MSE_ALL)):
`sum_k sum_{h,w,c} (s_k - t_k)^2 / B` over the four pre-ReLU stage outputs; weighted by
alpha = 1e-3 (its default weight)."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import Term, register


def mse_all(inputs):
  return losses.feature_mse_all(inputs.student_feats, inputs.teacher_feats)


register(Term(
    "mse_all", mse_all, needs=frozenset({"student_feats", "teacher_feats"}), weight=1e-3,
    formula="sum_k sum_hwc (s_k - t_k)^2 / B over the 4 pre-ReLU stage outputs (weight "
    "alpha = 1e-3)", source="the JointRD release's KD(MSE_ALL)"))
