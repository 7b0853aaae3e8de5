"""The JointRD release's CIFAR networks and training steps in PyTorch, for side-by-side
timings (`experiments.cpu_step_compare`) and the import tests (tests/test_torch_import.py).

The modules follow the release's layout (github.com/leoozy/JointRD_Neurips2020, reference
§1-2): every block starts with ReLU and returns the pre-ReLU sum; a Dirac conv uses
`W_eff = alpha * delta + beta * W`. Needs PyTorch (an optional dependency): import this
module only where torch is installed.
"""
import torch  # optional dependency: this module is imported only where torch is installed

nn = torch.nn
F = torch.nn.functional


class TConv(nn.Conv2d):
  """Bias-free conv, padding k//2; with `dirac`: W_eff = alpha * delta + beta * W (release)."""

  def __init__(self, cin, cout, k, stride, dirac):
    super().__init__(cin, cout, k, stride=stride, padding=k // 2, bias=False)
    self.dirac = dirac
    if dirac:
      self.alpha = nn.Parameter(torch.rand(cout) + 0.5)
      self.beta = nn.Parameter(torch.rand(cout) * 0.3)
      self.register_buffer("delta", nn.init.dirac_(torch.empty_like(self.weight)))

  def forward(self, x):
    w = self.weight
    if self.dirac:
      w = self.alpha.view(-1, 1, 1, 1) * self.delta + self.beta.view(-1, 1, 1, 1) * w
    return F.conv2d(x, w, self.bias, self.stride, self.padding)


class TBlock(nn.Module):
  """ReLU first, pre-ReLU sum out. A shortcut-free block whose shape changes keeps an
  unused `downsample` and the unused connectors, like the release's *woskip blocks."""

  def __init__(self, kind, cin, planes, stride, shortcut, dirac):
    super().__init__()
    if kind == "bottleneck":
      cout = planes * 4
      self.conv1, self.bn1 = TConv(cin, planes, 1, 1, False), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = TConv(planes, planes, 3, stride, dirac), nn.BatchNorm2d(planes)
      self.conv3, self.bn3 = TConv(planes, cout, 1, 1, dirac), nn.BatchNorm2d(cout)
      self.convs = 3
    else:
      cout = planes
      self.conv1, self.bn1 = TConv(cin, planes, 3, stride, dirac), nn.BatchNorm2d(planes)
      self.conv2, self.bn2 = TConv(planes, planes, 3, 1, dirac), nn.BatchNorm2d(planes)
      self.convs = 2
    self.shortcut = shortcut
    if shortcut == "projection" or (stride != 1 or cin != cout):
      self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                      nn.BatchNorm2d(cout))
    if shortcut == "none":
      self.connector1 = nn.Conv2d(planes, cin, 1)
      self.connector2 = nn.Conv2d(cout, planes, 1)

  def forward(self, x):
    x = F.relu(x)
    out = x
    for n in range(1, self.convs + 1):
      out = getattr(self, f"bn{n}")(getattr(self, f"conv{n}")(out))
      if n < self.convs:
        out = F.relu(out)
    if self.shortcut == "identity":
      out = out + x
    elif self.shortcut == "projection":
      out = out + self.downsample(x)
    return out


def plan(kind, sizes, shortcuts, width):
  """Reference §1's shortcut policies, written independently of models.shortcut_plan."""
  out, cin = [], width
  for i, n in enumerate(sizes):
    cout = width * 2 ** i * (4 if kind == "bottleneck" else 1)
    stage = []
    for j in range(n):
      stride = 2 if (i > 0 and j == 0) else 1
      if shortcuts == "all":
        stage.append("projection" if (stride != 1 or cin != cout) else "identity")
      elif shortcuts == "projection":
        stage.append("projection" if (i > 0 and j == 0) else "none")
      else:
        stage.append("none")
      cin = cout
    out.append(stage)
  return out


