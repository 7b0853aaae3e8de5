"""PyTorch transcriptions of the zoo's reference modules, for the forward-equality tests
(tests/test_zoo_torch.py): written from RepDistiller (github.com/HobbitLong/RepDistiller at
b84f547c5db6a35318d4671d7d5c4de74c822403) `models/resnet.py` (`ResNet` with `BasicBlock`),
`models/wrn.py` (`WideResNet`), `models/vgg.py` (`VGG(cfg, batch_norm=True)`),
`models/mobilenetv2.py` (`mobile_half`), `models/ShuffleNetv1.py` (`ShuffleV1`),
`models/ShuffleNetv2.py` (`ShuffleV2`) and `models/resnetv2.py` (`ResNet`); mdistiller's
`mdistiller/models/cifar/` copies (a08d46f10d6102bd6e3f258ca5ac880b020ea259) define the same
networks and keys. With their
module names, so a
`state_dict` has the reference checkpoints' keys (ResNet: `conv1`, `bn1`,
`layer{1,2,3}.{block}.conv{1,2}` / `bn{1,2}` / `downsample.{0,1}`, `fc`; WRN: `conv1`,
`block{1,2,3}.layer.{block}.bn1` / `conv1` / `bn2` / `conv2` / `convShortcut`, `bn1`, `fc`;
VGG: `block{0..4}.{3 j}` conv j of a block, `block{0..4}.{3 j + 1}` its BN, `classifier`;
the rest: see `jointrd_jax/deploy/zoo_import.py`).
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


class InvertedResidual(nn.Module):
  """mobilenetv2.py: `conv` = pw conv1x1 + BN + ReLU, dw conv3x3 (stride) + BN + ReLU,
  pw-linear conv1x1 + BN (indices 0..7); plus the input where stride 1 and inp == oup."""

  def __init__(self, inp, oup, stride, t):
    super().__init__()
    hidden = inp * t
    self.use_res_connect = stride == 1 and inp == oup
    self.conv = nn.Sequential(
        nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
        nn.BatchNorm2d(hidden), nn.ReLU(),
        nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup))

  def forward(self, x):
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
  """`mobile_half(num_classes)` = `MobileNetV2(T=6, feature_dim, width_mult=0.5)`: conv1
  (conv3x3 s2 + BN + ReLU, 16 ch), `blocks` (the (t, c, n, s) setting, c halved), conv2
  (conv1x1 -> 1280 + BN + ReLU), AvgPool2d(2, ceil_mode) at 32 pixels, classifier.0."""

  def __init__(self, num_classes=100, t=6, width_mult=0.5):
    super().__init__()
    setting = [[1, 16, 1, 1], [t, 24, 2, 1], [t, 32, 3, 2], [t, 64, 4, 2], [t, 96, 3, 1],
               [t, 160, 3, 2], [t, 320, 1, 1]]
    cin = int(32 * width_mult)
    self.conv1 = nn.Sequential(nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin),
                               nn.ReLU())
    self.blocks = nn.ModuleList([])
    for t_, c, n, s in setting:
      layers = []
      for stride in [s] + [1] * (n - 1):
        layers.append(InvertedResidual(cin, int(c * width_mult), stride, t_))
        cin = int(c * width_mult)
      self.blocks.append(nn.Sequential(*layers))
    self.conv2 = nn.Sequential(nn.Conv2d(cin, 1280, 1, 1, 0, bias=False),
                               nn.BatchNorm2d(1280), nn.ReLU())
    self.classifier = nn.Sequential(nn.Linear(1280, num_classes))
    self.avgpool = nn.AvgPool2d(2, ceil_mode=True)

  def forward(self, x):
    x = self.conv1(x)
    for block in self.blocks:
      x = block(x)
    return self.classifier(self.avgpool(self.conv2(x)).view(x.size(0), -1))


def channel_shuffle(x, g):
  """`ShuffleBlock`: [N, C, H, W] -> [N, g, C/g, H, W] -> [N, C/g, g, H, W] -> [N, C, H, W]."""
  n, c, h, w = x.size()
  return x.view(n, g, c // g, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class ShuffleV1Block(nn.Module):
  """ShuffleNetv1.py `Bottleneck`: grouped conv1x1 (1 group on 24 channels) + BN + ReLU,
  shuffle, dw conv3x3 (stride) + BN + ReLU, grouped conv1x1 + BN; + x, or concatenated with
  AvgPool2d(3, 2, 1)(x) at stride 2; ReLU."""

  def __init__(self, cin, cout, stride, groups):
    super().__init__()
    mid, self.stride = cout // 4, stride
    self.g = 1 if cin == 24 else groups
    self.conv1 = nn.Conv2d(cin, mid, 1, groups=self.g, bias=False)
    self.bn1 = nn.BatchNorm2d(mid)
    self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)
    self.bn2 = nn.BatchNorm2d(mid)
    self.conv3 = nn.Conv2d(mid, cout, 1, groups=groups, bias=False)
    self.bn3 = nn.BatchNorm2d(cout)

  def forward(self, x):
    out = channel_shuffle(F.relu(self.bn1(self.conv1(x))), self.g)
    out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(out)))))
    if self.stride == 2:
      return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], 1))
    return F.relu(out + x)


class ShuffleV1(nn.Module):
  """`ShuffleV1(num_classes)`: conv1 (1x1, 24) + bn1 + ReLU, layer1..3 (out_planes 240,
  480, 960; blocks 4, 8, 4; groups 3; a layer's first block stride 2, out_planes - in
  channels), avg_pool2d(4), linear."""

  def __init__(self, num_classes=100):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 24, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(24)
    cin = 24
    for i, (planes, n) in enumerate(zip((240, 480, 960), (4, 8, 4))):
      blocks = [ShuffleV1Block(cin, planes - cin, 2, 3)]
      blocks += [ShuffleV1Block(planes, planes, 1, 3) for _ in range(n - 1)]
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
      cin = planes
    self.linear = nn.Linear(960, num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.avg_pool2d(self.layer3(self.layer2(self.layer1(x))), 4)
    return self.linear(x.view(x.size(0), -1))


def _conv_bn(module, k, cin, cout, kernel, stride=1, groups=1):
  setattr(module, f"conv{k}", nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups,
                                        bias=False))
  setattr(module, f"bn{k}", nn.BatchNorm2d(cout))


def _unit(module, k, x):
  return getattr(module, f"bn{k}")(getattr(module, f"conv{k}")(x))


class ShuffleV2Basic(nn.Module):
  """ShuffleNetv2.py `BasicBlock`: split in halves; the second through conv1x1 + BN + ReLU,
  dw conv3x3 + BN, conv1x1 + BN + ReLU; concatenated after the first; shuffled (2)."""

  def __init__(self, c):
    super().__init__()
    for k, kernel in ((1, 1), (2, 3), (3, 1)):
      _conv_bn(self, k, c // 2, c // 2, kernel, groups=c // 2 if kernel == 3 else 1)

  def forward(self, x):
    half = x.size(1) // 2
    out = F.relu(_unit(self, 3, _unit(self, 2, F.relu(_unit(self, 1, x[:, half:])))))
    return channel_shuffle(torch.cat([x[:, :half], out], 1), 2)


class ShuffleV2Down(nn.Module):
  """ShuffleNetv2.py `DownBlock`: left dw conv3x3 s2 + BN, conv1x1 + BN + ReLU; right
  conv1x1 + BN + ReLU, dw conv3x3 s2 + BN, conv1x1 + BN + ReLU; concatenated, shuffled (2)."""

  def __init__(self, cin, cout):
    super().__init__()
    mid = cout // 2
    _conv_bn(self, 1, cin, cin, 3, 2, cin)
    _conv_bn(self, 2, cin, mid, 1)
    _conv_bn(self, 3, cin, mid, 1)
    _conv_bn(self, 4, mid, mid, 3, 2, mid)
    _conv_bn(self, 5, mid, mid, 1)

  def forward(self, x):
    left = F.relu(_unit(self, 2, _unit(self, 1, x)))
    right = F.relu(_unit(self, 5, _unit(self, 4, F.relu(_unit(self, 3, x)))))
    return channel_shuffle(torch.cat([left, right], 1), 2)


class ShuffleV2(nn.Module):
  """`ShuffleV2(num_classes)` = `ShuffleNetV2(net_size=1)`: conv1 (1x1, 24) + bn1 + ReLU,
  layer1..3 (a DownBlock then 3, 7, 3 BasicBlocks; 116, 232, 464 channels), conv2 (1x1,
  1024) + bn2 + ReLU, avg_pool2d(4), linear."""

  def __init__(self, num_classes=100):
    super().__init__()
    _conv_bn(self, 1, 3, 24, 1)
    cin = 24
    for i, (c, n) in enumerate(zip((116, 232, 464), (3, 7, 3))):
      layers = [ShuffleV2Down(cin, c)] + [ShuffleV2Basic(c) for _ in range(n)]
      setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
      cin = c
    _conv_bn(self, 2, 464, 1024, 1)
    self.linear = nn.Linear(1024, num_classes)

  def forward(self, x):
    x = self.layer3(self.layer2(self.layer1(F.relu(_unit(self, 1, x)))))
    x = F.avg_pool2d(F.relu(_unit(self, 2, x)), 4)
    return self.linear(x.view(x.size(0), -1))


class V2Basic(nn.Module):
  """resnetv2.py `BasicBlock`: conv3x3 (stride) + BN + ReLU, conv3x3 + BN, + `shortcut`
  (conv1x1 + BN where the shape changes, else nothing); ReLU."""
  expansion = 1

  def __init__(self, cin, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.shortcut = _v2_shortcut(cin, planes, stride)

  def forward(self, x):
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(out + self.shortcut(x))


class V2Bottleneck(nn.Module):
  """resnetv2.py `Bottleneck`: conv1x1 + BN + ReLU, conv3x3 (stride) + BN + ReLU, conv1x1
  (4 planes) + BN, + `shortcut`; ReLU."""
  expansion = 4

  def __init__(self, cin, planes, stride):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, 4 * planes, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(4 * planes)
    self.shortcut = _v2_shortcut(cin, 4 * planes, stride)

  def forward(self, x):
    out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
    return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _v2_shortcut(cin, cout, stride):
  if stride == 1 and cin == cout:
    return nn.Sequential()
  return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetV2(nn.Module):
  """resnetv2.py `ResNet(block, num_blocks, num_classes)` (ResNet18/50: [2, 2, 2, 2] /
  [3, 4, 6, 3]): conv1 (3x3, 64) + bn1 + ReLU, layer1..4 (64, 128, 256, 512 planes, stride 2
  from the second), adaptive average pool, linear."""

  def __init__(self, block, num_blocks, num_classes=100):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks)):
      blocks = []
      for j in range(n):
        blocks.append(block(cin, planes, 2 if i > 0 and j == 0 else 1))
        cin = planes * block.expansion
      setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
    self.linear = nn.Linear(cin, num_classes)

  def forward(self, x):
    x = F.relu(self.bn1(self.conv1(x)))
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


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
