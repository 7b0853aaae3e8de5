"""jointrd-jax: Residual Distillation (JointRD) and its KD baselines in JAX/Flax."""

__version__ = "0.1.0"
