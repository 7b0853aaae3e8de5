"""Deployment form: fold each Dirac re-parameterisation and each BatchNorm into its conv.

For a conv (kernel W, optional Dirac a, b) followed by BatchNorm (scale g, bias beta,
running mean mu, running var v, epsilon eps), in inference mode:

    W_eff = a * delta + b * W                  (Dirac reparam, else W)
    s     = g / sqrt(v + eps)
    W'    = W_eff * s        (per output channel)
    bias' = beta - mu * s

The folded network is `models.build(..., folded=True)` of the same architecture and
variant: plain biased convs, no BatchNorm, no Dirac, the same logits in inference mode.
Every conv + BN pair folds alike: the CIFAR and ImageNet stems, each block conv, each
projection shortcut (a Dirac conv in the ImageNet student); the ImageNet max-pool has no
parameters and stays as it is.
"""
import dataclasses

import jax.numpy as jnp
import numpy as np

from jointrd_jax import dirac as dirac_lib
from jointrd_jax import models


def _fold_conv_bn(conv: dict, bn: dict, stats: dict, eps: float) -> dict:
  kernel = jnp.asarray(conv["kernel"], jnp.float32)
  if dirac_lib.A_NAME in conv:
    kernel = dirac_lib.effective_kernel(kernel, conv[dirac_lib.A_NAME], conv[dirac_lib.B_NAME])
  s = bn["scale"] / jnp.sqrt(stats["var"] + eps)
  return {"kernel": kernel * s, "bias": bn["bias"] - stats["mean"] * s}


def _fold_tree(params: dict, stats: dict, eps: float) -> dict:
  out = {}
  for name, node in params.items():
    if isinstance(node, dict) and "conv" in node and "bn" in node:
      out[name] = {"conv": _fold_conv_bn(node["conv"], node["bn"], stats[name]["bn"], eps)}
    elif isinstance(node, dict):
      out[name] = _fold_tree(node, stats.get(name, {}), eps)
    else:
      out[name] = node
  return out


def fold(net: models.ResNet, variables):
  """Returns `(folded_net, {'params': folded_params})`, equal in inference mode."""
  if net.folded:
    raise ValueError("the network is already folded")
  params = _to_dict(variables["params"])
  stats = _to_dict(variables.get("batch_stats", {}))
  folded_net = dataclasses.replace(net, folded=True, dirac="none")
  return folded_net, {"params": _fold_tree(params, stats, models.BN_EPSILON)}


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
