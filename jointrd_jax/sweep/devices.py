"""Which accelerators a sweep's local runs go to, decided without initialising JAX: each
of `parallel` slots is an environment (the devices a run started there sees) and a label
for the status table."""
import dataclasses
import glob
import math
import os
from typing import Dict, List

from jointrd_jax.errors import UserError

TPU_BASE_PORT = 8476
MEM_FRACTION = "XLA_PYTHON_CLIENT_MEM_FRACTION"
USABLE_MEMORY = 0.9  # of a GPU, shared by the runs on it


@dataclasses.dataclass(frozen=True)
class Slot:
  env: Dict[str, str]  # set in the environment of a run started in this slot
  device: str          # 'GPU 0', 'GPUs 0,1', 'TPU chip 2', 'CPU', 'all 2 GPUs'


def detect_accelerators(platform: str = "auto", devices: int = 0):
  """(platform, device ids visible to this process) without initialising JAX."""
  platform = platform.lower()
  if platform not in ("auto", "gpu", "tpu", "cpu"):
    raise UserError(f"config.platform={platform!r}; choose auto, gpu, tpu or cpu.")
  gpu_ids, tpu_ids = _gpu_ids(), _tpu_ids()
  if platform == "auto":
    wanted = os.environ.get("JAX_PLATFORMS", "").split(",")[0].strip().lower()
    if wanted in ("cuda", "gpu", "rocm"):
      platform = "gpu"
    elif wanted in ("tpu", "cpu"):
      platform = wanted
    else:
      platform = "gpu" if gpu_ids else "tpu" if tpu_ids else "cpu"
  ids = {"gpu": gpu_ids, "tpu": tpu_ids, "cpu": []}[platform]
  if devices:
    ids = ids[:devices] if len(ids) >= devices else [str(i) for i in range(devices)]
  if platform != "cpu" and not ids:
    raise UserError(f"found no {platform.upper()}s to pin runs to; give their number with "
                    "--config.devices=N (or --config.platform=cpu).")
  return platform, ids


def _gpu_ids() -> List[str]:
  visible = os.environ.get("CUDA_VISIBLE_DEVICES")
  if visible is not None:
    ids = [x.strip() for x in visible.split(",") if x.strip()]
    return [] if ids[:1] == ["-1"] else ids
  n = len(glob.glob("/proc/driver/nvidia/gpus/*"))
  return [str(i) for i in range(n)]


def _tpu_ids() -> List[str]:
  n = len(glob.glob("/dev/accel[0-9]*")) or len(glob.glob("/dev/vfio/[0-9]*"))
  return [str(i) for i in range(n)]


def memory_share(runs_per_device: int) -> str:
  """Each of K runs' share of one GPU's memory, rounded down to 3 decimals: '0.45' for 2."""
  return f"{max(1, math.floor(USABLE_MEMORY * 1000 / runs_per_device)) / 1000:g}"


def slots(platform: str, ids: List[str], parallel: int = 0,
          runs_per_device: int = 1) -> List[Slot]:
  """The slots of `parallel` runs at once, `runs_per_device` of them per accelerator at most.

  `parallel` 0 = accelerators x runs_per_device (on a CPU host: runs_per_device).
  runs_per_device 1: one slot sees every device (data parallel), several split the GPUs
  into equal groups (one GPU each when `parallel` == their number) or get a TPU chip each.
  runs_per_device K > 1: each run sees one GPU (`CUDA_VISIBLE_DEVICES`), K per GPU, placed
  round-robin, each limited to 0.9/K of its memory (`XLA_PYTHON_CLIENT_MEM_FRACTION`;
  `XLA_PYTHON_CLIENT_PREALLOCATE` is left as the caller set it). Refused on TPUs, whose
  chips each belong to one process. On a CPU host, K runs are just K processes.
  """
  k = runs_per_device
  if k < 1:
    raise UserError(f"runs_per_device={k} must be >= 1 (runs sharing one accelerator).")
  if platform == "tpu" and k > 1:
    raise UserError(f"runs_per_device={k} is impossible on TPUs: a TPU chip belongs to one "
                    "process; use --runs_per_device=1 (one run per chip).")
  name = platform.upper()
  if parallel <= 0:
    parallel = k if platform == "cpu" else max(1, len(ids)) * k
  if platform == "cpu":
    return [Slot({}, "CPU") for _ in range(parallel)]
  if parallel > len(ids) * k:
    raise UserError(
        f"--parallel {parallel} but this host has {len(ids)} {name}(s) and runs_per_device={k}; "
        f"use at most {len(ids) * k} ({k} run(s) per device), or raise --runs_per_device.")
  if k > 1:
    share = memory_share(k)
    return [Slot({"CUDA_VISIBLE_DEVICES": ids[i % len(ids)], MEM_FRACTION: share},
                 f"GPU {ids[i % len(ids)]}") for i in range(parallel)]
  if parallel == 1:
    return [Slot({}, f"all {len(ids)} {name}s" if len(ids) > 1 else f"{name} {ids[0]}")]
  if platform == "gpu":
    per = len(ids) // parallel
    groups = [ids[i * per:(i + 1) * per] for i in range(parallel)]
    return [Slot({"CUDA_VISIBLE_DEVICES": ",".join(g)},
                 f"GPU{'s' if len(g) > 1 else ''} {','.join(g)}") for g in groups]
  out = []
  for i in range(parallel):
    port = str(TPU_BASE_PORT + i)
    out.append(Slot({"TPU_VISIBLE_CHIPS": ids[i], "TPU_VISIBLE_DEVICES": ids[i],
                     "TPU_CHIPS_PER_PROCESS_BOUNDS": "1,1,1", "TPU_PROCESS_BOUNDS": "1,1,1",
                     "TPU_PROCESS_PORT": port,
                     "TPU_MESH_CONTROLLER_ADDRESS": f"localhost:{port}",
                     "TPU_MESH_CONTROLLER_PORT": port}, f"TPU chip {ids[i]}"))
  return out


def slot_envs(platform: str, ids: List[str], parallel: int = 0,
              runs_per_device: int = 1) -> List[Dict[str, str]]:
  """The environment of each slot (see `slots`)."""
  return [s.env for s in slots(platform, ids, parallel, runs_per_device)]


def describe(slot_list: List[Slot], platform: str) -> str:
  """'2 at a time (GPU 0, GPU 1, GPU 0, GPU 1)' for the sweep's first line."""
  if len(slot_list) == 1:
    where = f"on {slot_list[0].device}"
    if slot_list[0].device == "CPU":
      where = "on the CPU"
  elif platform == "cpu":
    where = "separate processes sharing the CPU"
  else:
    where = "on " + ", ".join(s.device for s in slot_list)
    share = slot_list[0].env.get(MEM_FRACTION)
    if share:
      where += f", {share} of a GPU's memory each"
  return f"{len(slot_list)} at a time ({where})"
