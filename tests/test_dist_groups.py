"""DIST's intra-class term over groups of the batch (`intra_group`, the reference's per-GPU
batch): checked against a per-group NumPy transcription of the paper's formula in float64,
with the float32 bounds of tests/logit_refs.py; and the run's check of the group size."""
import functools
import math

import chex
import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jointrd_jax import methods
from jointrd_jax.methods import losses
from jointrd_jax.training import run_setup
from jointrd_jax.errors import UserError
from logit_refs import (SETTINGS, U32, dist_bounds, draw, lim_st, ref_dist, seed_st, temp_st)
from tests.run_helpers import preset_config


def ref_grouped_dist(zs, zt, beta, gamma, tau, group):
  """The reference per process: inter over the whole batch (a mean over examples either
  way), intra per contiguous group of `group` images, then the mean over the groups.
  Returns (loss, inter, intra, the float32 bound of intra)."""
  _, inter, _, _, _ = ref_dist(zs, zt, beta, gamma, tau)
  intras, bounds = [], []
  for lo in range(0, len(zs), group):
    s, t = zs[lo:lo + group], zt[lo:lo + group]
    _, _, intra, ps, pt = ref_dist(s, t, beta, gamma, tau)
    intras.append(intra)
    bounds.append(dist_bounds(s, t, ps, pt, tau)[1])
  intra = math.fsum(intras) / len(intras)
  # The mean over the groups adds one rounding per group to the per-group bounds.
  bound = max(bounds) + (len(intras) + 2) * U32
  return tau * tau * (beta * inter + gamma * intra), inter, intra, bound


@functools.partial(jax.jit, static_argnames="group")
def _dist(zs, zt, tau, group):
  return losses.dist(zs, zt, 1.0, 1.0, tau, intra_group=group)


@SETTINGS
@given(groups=st.integers(1, 4), group=st.integers(1, 6), c=st.integers(2, 12), lim=lim_st,
       tau=temp_st, seed=seed_st)
def test_intra_term_per_group_matches_numpy(groups, group, c, lim, tau, seed):
  rng = np.random.default_rng(seed)
  b = groups * group
  zs, zt = draw(rng, b, c, lim), draw(rng, b, c, lim)
  loss, metrics = _dist(zs, zt, tau, group)
  exp_loss, exp_inter, exp_intra, e_intra = ref_grouped_dist(zs, zt, 1.0, 1.0, tau, group)
  e_inter = dist_bounds(zs, zt, *ref_dist(zs, zt, 1.0, 1.0, tau)[3:], tau)[0]
  np.testing.assert_allclose(float(metrics["inter"]), exp_inter, rtol=0, atol=e_inter)
  np.testing.assert_allclose(float(metrics["intra"]), exp_intra, rtol=0, atol=e_intra)
  np.testing.assert_allclose(float(loss), exp_loss, rtol=0,
                             atol=tau * tau * (e_inter + e_intra) + 6 * U32 * abs(exp_loss))
  if group == 1:  # a group of one image has nothing to correlate: intra is exactly 1
    assert float(metrics["intra"]) == 1.0


def test_a_group_holding_the_batch_is_todays_term_bit_for_bit_and_others_are_refused():
  rng = np.random.default_rng(0)
  zs, zt = draw(rng, 8, 5, 6.0), draw(rng, 8, 5, 6.0)
  whole = losses.dist(zs, zt, 1.0, 1.0, 4.0)
  for group in (8, 64):  # the smoke batch (32) under the CIFAR default (64): one group
    chex.assert_trees_all_equal(losses.dist(zs, zt, 1.0, 1.0, 4.0, intra_group=group), whole)
  # Two groups of 4 differ from the whole batch (the term is not additive over groups).
  halves = losses.dist(zs, zt, 1.0, 1.0, 4.0, intra_group=4)[1]["intra"]
  assert abs(float(halves) - float(whole[1]["intra"])) > 1e-3
  with pytest.raises(ValueError, match="intra_group 3 does not divide the batch 8"):
    losses.dist(zs, zt, intra_group=3)



def test_recipes_group_sizes_and_the_runs_check():
  # The reference's per-GPU batch: 64 on CIFAR (the term's default), 32 on ImageNet.
  for recipe, group in (("configs", 64), ("configs.imagenet", 32)):
    c = preset_config("dist_dirac", recipe)
    dist = methods.resolve_terms("dist_dirac", "", c.loss.to_dict())[1]
    assert dist.params["intra_group"] == group
  for batch, group in ((128, 64), (32, 64), (128, 128), (512, 32)):
    run_setup.validate(preset_config("dist_dirac", batch_size=batch,
                               **{"loss.dist.intra_group": group}))  # divides, or holds all
  with pytest.raises(UserError, match=r"--config.loss.dist.intra_group=64 does not divide the "
                     r"batch \(--config.batch_size=96\).*a divisor of 96"):
    run_setup.validate(preset_config("dist_dirac", batch_size=96))
