"""Moved to `jointrd_jax.deploy.export`; this name keeps working (the same module object)."""
import sys

from jointrd_jax.deploy import export as _moved

sys.modules[__name__] = _moved
