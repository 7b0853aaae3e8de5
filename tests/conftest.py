"""Test-session setup shared by all tests.

8 fake CPU devices, so sharding is exercised on one machine. XLA reads the flag
when jax initialises its backends, so it must be set here, before any test
module imports jax. Tests that want one device use `jax.devices('cpu')[:1]`.
"""
import os

_flags = os.environ.get("XLA_FLAGS", "")
if "--xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = f"{_flags} --xla_force_host_platform_device_count=8".strip()
