"""Moved to `jointrd_jax.deploy.predict`; this name keeps working (the same module object)."""
import sys

from jointrd_jax.deploy import predict as _moved

sys.modules[__name__] = _moved
