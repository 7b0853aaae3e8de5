"""The full recipe of the reference (§6), shared by every method's config.

    python -m experiments.main --config=configs/default.py --workdir=runs/resnet50

trains the ResNet-50 baseline on CIFAR-100 (the teacher of every distillation method).
Each method's file (configs/<method>.py) changes `method` and nothing else; append
`:smoke` to any of them for a tiny network on synthetic data that finishes in seconds.
Override any key with `--config.KEY=VALUE`; unknown keys and wrong types are refused.
`--config.recipe=mdistiller` trains under mdistiller's recipe instead of the paper's
(jointrd_jax/recipes.py); keys set explicitly keep their values.
"""
import ml_collections
from ml_collections import config_dict

from configs import recipe_keys
from jointrd_jax import methods

ARGS = ("", "smoke")


def loss_config() -> ml_collections.ConfigDict:
  """`{term: {weight, each setting}}` for every registered loss term, all unset (None,
  typed like the term's defaults): a term's settings live under its own key."""
  return ml_collections.ConfigDict({
      name: {key: config_dict.placeholder(type(value))
             for key, value in {"weight": float(term.weight), **term.params}.items()}
      for name, term in sorted(methods.TERMS.items())})


# The settings counted in epochs are fractions of the run (0.3 and 0.1 of CIFAR's 200
# epochs: JointRD's horizon 60, DKD's warm-up 20); the smoke runs (2 epochs) keep the
# absolute values they had before, so their recorded numbers stay bitwise the same.
SMOKE_EPOCHS = {"jointrd": {"decay_epochs": 60}, "dkd": {"warmup_epochs": 20}}


def keep_smoke_epochs(c, arg: str, *terms: str):
  """In a smoke config (`arg`), `terms`' absolute epoch settings of SMOKE_EPOCHS, where the
  file sets none: for the files of the methods with those terms."""
  if arg == "smoke":
    for term in terms:
      for key, value in SMOKE_EPOCHS[term].items():
        if c.loss[term][key] is None:
          c.loss[term][key] = value


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.method = "resnet"  # a preset of jointrd_jax/methods/presets.py (docs/methods.md)

  # Data: a source by name (jointrd_jax/datasets/sources/, one module each; an unknown name
  # lists them): cifar100 | cifar10 (TFDS) | npz:PATH | digits | synthetic (generated:
  # arrays for the CIFAR archs, a folder of JPEGs streamed for the imagenet_* archs) | ...
  c.dataset = "cifar100"
  c.data_dir = ""          # TFDS data_dir ('' = TFDS default, ~/tensorflow_datasets)
  c.download = True        # fetch and prepare CIFAR into data_dir on first use
  c.holdout = 0            # >0: hold out this many training images as the eval split
  c.synthetic = ml_collections.ConfigDict(
      dict(train_size=50_000, test_size=10_000, num_classes=100, image_size=32))
  # Streamed datasets only (ImageNet: imagefolder:PATH, imagenet2012; configs/imagenet/):
  # the training crop and the evaluation resize (shorter side, then centre crop); host
  # decoding threads per process (0 = TensorFlow's choice), batches buffered ahead,
  # imagenet2012's shuffle buffer (images), and the training crop's resize: 'antialias'
  # (torchvision's: PIL's antialiased bilinear) or 'fast' (bilinear without antialiasing,
  # ~35 % more images/s per host core, aliased crops).
  c.streamed = ml_collections.ConfigDict(dict(
      image_size=224, eval_resize=256, threads=0, prefetch=2, shuffle_buffer=8192,
      resize="antialias"))

  # The trained network; empty shortcuts/conv take the method's defaults. conv: the
  # student's convolution, a kind of the registry jointrd_jax/models/convs.py (listed in
  # docs/methods.md, generated from it); dirac is its former name.
  c.model = ml_collections.ConfigDict(dict(arch="resnet50", width=64, shortcuts="", conv="",
                                           dirac=""))
  # The teacher of distillation methods: a ResNet run's workdir, or '' to train one
  # into WORKDIR/teacher first. arch/width '' / 0 = the student's.
  # fold: a frozen teacher's BatchNorm is folded into its convs once per run (it only runs
  # in inference mode); the same results to float rounding, fewer operations per step.
  c.teacher = ml_collections.ConfigDict(dict(checkpoint="", arch="", width=0, train="frozen",
                                             fold=True))
  # The method's loss terms: '' = its own; 'a,b:0.5' = exactly these (name:weight);
  # '+b:0.5' = its own and these (e.g. --config.method=jointrd --config.terms=+dkd:0.5).
  c.terms = ""
  # Each term's weight and settings, `loss.<term>.<key>` (e.g. --config.loss.kd.temperature=2):
  # unset (None) = the method's value (README "Methods and configs"; jointrd_jax/methods/).
  c.loss = loss_config()

  # Recipe (jointrd_jax/recipes.py): 'jointrd' = 200 epochs, batch 128, SGD Nesterov 0.9,
  # lr 0.1 x0.1 at epochs 100, 150 (lr_drop_at is a fraction of num_epochs), weight decay
  # 5e-4 except Dirac a, b; 'mdistiller' = 240 epochs, batch 64, SGD momentum 0.9, lr 0.05
  # x0.1 at 150, 180, 210, weight decay 5e-4. It sets num_epochs, batch_size (global, over
  # all devices and processes) and optimizer.* (but skip_zero_sum_grads); a key set
  # explicitly wins. skip_zero_sum_grads: the release's SGD rule, a tensor whose gradient
  # sums to exactly 0.0 is left as it is for that step (no update, decay or momentum).
  c.eval_batch_size = 1000
  c.optimizer = ml_collections.ConfigDict(dict(skip_zero_sum_grads=False))
  recipe_keys.install(c, "cifar")
  c.seed = 0
  # bf16 compute with fp32 parameters; unset = on for GPU/TPU, off on CPU.
  c.half_precision = config_dict.placeholder(bool)

  c.log_every_steps = 100
  # JointRD's hybrid paths are evaluated (a diagnostic, ~2x the student's forward) every N
  # epochs and at the last; the student every epoch, a frozen teacher once per run.
  c.eval_hybrids_every_epochs = 10
  # Optimizer steps per dispatch (one jitted loop over a chunk of steps, the batches
  # computed inside; chunks also end at log steps and epoch ends): fewer round trips from
  # Python. 0 = automatic: 10 on GPU/TPU, 1 on CPU (where XLA runs loops slowly).
  c.steps_per_dispatch = 0
  c.checkpoint_every_epochs = 10
  c.keep_checkpoints = 2
  c.overwrite = False      # True: discard what the workdir holds and start afresh

  if arg not in ARGS:
    raise ValueError(f"unknown config argument {arg!r}; append nothing or ':smoke' to the file "
                     "name (e.g. --config=configs/jointrd.py:smoke)")
  if arg == "smoke":
    # Seconds on a laptop CPU, and still a real test of the pipeline: the synthetic task
    # is learnable within the budget (the ResNet reaches > 90 % test top-1, every student
    # far above the 10 % of chance), so a broken pipeline shows.
    c.dataset = "synthetic"
    c.synthetic.update(dict(train_size=512, test_size=200, num_classes=10))
    c.model.update(dict(arch="resnet10", width=16))
    c.num_epochs = 2
    c.batch_size = 32
    c.eval_batch_size = 200
    c.optimizer.learning_rate = 0.03  # stable for this narrow net without warm-up
    c.log_every_steps = 4
    c.checkpoint_every_epochs = 1
    c.eval_hybrids_every_epochs = 1
  return c
