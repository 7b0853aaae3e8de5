"""What XLA says about a compiled program (its cost and memory analyses) and what the
device says about its memory. Each returns None / {} where the backend has no answer."""

# `compiled.memory_analysis()` fields, in bytes.
MEMORY_FIELDS = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                 "alias_size_in_bytes")
MEMORY_FIELDS_ALL = MEMORY_FIELDS + (
    "generated_code_size_in_bytes", "peak_memory_in_bytes", "host_temp_size_in_bytes",
    "host_argument_size_in_bytes", "host_output_size_in_bytes")


def cost(compiled, key: str = "flops"):
  """`cost_analysis()[key]` of the compiled program (one device's share on a multi-device
  mesh), a positive float, or None."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  value = (analysis or {}).get(key)
  return float(value) if value is not None and value > 0 else None


def memory(compiled, fields=MEMORY_FIELDS, estimate_key: str = "live_bytes_estimate") -> dict:
  """The `fields` of `compiled.memory_analysis()` the backend reports (bytes), and
  `estimate_key` = argument + output + temp - alias: everything XLA allocates for one
  call, live at once (an upper bound of the true peak)."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    m = None
  if m is None:
    return {}
  out = {k: int(getattr(m, k)) for k in fields if getattr(m, k, None) is not None}
  if {"argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes"} <= set(out):
    out[estimate_key] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                         + out["temp_size_in_bytes"] - out.get("alias_size_in_bytes", 0))
  return out


def device_peak_bytes(device):
  """`device.memory_stats()['peak_bytes_in_use']` (GPU: the process's peak so far), or None."""
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except
    return None
  v = (stats or {}).get("peak_bytes_in_use")
  return int(v) if v else None
