"""DIST (`dist`, Huang et al., NeurIPS 2022): `tau^2 (beta inter + gamma intra)`, one minus
the Pearson correlation of the student's and teacher's softmax(z / tau), per example over
the classes (inter) and per class over each group of `intra_group` images (intra): the
reference computes it per process, 64 images on one GPU on CIFAR (the default here), 32 per
GPU on ImageNet (configs/imagenet/dist_dirac.py); a batch of at most `intra_group` images
is one group. Weight 2 beside CE as the reference's CIFAR recipe."""
from jointrd_jax.methods import losses
from jointrd_jax.methods.terms import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, Term, register


def dist(inputs, *, beta: float, gamma: float, tau: float, intra_group: int):
  return losses.dist(inputs.student_logits, inputs.teacher_logits, beta=beta, gamma=gamma,
                     tau=tau, intra_group=intra_group)


register(Term(
    "dist", dist, needs=frozenset({"teacher_logits"}),
    params={"beta": 1.0, "gamma": 1.0, "tau": 4.0, "intra_group": 64}, weight=2.0,
    # beta, gamma weigh the inter and intra terms; tau divides the logits; intra_group is a
    # number of images (run_setup.check_groups: it divides the batch or holds all of it).
    ranges={"beta": NON_NEGATIVE, "gamma": NON_NEGATIVE, "tau": POSITIVE,
            "intra_group": AT_LEAST_ONE},
    formula="tau^2 [beta (1 - mean_i pearson(P_S[i,:], P_T[i,:])) + gamma (1 - mean_c "
    "pearson(P_S[g,c], P_T[g,c]))], P = softmax(z/tau), g: groups of intra_group images "
    "(weight 2)",
    source="Huang et al., NeurIPS 2022; hunto/image_classification_sota "
    "configs/strategies/distill/dist_cifar.yaml; intra_group: its per-GPU batch (64 on CIFAR)"))