class TNet(nn.Module):
  """layout 'release': conv1 = Sequential(conv, bn, relu), layers = ModuleList;
  layout 'torchvision': conv1, bn1, layer1..4."""

  def __init__(self, kind, sizes, width, num_classes, shortcuts="all", dirac=False,
               layout="release"):
    super().__init__()
    self.layout = layout
    if layout == "release":
      self.conv1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(width), nn.ReLU())
    else:
      self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
    stages, cin = [], width
    for i, policy in enumerate(plan(kind, sizes, shortcuts, width)):
      blocks = []
      for j, sc in enumerate(policy):
        planes = width * 2 ** i
        blocks.append(TBlock(kind, cin, planes, 2 if (i > 0 and j == 0) else 1, sc, dirac))
        cin = planes * (4 if kind == "bottleneck" else 1)
      stages.append(nn.Sequential(*blocks))
    if layout == "release":
      self.layers = nn.ModuleList(stages)
    else:
      for i, s in enumerate(stages):
        setattr(self, f"layer{i + 1}", s)
    self.fc = nn.Linear(cin, num_classes)

  def stages(self):
    return list(self.layers) if self.layout == "release" else [
        getattr(self, f"layer{i + 1}") for i in range(4)]

  def stem(self, x):
    return F.relu(self.conv1(x) if self.layout == "release" else self.bn1(self.conv1(x)))

  def head(self, x):
    return self.fc(F.relu(x).mean(dim=(2, 3)))

  def forward(self, x):
    x = self.stem(x)
    for s in self.stages():
      x = s(x)
    return self.head(x)


def fold_(net: TNet) -> TNet:
  """Folds every BatchNorm of an eval-mode network into the conv before it, in place (the
  trainer folds the frozen teacher's BatchNorm the same way)."""
  fuse = torch.nn.utils.fusion.fuse_conv_bn_eval
  if net.layout == "release":
    net.conv1[0], net.conv1[1] = fuse(net.conv1[0], net.conv1[1]), nn.Identity()
  for stage in net.stages():
    for block in stage:
      for n in range(1, block.convs + 1):
        conv, bn = getattr(block, f"conv{n}"), getattr(block, f"bn{n}")
        setattr(block, f"conv{n}", fuse(conv, bn))
        setattr(block, f"bn{n}", nn.Identity())
      if hasattr(block, "downsample"):
        block.downsample = fuse(block.downsample[0], block.downsample[1])
  return net


def jointrd_loss(student: TNet, teacher: TNet, x, y, m: float):
  """Reference §4: 1/4 [m * sum_k CE(teacher stages k+1..4 (s_k)) + CE(z_S)]."""
  feats, h = [], student.stem(x)
  for s in student.stages():
    h = s(h)
    feats.append(h)
  loss = F.cross_entropy(student.head(feats[-1]), y)
  t_stages = teacher.stages()
  for k in range(3):
    h = feats[k]
    for s in t_stages[k + 1:]:
      h = s(h)
    loss = loss + m * F.cross_entropy(teacher.head(h), y)
  return loss / 4


def train_step(method: str, kind: str, sizes, width: int, num_classes: int, batch: int,
               channels_last: bool = False, seed: int = 0):
  """A zero-argument function running one training step of `method` ('resnet',
  'plain_dirac' or 'jointrd') on one fixed random batch of 32x32 images, with the recipe's
  SGD (lr 0.1, Nesterov momentum 0.9, weight decay 5e-4 except Dirac alpha/beta); the
  JointRD teacher is a frozen, BN-folded ResNet. Returns (step, loss of the first step)."""
  torch.manual_seed(seed)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  dirac = method != "resnet"
  student = TNet(kind, sizes, width, num_classes, shortcuts="projection" if dirac else "all",
                 dirac=dirac).to(memory_format=fmt).train()
  x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=fmt)
  y = torch.randint(0, num_classes, (batch,))
  if method == "jointrd":
    teacher = TNet(kind, sizes, width, num_classes).eval()
    teacher = fold_(teacher).to(memory_format=fmt).requires_grad_(False)
    loss_fn = lambda: jointrd_loss(student, teacher, x, y, 1.0)
  else:
    loss_fn = lambda: F.cross_entropy(student(x), y)
  ab = [p for n, p in student.named_parameters() if n.endswith((".alpha", ".beta"))]
  rest = [p for n, p in student.named_parameters() if not n.endswith((".alpha", ".beta"))]
  opt = torch.optim.SGD([{"params": rest, "weight_decay": 5e-4},
                         {"params": ab, "weight_decay": 0.0}],
                        lr=0.1, momentum=0.9, nesterov=True)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    opt.step()
    return loss

  return step, float(step().detach())
