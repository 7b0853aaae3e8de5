"""Deployment form: fold every conv unit (its conv kind's re-parameterisation, its
branches, its BatchNorm) into one biased convolution.

For the built-in kinds a unit is a conv (kernel W, Dirac a, b for `reparam`) followed by
BatchNorm (scale g, bias beta, running mean mu, running var v, epsilon eps); in inference
mode

    W_eff = a * delta + b * W                  (Dirac reparam, else W)
    s     = g / sqrt(v + eps)
    W'    = W_eff * s        (per output channel)
    bias' = beta - mu * s

and each other kind folds as its module says (`convs.ConvKind.fold`). The folded network is
the same architecture built with `folded=True`: plain biased convs, no BatchNorm, no
re-parameterisation, no branches, the same logits in inference mode. The stems, every
block conv and every projection shortcut fold alike; the ImageNet max-pool has no
parameters and stays as it is.
"""
import dataclasses

import numpy as np

from jointrd_jax.models import convs
from jointrd_jax.models.resnet import ResNet


def fold(net: ResNet, variables):
  """Returns `(folded_net, {'params': folded_params})`, equal in inference mode."""
  if net.folded:
    raise ValueError("the network is already folded")
  if hasattr(net, "fold_variables"):  # a network with a fold of its own (zoo/wrn.py)
    return net.fold_variables(variables)
  params = _to_dict(variables["params"])
  stats = _to_dict(variables.get("batch_stats", {}))
  units = net.units()
  folded = {k: v for k, v in params.items() if k not in {path[0] for path in units}}  # head
  for path, kind in units.items():
    unit_params, unit_stats = params, stats
    for name in path:
      unit_params, unit_stats = unit_params[name], unit_stats.get(name, {})
    node = folded
    for name in path[:-1]:
      node = node.setdefault(name, {})
    node[path[-1]] = convs.get(kind).fold(unit_params, unit_stats)
  folded_net = dataclasses.replace(net, folded=True, conv="none")
  return folded_net, {"params": folded}


def _to_dict(tree):
  if hasattr(tree, "items"):
    return {k: _to_dict(v) for k, v in tree.items()}
  return tree


def to_numpy(variables) -> dict:
  """Flat `{'path/to/leaf': np.ndarray}` (for `.npz` export)."""
  flat = {}

  def walk(prefix, node):
    if hasattr(node, "items"):
      for k, v in node.items():
        walk(f"{prefix}/{k}" if prefix else k, v)
    else:
      flat[prefix] = np.asarray(node)

  walk("", variables)
  return flat
