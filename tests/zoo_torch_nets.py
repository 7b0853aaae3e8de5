"""PyTorch transcriptions of the zoo's reference modules, for the forward-equality tests
(tests/test_zoo_torch.py): written from RepDistiller `models/resnet.py` (`ResNet` with
`BasicBlock`), `models/wrn.py` (`WideResNet`) and `models/vgg.py` (`VGG(cfg,
batch_norm=True)`), with their module names, so a
`state_dict` has the reference checkpoints' keys (ResNet: `conv1`, `bn1`,
`layer{1,2,3}.{block}.conv{1,2}` / `bn{1,2}` / `downsample.{0,1}`, `fc`; WRN: `conv1`,
`block{1,2,3}.layer.{block}.bn1` / `conv1` / `bn2` / `conv2` / `convShortcut`, `bn1`, `fc`;
VGG: `block{0..4}.{3 j}` conv j of a block, `block{0..4}.{3 j + 1}` its BN, `classifier`).
torch is imported by the caller's `pytest.importorskip`."""
import torch  # pylint: disable=g-import-not-at-top
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
  """conv3x3 (stride) + BN + ReLU, conv3x3 + BN, plus the input (or its downsample); ReLU."""

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class CifarResNet(nn.Module):
  """`ResNet(depth, filters, 'basicblock', num_classes)`: stem, three layers of (depth - 2)
  / 6 blocks (stride 2 from the second), a 1x1 conv + BN downsample where the shape changes,
  average pool, fc."""

  def __init__(self, depth, filters, num_classes=100):
    super().__init__()
    n, inplanes = (depth - 2) // 6, filters[0]
    self.conv1 = nn.Conv2d(3, filters[0], 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(filters[0])
    for i, planes in enumerate(filters[1:]):
      stride = 1 if i == 0 else 2
      downsample = None
      if stride != 1 or inplanes != planes:
        downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                   nn.BatchNorm2d(planes))
      blocks = [BasicBlock(inplanes, planes, stride, downsample)]
      blocks += [BasicBlock(planes, planes) for _ in range(n - 1)]
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
      inplanes = planes
    self.fc = nn.Linear(filters[-1], num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer3(self.layer2(self.layer1(x)))
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class WideBlock(nn.Module):
  """BN + ReLU, conv3x3 (stride), BN + ReLU, conv3x3; plus the input, or a 1x1 conv of the
  activated input where the channels change."""

  def __init__(self, cin, cout, stride):
    super().__init__()
    self.bn1 = nn.BatchNorm2d(cin)
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False) if cin != cout else None
    self.convShortcut = shortcut  # pylint: disable=invalid-name

  def forward(self, x):
    h = F.relu(self.bn1(x))
    out = self.conv2(F.relu(self.bn2(self.conv1(h))))
    return out + (x if self.convShortcut is None else self.convShortcut(h))


class WideGroup(nn.Module):
  """The reference's `NetworkBlock`: its blocks in `layer`."""

  def __init__(self, n, cin, cout, stride):
    super().__init__()
    self.layer = nn.Sequential(*[WideBlock(cin if j == 0 else cout, cout,
                                           stride if j == 0 else 1) for j in range(n)])

  def forward(self, x):
    return self.layer(x)


class WideResNet(nn.Module):
  """`WideResNet(depth, num_classes, widen_factor)`: conv1, three groups of (depth - 4) / 6
  blocks with 16k, 32k, 64k channels (stride 2 from the second), BN + ReLU, pool, fc."""

  def __init__(self, depth, k, num_classes=100):
    super().__init__()
    n, ch = (depth - 4) // 6, (16, 16 * k, 32 * k, 64 * k)
    self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
    self.block1 = WideGroup(n, ch[0], ch[1], 1)
    self.block2 = WideGroup(n, ch[1], ch[2], 2)
    self.block3 = WideGroup(n, ch[2], ch[3], 2)
    self.bn1 = nn.BatchNorm2d(ch[3])
    self.fc = nn.Linear(ch[3], num_classes)

  def forward(self, x):
    x = self.block3(self.block2(self.block1(self.conv1(x))))
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(F.relu(self.bn1(x)), 1), 1))


class VGG(nn.Module):
  """Five blocks of conv3x3 (bias) + BN, ReLU between (none after a block's last); ReLU and
  a 2x2 max-pool between blocks (none before the fifth at 32 pixels); ReLU, pool, linear."""

  def __init__(self, cfg, num_classes=100):
    super().__init__()
    cin = 3
    for i, stage in enumerate(cfg):
      layers = []
      for v in stage:
        layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
        cin = v
      setattr(self, f"block{i}", nn.Sequential(*layers[:-1]))
    self.classifier = nn.Linear(512, num_classes)

  def forward(self, x):
    for i in range(5):
      x = getattr(self, f"block{i}")(F.relu(x) if i else x)
      if i < 3:
        x = F.max_pool2d(F.relu(x), 2, 2)
    return self.classifier(torch.flatten(F.adaptive_avg_pool2d(F.relu(x), 1), 1))


def randomise_bn(net, seed=0):
  """Non-trivial BN affine and running statistics (a trained network's, not init's)."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
        m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
        m.running_mean.copy_(0.2 * torch.randn(m.running_mean.shape, generator=g))
        m.running_var.copy_(0.5 + 1.5 * torch.rand(m.running_var.shape, generator=g))
  return net
