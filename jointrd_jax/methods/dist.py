"""DIST (`dist`, Huang et al., NeurIPS 2022): `tau^2 (beta inter + gamma intra)`, one minus
the Pearson correlation of the student's and teacher's softmax(z / tau), per example over
the classes (inter) and per class over the batch (intra); weight 2 beside CE as the
reference's CIFAR recipe."""
from jointrd_jax import losses
from jointrd_jax.methods.terms import NON_NEGATIVE, POSITIVE, Term, register


def dist(inputs, *, beta: float, gamma: float, tau: float):
  return losses.dist(inputs.student_logits, inputs.teacher_logits, beta=beta, gamma=gamma,
                     tau=tau)


register(Term(
    "dist", dist, needs=frozenset({"teacher_logits"}),
    params={"beta": 1.0, "gamma": 1.0, "tau": 4.0}, weight=2.0,
    # beta, gamma weigh the inter and intra terms; tau divides the logits.
    ranges={"beta": NON_NEGATIVE, "gamma": NON_NEGATIVE, "tau": POSITIVE},
    formula="tau^2 [beta (1 - mean_i pearson(P_S[i,:], P_T[i,:])) + gamma (1 - mean_c "
    "pearson(P_S[:,c], P_T[:,c]))], P = softmax(z/tau) (weight 2)",
    source="Huang et al., NeurIPS 2022; hunto/image_classification_sota "
    "configs/strategies/distill/dist_cifar.yaml"))
