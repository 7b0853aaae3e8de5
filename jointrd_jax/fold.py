"""Moved to `jointrd_jax.models.fold`; this name keeps working."""
from jointrd_jax.models.fold import fold, to_numpy  # noqa: F401
