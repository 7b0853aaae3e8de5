"""Moved to `jointrd_jax.models.dirac`; this name keeps working."""
from jointrd_jax.models.dirac import *  # noqa: F401,F403
from jointrd_jax.models.dirac import A_NAME, B_INIT, B_NAME, PARAM_PREFIX  # noqa: F401
