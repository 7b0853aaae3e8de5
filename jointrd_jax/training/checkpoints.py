"""Checkpoints (orbax `CheckpointManager`) and loading a run's networks from its workdir.

A checkpoint holds `state` (`step`, `params`, `batch_stats`, `opt_state`; params and
stats keyed by network: `student`, and `teacher` when trained jointly) and `meta`
(JSON: epoch, step, num_classes, image_shape and the description of each network), so
a run's networks can be rebuilt from the checkpoint alone (teachers, export).
Checkpoints are read as data only (no pickles, no code).
"""
import os
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from jointrd_jax import models
from jointrd_jax.training import workdir as workdir_lib
from jointrd_jax.errors import UserError

CHECKPOINT_DIR = "checkpoints"


def _abs(path) -> epath.Path:
  p = epath.Path(path)
  return p if "://" in str(p) else epath.Path(os.path.abspath(str(p)))


class Checkpoints:
  """Keeps the last `keep` checkpoints under `run_dir/checkpoints`; restore falls back
  to the previous good checkpoint when the latest is corrupt or partial."""

  def __init__(self, run_dir, keep: int = 2, create: bool = True):
    self.directory = _abs(run_dir) / CHECKPOINT_DIR
    self._unreadable = set()  # steps `restore` skipped; `save` replaces them
    if not create and not self.directory.exists():
      self.manager = None
      return
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=create,
                                             enable_async_checkpointing=False),
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "meta": ocp.JsonCheckpointHandler()})

  def steps(self):
    return sorted(self.manager.all_steps()) if self.manager else []

  def save(self, step: int, state, meta: dict) -> None:
    # A resumed run reaches again the steps of the unreadable checkpoints it skipped; they
    # are stale from here on (and orbax refuses to save a step that exists): delete them.
    for s in sorted(self._unreadable):
      if s >= step and s in self.manager.all_steps():
        logging.warning("deleting unreadable checkpoint %s in %s before saving step %s.", s,
                        self.directory, step)
        self.manager.delete(s)
    self._unreadable = {s for s in self._unreadable if s < step}
    self.manager.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self.manager.wait_until_finished()

  def restore(self, abstract_state=None, step: Optional[int] = None):
    """`(state, meta)` of `step` or of the newest readable checkpoint, or None if none.

    With `abstract_state` (shapes, dtypes, shardings) the state is restored onto the
    devices as that tree; without it, as nested dicts of host arrays, whatever the devices
    and processes that saved it (a pod slice's checkpoint loads on a laptop).
    """
    candidates = [step] if step is not None else list(reversed(self.steps()))
    for s in candidates:
      try:
        target = abstract_state if abstract_state is not None else self._local_target(s)
        restored = self.manager.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
        state = restored["state"]
        if abstract_state is None:
          state = jax.tree_util.tree_map(np.asarray, state)
        return state, dict(restored["meta"])
      except Exception as e:  # a truncated or partial checkpoint: try the one before
        if step is not None:
          raise UserError(f"checkpoint {s} in {self.directory} cannot be read ({type(e).__name__}); "
                          "it is corrupt or from another config.") from None
        self._unreadable.add(s)
        logging.warning("checkpoint %s in %s cannot be read (%s: %s); falling back to the "
                        "previous one.", s, self.directory, type(e).__name__, str(e)[:200])
    return None

  def _local_target(self, step: int):
    """The saved state's tree on this process's first device. Without a target, orbax
    restores the shardings it saved, which fails on another topology."""
    device = jax.local_devices()[0]
    return jax.tree_util.tree_map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                       sharding=jax.sharding.SingleDeviceSharding(device)),
        self.manager.item_metadata(step)["state"])

  def close(self):
    if self.manager:
      self.manager.close()


def network_meta(net: models.ResNet) -> dict:
  """The description stored with a network (`models.describe`)."""
  return models.describe(net)


def build_network(desc: dict, dtype=None, **overrides) -> models.ResNet:
  """The network of a stored description (`models.from_description`): any registered conv
  kind, and descriptions written by earlier versions."""
  return models.from_description(desc, dtype, **overrides)


def load_network(run_dir: str, which: str = "student"):
  """`(net, variables, meta)` of network `which` in a run's newest good checkpoint."""
  if not epath.Path(run_dir).exists():
    raise UserError(f"checkpoint path {run_dir} does not exist; pass the workdir of a finished "
                    "ResNet run (or leave --config.teacher.checkpoint empty to train one).")
  ckpt = Checkpoints(run_dir, create=False)
  restored = ckpt.restore() if ckpt.steps() else None
  ckpt.close()
  if restored is None:
    raise UserError(f"{run_dir} holds no readable checkpoint under {CHECKPOINT_DIR}/; "
                    "train it first, or point at another run.")
  state, meta = restored
  if which not in meta.get("networks", {}):
    raise UserError(f"the checkpoint in {run_dir} has no {which} network.")
  net = build_network(meta["networks"][which])
  variables = {"params": state["params"][which], "batch_stats": state["batch_stats"][which]}
  variables = jax.tree_util.tree_map(np.asarray, variables)
  # Validate the tree against the architecture: a mismatch is a clear error, not XLA's.
  expected = jax.eval_shape(lambda: models.init(net, jax.random.key(0), meta["image_shape"]))
  got = jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), variables)
  want = jax.tree_util.tree_map(lambda x: (x.shape, str(x.dtype)), expected)
  if got != want:
    raise UserError(f"the {which} network in {run_dir} does not match its description "
                    f"{meta['networks'][which]}; the checkpoint is corrupt or foreign.")
  return net, variables, meta


def save_network(run_dir: str, net: models.ResNet, variables, *, image_shape, config_dict: dict,
                 epoch: int = 0) -> None:
  """Writes a minimal run (config.json + one checkpoint) holding `net` as its student:
  what `load_network` and the trainer's `teacher.checkpoint` accept."""
  path = workdir_lib.check_writable(run_dir)
  path.mkdir(parents=True, exist_ok=True)
  workdir_lib.write_json(path / workdir_lib.CONFIG_FILE, config_dict)
  state = {"step": np.int32(0),
           "params": {"student": variables["params"]},
           "batch_stats": {"student": variables["batch_stats"]}}
  meta = {"epoch": epoch, "step": 0, "num_classes": net.num_classes,
          "image_shape": list(image_shape), "networks": {"student": network_meta(net)}}
  ckpt = Checkpoints(run_dir)
  ckpt.save(0, state, meta)
  ckpt.close()


def abstract(state):
  """The restore target of a state as it is: each array's shape, dtype and sharding."""
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
