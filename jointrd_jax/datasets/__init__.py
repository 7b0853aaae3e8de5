"""Input pipelines.

- `arrays`: datasets that fit in memory as numpy arrays (CIFAR-10/100 from TFDS or from the
  python-version archives (`cifar_python`), a user `.npz`, generated synthetic data);
- `in_memory`: those arrays on the accelerators, with jitted shuffling and augmentation.
"""
from jointrd_jax.datasets.arrays import synthetic_arrays
from jointrd_jax.datasets.in_memory import (Data, augment, epoch_inputs, eval_batches, load,
                                            make_batch, normalize, steps_per_epoch,
                                            train_batches)
from jointrd_jax.datasets import cifar_python, streamed
from jointrd_jax.datasets.synthetic_folder import make_image_folder
