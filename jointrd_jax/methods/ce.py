"""The cross-entropy term: `CE(z_S, y)`, the batch mean of the softmax cross-entropy."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import Term, register


def ce(inputs):
  return losses.cross_entropy(inputs.student_logits, inputs.labels)


register(Term("ce", ce, formula="CE(z_S, y)", source="-"))
