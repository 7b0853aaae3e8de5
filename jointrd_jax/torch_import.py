"""Moved to `jointrd_jax.deploy.torch_import`; this name keeps working (the same module object)."""
import sys

from jointrd_jax.deploy import torch_import as _moved

sys.modules[__name__] = _moved
