"""What the zoo's networks share: the stage plan of a basic-block network, the head, and
the conv units of the conv kinds."""
import flax.linen as nn
import jax.numpy as jnp

from jointrd_jax.models.layers import torch_linear_init

SHORTCUT_OF = {  # policy -> (the block's shortcut where it needs a projection, elsewhere)
    "all": ("projection", "identity"),
    "projection": ("projection", "none"),
    "none": ("none", "none"),
}


def basic_plan(in_ch: int, widths, blocks: int, shortcuts: str):
  """The shortcut of every block of a basic-block network (stride 2 at the first block of
  stages 2..): a projection where the shape changes, identity elsewhere (`all`); the
  projections only (`projection`); none (`none`)."""
  plan = []
  for i, out_ch in enumerate(widths):
    stage = []
    for j in range(blocks):
      needs_projection = (i > 0 and j == 0) or in_ch != out_ch
      stage.append(SHORTCUT_OF[shortcuts][0 if needs_projection else 1])
      in_ch = out_ch
    plan.append(tuple(stage))
  return tuple(plan)


def head(x, num_classes: int, dtype, param_dtype):
  """ReLU, global average pool, linear (child `head`): the logits."""
  x = jnp.mean(nn.relu(x), axis=(1, 2))
  return nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype,
                  kernel_init=torch_linear_init(x.shape[-1]),
                  bias_init=torch_linear_init(x.shape[-1]), name="head")(x)
