"""Shared by the PyTorch import tests (test_torch_import, test_torchvision_import): random
BatchNorm statistics for a PyTorch network, and the logits of a PyTorch and of our network
on the same NHWC images."""
import jax
import numpy as np
# PyTorch: a heavy optional dependency; only test modules that skip without it import this.
import torch


def randomize_bn_(m) -> None:
  """Non-trivial statistics and affine parameters for a BatchNorm2d, in place (no_grad)."""
  m.weight.uniform_(0.5, 1.5)
  m.bias.normal_(0, 0.2)
  m.running_mean.normal_(0, 0.2)
  m.running_var.uniform_(0.5, 2.0)


def torch_logits(net, x_nhwc):
  with torch.no_grad():
    return net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy())).numpy()


def our_logits(net, variables, x_nhwc):
  return np.asarray(jax.jit(lambda v, x: net.apply(v, x, train=False)[0])(variables, x_nhwc))
