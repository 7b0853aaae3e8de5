"""The optimizer's options: `optimizer.skip_zero_sum_grads` (the release's SGD rule) against a
direct NumPy transcription of that rule, and the default (off) left exactly as it was."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from jointrd_jax.training import optim

STEPS_PER_EPOCH = 1


def _config(nesterov: bool, skip: bool):
  c = default.get_config("smoke")
  c.num_epochs = 4
  c.optimizer.update(dict(learning_rate=0.1, momentum=0.9, nesterov=nesterov,
                          weight_decay=5e-2, lr_drop_at=(0.5,), lr_drop_factor=0.1,
                          skip_zero_sum_grads=skip))
  return c


def _params():
  return {"conv": {"kernel": np.array([1.0, -2.0, 0.5], np.float32),
                   "dirac_a": np.array([0.25, 1.5], np.float32)},
          "head": {"bias": np.array([0.3, -0.7, 1.1, 0.2], np.float32)}}


def _grads(step: int):
  """Step 0: nothing sums to 0; step 1: the bias's terms cancel exactly; step 2: dirac_a's
  gradient is all zeros; step 3: the bias cancels again; the kernel never does."""
  rng = np.random.default_rng(step)
  g = {"conv": {"kernel": rng.normal(size=3).astype(np.float32),
                "dirac_a": rng.normal(size=2).astype(np.float32)},
       "head": {"bias": rng.normal(size=4).astype(np.float32)}}
  if step in (1, 3):
    g["head"]["bias"] = np.array([0.5, -1.25, 1.0, -0.25], np.float32) * (step + 1)
  if step == 2:
    g["conv"]["dirac_a"] = np.zeros(2, np.float32)
  return g


def _release_sgd(params, grads_per_step, lr_at, momentum, nesterov, weight_decay):
  """The release's SGD (`tools/optimizer.py`, PyTorch's SGD order), transcribed: a tensor
  whose gradient sums to 0.0 is skipped; else weight decay joins the gradient (not on the
  Dirac a, b), the momentum buffer is m * buf + d (d itself the first time), and Nesterov
  steps along d + m * buf."""
  flat = {f"{a}/{b}": v.copy() for a, sub in params.items() for b, v in sub.items()}
  buf = {}
  for t, grads in enumerate(grads_per_step):
    for name in flat:
      a, b = name.split("/")
      d = grads[a][b]
      if d.sum() == 0.0:
        continue
      if not b.startswith("dirac_"):
        d = d + np.float32(weight_decay) * flat[name]
      buf[name] = d if name not in buf else np.float32(momentum) * buf[name] + d
      d = d + np.float32(momentum) * buf[name] if nesterov else buf[name]
      flat[name] = flat[name] - np.float32(lr_at(t)) * d
  return flat


def _run(tx, params, grads_per_step, fractions=None):
  state = tx.init(params)
  counts = []
  for grads in grads_per_step:
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    counts.append(optim.skipped_tensors(state))
  if fractions is not None:
    fractions.append(optim.skip_fractions(state, len(grads_per_step)))
  return params, counts


@pytest.mark.parametrize("nesterov", [True, False])
def test_skip_zero_sum_grads_is_the_release_rule(nesterov):
  c = _config(nesterov, skip=True)
  tx, schedule = optim.create_optimizer(c, STEPS_PER_EPOCH)
  grads = [_grads(t) for t in range(4)]
  fractions = []
  got, counts = _run(tx, jax.tree_util.tree_map(jnp.asarray, _params()), grads, fractions)
  lr = [np.float32(0.1)] * 2 + [np.float32(0.1) * np.float32(0.1)] * 2  # dropped at epoch 2
  np.testing.assert_allclose([float(schedule(t)) for t in range(4)], lr, rtol=1e-7)
  want = _release_sgd(_params(), grads, lr.__getitem__, 0.9, nesterov, 5e-2)
  for name, value in want.items():
    a, b = name.split("/")
    # A few float32 operations per step on values ~1: rounding differs at ~1e-7 relative.
    np.testing.assert_allclose(np.asarray(got[a][b]), value, rtol=1e-5, atol=1e-6)
  assert [int(n) for n in counts] == [0, 1, 1, 1]
  assert fractions == [{"conv/dirac_a": 0.25, "head/bias": 0.5}]  # summary.json's
  # Without the rule, the skipped steps move the bias (momentum and weight decay).
  off, _ = _run(optim.create_optimizer(_config(nesterov, skip=False), 1)[0],
                jax.tree_util.tree_map(jnp.asarray, _params()), grads)
  assert np.abs(np.asarray(off["head"]["bias"]) - want["head/bias"]).max() > 1e-3


def test_skip_keeps_the_momentum_buffer_of_a_skipped_tensor():
  tx, _ = optim.create_optimizer(_config(True, skip=True), STEPS_PER_EPOCH)
  params = jax.tree_util.tree_map(jnp.asarray, _params())
  state = tx.init(params)
  _, state = tx.update(_grads(0), state, params)
  before = [np.asarray(x) for x in jax.tree_util.tree_leaves(state.inner)]
  _, after_state = tx.update(_grads(1), state, params)  # the bias is skipped
  after = jax.tree_util.tree_leaves(after_state.inner)
  bias_trace = after_state.inner[1][0].trace["head"]["bias"]
  np.testing.assert_array_equal(np.asarray(bias_trace), state.inner[1][0].trace["head"]["bias"])
  assert any(not np.array_equal(b, np.asarray(a)) for b, a in zip(before, after))  # the others


def test_default_off_is_todays_optimizer_bitwise():
  c = _config(True, skip=False)
  assert default.get_config().optimizer.skip_zero_sum_grads is False
  tx, _ = optim.create_optimizer(c, STEPS_PER_EPOCH)
  o = c.optimizer
  today = optax.chain(
      optax.add_decayed_weights(o.weight_decay, mask=optim.weight_decay_mask),
      optax.sgd(optax.piecewise_constant_schedule(o.learning_rate, {2: 0.1}),
                momentum=o.momentum, nesterov=True))
  grads = [_grads(t) for t in range(4)]
  params = jax.tree_util.tree_map(jnp.asarray, _params())
  fractions = []
  got, counts = _run(tx, params, grads, fractions)
  want, _ = _run(today, params, grads)
  assert counts == [None] * 4 and fractions == [None]  # no zero_sum_skips metric or summary
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, want)
  # On, with no gradient summing to 0, the rule changes nothing, bit for bit.
  on, counts = _run(optim.create_optimizer(_config(True, skip=True), 1)[0], params, grads[:1])
  jax.tree_util.tree_map(np.testing.assert_array_equal, on, _run(today, params, grads[:1])[0])
  assert counts == [0]
