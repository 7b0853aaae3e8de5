"""The model family: ResNet teachers and their plain students, CIFAR and ImageNet.

- `resnet.py`: the networks (blocks, stems, shortcut policies, the conv scope);
- `convs.py`: the student's convolution kinds by name (`none`, `init`, `reparam`, and one
  module per further kind, e.g. `repvgg.py`), each with its fold;
- `layers.py`, `batchnorm.py`, `dirac.py`: the building blocks;
- `archs.py`: architectures by name, `build`, `init`, `describe` / `from_description`;
- `fold.py`: the deployment form;
- `zoo/`: the CIFAR-100 distillation zoo (RepDistiller / mdistiller archs), one module per
  family.

Every module of this package is imported here, so a conv kind registers itself by being a
module of the package.
"""
import importlib
import pkgutil

from jointrd_jax.models import batchnorm, convs, dirac, fold, layers, resnet
from jointrd_jax.models.archs import (ARCHS, DESCRIPTION_FIELDS, SHORTCUTS, arch_names,
                                      build, check_choice, describe, from_description, init,
                                      num_params)
from jointrd_jax.models.convs import CONVS
from jointrd_jax.models.layers import (BN_EPSILON, BN_MOMENTUM, DIRAC_MODES, Conv, ConvBN,
                                       conv_init, max_pool, relu_max_pool)
from jointrd_jax.models.resnet import (CONV_SCOPE, EXPANSION, IMAGE_SIZE,
                                       NUM_CLASSES, NUM_STAGES, STEM, Block, FoldedConv, ResNet,
                                       block_units, shortcut_plan)

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
