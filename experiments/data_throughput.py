r"""Training-batch throughput of the input pipeline on this machine.

  python -m experiments.data_throughput [--batch_sizes=128,512] [--dataset=synthetic]

For each batch size: builds the pipeline over all local devices, runs
`--warmup` steps (compilation included), then times `--steps` batches,
blocking on each one, and prints the median images/s.
"""
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from jointrd_jax import datasets
from jointrd_jax.errors import UserError
from jointrd_jax.sharding import make_mesh

_BATCH_SIZES = flags.DEFINE_list("batch_sizes", ["128", "512"], "Global batch sizes to time.")
_DATASET = flags.DEFINE_string("dataset", "synthetic", "cifar100, cifar10, npz:PATH or synthetic.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir (CIFAR only).")
_STEPS = flags.DEFINE_integer("steps", 30, "Timed steps per batch size.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Image dtype.")


def throughput(data, batch_size: int, steps: int, warmup: int, dtype) -> float:
  """Median images/s over `steps` blocked batches after `warmup` batches."""
  datasets.steps_per_epoch(data.num_train, batch_size)  # validates batch_size
  times = []
  epoch, it = 0, None
  for i in range(warmup + steps):
    if it is None:
      it = datasets.train_batches(data, seed=0, epoch=epoch, batch_size=batch_size,
                                        dtype=dtype)
    t = time.perf_counter()
    batch = next(it, None)
    if batch is None:  # epoch exhausted: next epoch (its permutation is cheap)
      epoch, it = epoch + 1, None
      it = datasets.train_batches(data, seed=0, epoch=epoch, batch_size=batch_size,
                                        dtype=dtype)
      t = time.perf_counter()
      batch = next(it)
    jax.block_until_ready(batch)
    if i >= warmup:
      times.append(time.perf_counter() - t)
  return batch_size / statistics.median(times)


def main(argv):
  del argv
  try:
    mesh = make_mesh()
    data = datasets.load(_DATASET.value, mesh=mesh, data_dir=_DATA_DIR.value,
                               download=False)
    print(f"dataset={data.name} train={data.num_train} image={data.image_shape} "
          f"devices={mesh.devices.size} ({jax.devices()[0].platform}) dtype={_DTYPE.value}")
    for b in _BATCH_SIZES.value:
      ips = throughput(data, int(b), _STEPS.value, _WARMUP.value, jnp.dtype(_DTYPE.value))
      print(f"batch_size={int(b):6d}  {ips:12,.0f} images/s  (median of {_STEPS.value} steps)")
  except UserError as e:
    raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
  app.run(main)
