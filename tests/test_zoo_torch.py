"""The zoo's CIFAR ResNets against the reference PyTorch module (tests/zoo_torch_nets.py, a
transcription of RepDistiller models/resnet.py) on converted weights: the same logits. The
reference's keys are torchvision's spelling, which `deploy/torch_import.py` maps (stem
`conv1`/`bn1`, `layer{i}.{j}.conv{n}`/`bn{n}`, projection `downsample.{0,1}`, `fc`)."""
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import zoo_torch_nets  # pylint: disable=g-import-not-at-top
from jointrd_jax import models  # pylint: disable=g-import-not-at-top
from jointrd_jax.deploy import torch_import  # pylint: disable=g-import-not-at-top


def convert(net, sd):
  """Our variables of `net` from a reference state_dict: every key used, every shape equal."""
  layout = torch_import._layout("torchvision", sd)  # pylint: disable=protected-access
  shapes = jax.eval_shape(lambda: models.init(net, jax.random.key(0)))
  used = set()

  def leaf(path, shape):
    key = torch_import._torch_key(  # pylint: disable=protected-access
        tuple(str(getattr(p, "key", p)) for p in path), layout)
    used.add(key)
    return torch_import._convert(key, sd[key], shape.shape)  # pylint: disable=protected-access

  variables = jax.tree_util.tree_map_with_path(leaf, shapes)
  assert used == {k for k in sd if not k.endswith("num_batches_tracked")}
  return variables


@pytest.mark.parametrize("arch,depth,filters", [("resnet8x4", 8, (32, 64, 128, 256)),
                                                ("resnet20", 20, (16, 16, 32, 64))])
def test_forward_equals_the_reference_module(arch, depth, filters):
  """float32 both, sums in another order: 4 sqrt(L K) u of the largest logit, L = depth
  layers, K <= 9 * 256 terms per dot product (as tests/test_models.py's `_f32_tolerance`)."""
  torch.manual_seed(0)
  ref = zoo_torch_nets.randomise_bn(zoo_torch_nets.CifarResNet(depth, filters)).eval()
  sd = {k: v.numpy() for k, v in ref.state_dict().items()}
  net = models.build(arch)
  x = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
  with torch.no_grad():
    want = ref(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  got = np.asarray(jax.jit(net.apply)(convert(net, sd), x)[0])
  scale = float(np.abs(want).max())
  assert scale > 1e-2
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=4 * np.sqrt(depth * 9 * 256) * 2.0 ** -24 * scale)
