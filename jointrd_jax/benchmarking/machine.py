"""The machine a measurement ran on: devices, CPU model, cores, load."""
import os
import platform

import jax


def cpu_name() -> str:
  """The CPU's model name (`/proc/cpuinfo`), else what `platform` knows."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def usable_cpus() -> int:
  """Cores this process may run on (its affinity mask), else every core."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    return os.cpu_count() or 1


def load_average() -> str:
  """The 1-minute load average as `/proc/loadavg` gives it, or '?'."""
  try:
    with open("/proc/loadavg") as f:
      return f.read().split()[0]
  except OSError:
    return "?"


def host() -> dict:
  """The CPU, its cores and the load, without importing JAX."""
  return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpus_usable": usable_cpus(),
          "load_average_1m": load_average()}


def host_line(mach: dict) -> str:
  """`host()` in one line, for the scripts' first line."""
  return (f"{mach['cpu']} / {mach['cpu_count']} CPUs ({mach['cpus_usable']} usable) / load "
          f"{mach['load_average_1m']}")


def describe() -> dict:
  """Devices (JAX's first device and the count), CPU, cores and the JAX version."""
  d = jax.devices()[0]
  return {"platform": d.platform, "device_kind": d.device_kind, "num_devices": jax.device_count(),
          "cpu": cpu_name(), "cpu_count": os.cpu_count(), "cpus_usable": usable_cpus(),
          "jax": jax.__version__}


def describe_line(mach: dict) -> str:
  """`describe()` in one line (the XLA benchmarks' first line, after `# machine: `)."""
  return (f"{mach['platform']} / {mach['device_kind']} / {mach['cpu']} / {mach['cpu_count']} "
          f"CPUs ({mach['cpus_usable']} usable) / jax {mach['jax']}")
