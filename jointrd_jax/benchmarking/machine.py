"""The machine a measurement ran on: devices, CPU model, its vector instructions, cores,
load."""
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


# The vector extensions that int8 and fp32 kernel speed depend on, widest first (a VNNI /
# dot-product instruction above all: docs/speed.md measures int8 on LiteRT about as fast as
# fp32 on an AVX2 host without one).
ISA_FLAGS = ("avx512_vnni", "avx_vnni", "avx512f", "avx2", "avx", "neon", "asimddp")


def vector_isa(flags_text: str = None) -> str:
  """The CPU's vector extensions among `ISA_FLAGS` (from `/proc/cpuinfo`), e.g.
  'avx2, no VNNI'; '?' where unknown."""
  if flags_text is None:
    try:
      with open("/proc/cpuinfo") as f:
        flags_text = next((line for line in f if line.split(":")[0].strip() in
                           ("flags", "Features")), "")
    except OSError:
      return "?"
  flags = set(flags_text.split(":", 1)[-1].split())
  found = [f for f in ISA_FLAGS if f in flags]
  if not found:
    return "?"
  vnni = any(f in flags for f in ("avx512_vnni", "avx_vnni", "asimddp"))
  return ", ".join(found) + ("" if vnni else ", no VNNI")


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
  return {"cpu": cpu_name(), "isa": vector_isa(), "cpu_count": os.cpu_count(),
          "cpus_usable": usable_cpus(), "load_average_1m": load_average()}


def host_line(mach: dict) -> str:
  """`host()` in one line, for the scripts' first line."""
  return (f"{mach['cpu']} ({mach.get('isa', '?')}) / {mach['cpu_count']} CPUs "
          f"({mach['cpus_usable']} usable) / load {mach['load_average_1m']}")


def describe() -> dict:
  """Devices (JAX's first device and the count), CPU, cores and the JAX version."""
  d = jax.devices()[0]
  return {"platform": d.platform, "device_kind": d.device_kind, "num_devices": jax.device_count(),
          "cpu": cpu_name(), "isa": vector_isa(), "cpu_count": os.cpu_count(),
          "cpus_usable": usable_cpus(), "jax": jax.__version__}


def describe_line(mach: dict) -> str:
  """`describe()` in one line (the XLA benchmarks' first line, after `# machine: `)."""
  return (f"{mach['platform']} / {mach['device_kind']} / {mach['cpu']} "
          f"({mach.get('isa', '?')}) / {mach['cpu_count']} CPUs ({mach['cpus_usable']} usable) "
          f"/ jax {mach['jax']}")
