"""Table 12 and beyond: `python -m experiments.table12 --config=configs/table12_extended.py
--workdir=DIR`.

The sweep of configs/table12.py (the same keys, teacher, seeds and recipe) over the paper's
methods and every method added beside them: the strongest logit losses of today's
distillation toolkits (DKD, DIST, KD with logit standardisation, each with its paper's
loss settings), JointRD combined with DKD, and RepVGG-style plain students. Every method
trains under one recipe: JointRD's (the default) or, with `--config.base.recipe=mdistiller`,
the one DKD, DIST and logit standardisation were published with (results.md names it;
jointrd_jax/recipes.py). In `results.md` the
paper's four rows are marked †. `:smoke` runs the paper's four methods and every added one
once, one epoch on a smaller smoke set: a check of the plumbing, not of accuracy (its
results.md and printed table say so; the methods' numbers may coincide).
"""
from configs import table12
from jointrd_jax import methods

# Every other preset, in the registry's order: a new preset joins the sweep by itself.
EXTENDED_METHODS = tuple(m for m in methods.METHODS
                         if m not in table12.TABLE12_METHODS + table12.OTHER_METHODS)


def get_config(arg: str = ""):
  c = table12.get_config(arg)
  c.methods = table12.TABLE12_METHODS + table12.OTHER_METHODS + EXTENDED_METHODS
  if arg == "smoke":
    # The paper's four rows and every added method once, as small as the pipeline allows
    # (CI runs it): 1 epoch of 4 steps. (kd_logits, plain, plain_dirac: configs/table12.py.)
    c.methods = table12.TABLE12_METHODS + EXTENDED_METHODS
    c.seeds = (0,)
    c.base.num_epochs = 1
    c.base.synthetic.update(dict(train_size=128, test_size=64))
    c.base.eval_batch_size = 64
  return c
