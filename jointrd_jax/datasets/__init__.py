"""Input pipelines.

- `sources`: the data sources by name (`sources.get('cifar100')`, `npz:PATH`, `synthetic`,
  `digits`, `imagefolder:PATH`, `imagenet2012`, ...): one module each, every question
  about a dataset answered there;
- `arrays`: datasets that fit in memory as numpy arrays, and their loaders;
- `in_memory`: those arrays on the accelerators, with jitted shuffling and augmentation;
- `streamed`: datasets read from disk as the run goes (ImageNet-style).
"""
from jointrd_jax.datasets.arrays import synthetic_arrays
from jointrd_jax.datasets.in_memory import (Data, augment, epoch_inputs, eval_batches, load,
                                            make_batch, normalize, steps_per_epoch,
                                            train_batches)
from jointrd_jax.datasets import cifar_python, sources, streamed
from jointrd_jax.datasets.synthetic_folder import make_image_folder
