"""Training recipes, chosen by one config key (`--config.recipe=NAME`).

A recipe sets the defaults of the training keys (`RECIPE_KEYS`: epochs, batch, the SGD
optimizer and its learning-rate drops); any of them set explicitly, by a config file (the
`:smoke` variants) or on the command line, wins whatever the order. The config files hold
each of those keys as an ml_collections `FieldReference` computed lazily from `recipe`
(`configs/recipe_keys.py`; this module, the recipes' values, imports no ml_collections, so
the trainer's benchmark runs without it), so `--config.recipe=mdistiller --config.num_epochs=30` trains 30 epochs under
mdistiller's optimizer; config.json and summary.json record the resolved values.

CIFAR configs (configs/*.py): `jointrd` (the paper's; the default) or `mdistiller` (the
recipe DKD, DIST and logit standardisation were published with: mdistiller's CIFAR-100
solver). ImageNet configs (configs/imagenet/*.py): `jointrd` (the release's) or
`torchvision` (torchvision's classic ResNet recipe, references/classification).
"""

from jointrd_jax.errors import UserError

DEFAULT = "jointrd"
# The keys a recipe sets: (section or '', key).
RECIPE_KEYS = (("", "num_epochs"), ("", "batch_size"), ("optimizer", "learning_rate"),
               ("optimizer", "momentum"), ("optimizer", "nesterov"),
               ("optimizer", "weight_decay"), ("optimizer", "lr_drop_at"),
               ("optimizer", "lr_drop_factor"))


def _recipe(num_epochs, batch_size, learning_rate, nesterov, weight_decay, drop_epochs):
  """A recipe's values; `drop_epochs` become fractions of `num_epochs` (lr_drop_at)."""
  return {"num_epochs": num_epochs, "batch_size": batch_size,
          "learning_rate": learning_rate, "momentum": 0.9, "nesterov": nesterov,
          "weight_decay": weight_decay,
          "lr_drop_at": tuple(e / num_epochs for e in drop_epochs), "lr_drop_factor": 0.1}


RECIPES = {
    "cifar": {
        # The paper's (§6): SGD Nesterov, lr 0.1 x0.1 at epochs 100, 150 of 200.
        "jointrd": _recipe(200, 128, 0.1, True, 5e-4, (100, 150)),
        # mdistiller's CIFAR-100 solver (configs/cifar100/*.yaml, engine/trainer.py):
        # SGD momentum 0.9 without Nesterov, lr 0.05 x0.1 at epochs 150, 180, 210 of 240.
        "mdistiller": _recipe(240, 64, 0.05, False, 5e-4, (150, 180, 210)),
    },
    "imagenet": {
        # The release's: SGD Nesterov, lr 0.2 x0.1 at epochs 30, 60, 90 of 120, batch 512.
        "jointrd": _recipe(120, 512, 0.2, True, 1e-4, (30, 60, 90)),
        # torchvision's classic ResNet recipe: lr 0.1 x0.1 every 30 epochs of 90, batch 256.
        "torchvision": _recipe(90, 256, 0.1, False, 1e-4, (30, 60)),
    },
}
WHERE = {"cifar": "the CIFAR configs, configs/*.py", "imagenet": "configs/imagenet/*.py"}


def family_of(name: str):
  """The family that offers recipe `name` (None: both, or none)."""
  owners = [f for f, table in RECIPES.items() if name in table]
  return owners[0] if len(owners) == 1 else None


def check(config) -> None:
  """Refuses an unknown recipe, or one of the other family's configs (one line each)."""
  name = config.get("recipe", DEFAULT)
  if not any(name in table for table in RECIPES.values()):
    choices = "; ".join(f"{' or '.join(t)} for {WHERE[f]}" for f, t in RECIPES.items())
    raise UserError(f"unknown recipe {name!r}; choose {choices} (--config.recipe=NAME).")
  if any((config[s] if s else config)[k] is None for s, k in RECIPE_KEYS):
    other = [f for f in RECIPES if f != family_of(name)][0]
    raise UserError(f"--config.recipe={name} is a recipe of {WHERE[family_of(name)]}; this "
                    f"config's are {' and '.join(RECIPES[other])} (--config.recipe=NAME).")


def describe(config) -> str:
  """'recipe jointrd: SGD lr 0.1 Nesterov 0.9, x0.1 at epochs 100, 150, weight decay 5e-4'
  of a config (a ConfigDict, or the dict of a config.json)."""
  o, n = config["optimizer"], config["num_epochs"]
  drops = ", ".join(str(int(round(f * n))) for f in sorted(o["lr_drop_at"]))
  sgd = f"{'Nesterov' if o['nesterov'] else 'momentum'} {o['momentum']:g}"
  return (f"recipe {config.get('recipe', DEFAULT)}: SGD lr {o['learning_rate']:g} {sgd}, "
          f"x{o['lr_drop_factor']:g} at epochs {drops or 'none'}, weight decay "
          f"{o['weight_decay']:g}")
