"""Moved to `jointrd_jax.models.batchnorm`; this name keeps working."""
from jointrd_jax.models.batchnorm import BatchNorm  # noqa: F401
