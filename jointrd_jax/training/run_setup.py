"""From a run's config to its pieces, before anything is trained: the checks of the config
(one line each), the data, the method, the feed, the device defaults."""
import jax
import jax.numpy as jnp

from jointrd_jax import compat, datasets, methods, models
from jointrd_jax.errors import UserError
from jointrd_jax.training import feeds, recipes, teachers


def validate(config) -> None:
  """Value checks the config types cannot express; one clear line each."""
  recipes.check(config)  # first: an unknown recipe leaves its keys unset
  if config.method not in methods.METHODS:
    raise UserError(f"unknown method {config.method!r}; choose one of "
                    f"{', '.join(methods.METHODS)} (--config.method).")
  for key, arch in (("model.arch", config.model.arch), ("teacher.arch", config.teacher.arch)):
    if arch and arch not in models.arch_names():
      raise UserError(f"unknown arch {arch!r}; choose one of {', '.join(models.arch_names())} "
                      f"(--config.{key}).")
  for key in ("num_epochs", "batch_size", "eval_batch_size", "log_every_steps",
              "checkpoint_every_epochs", "keep_checkpoints"):
    if config[key] <= 0:
      raise UserError(f"config.{key}={config[key]} must be positive (--config.{key}=N).")
  if config.eval_hybrids_every_epochs < 0:
    raise UserError(f"config.eval_hybrids_every_epochs={config.eval_hybrids_every_epochs} "
                    "must be >= 0 (0 = at the last epoch only).")
  if config.model.width <= 0:
    raise UserError(f"config.model.width={config.model.width} must be positive.")
  if config.steps_per_dispatch < 0:
    raise UserError(f"config.steps_per_dispatch={config.steps_per_dispatch} must be >= 0 "
                    "(0 = automatic).")
  if not all(isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1
             for f in config.optimizer.lr_drop_at):
    shown = ", ".join(str(f) for f in config.optimizer.lr_drop_at)
    raise UserError(f"config.optimizer.lr_drop_at=({shown}) must hold "
                    "fractions of num_epochs in (0, 1], e.g. "
                    "--config.optimizer.lr_drop_at='(0.5, 0.75)'.")
  if config.teacher.train not in methods.TEACHER_TRAIN:
    raise UserError(f"config.teacher.train={config.teacher.train!r}; choose frozen or joint.")
  for key, value in (("model.conv", config.model.conv), ("model.dirac", config.model.dirac)):
    if value and value not in models.CONVS:
      raise UserError(f"unknown conv {value!r}; choose one of {', '.join(models.CONVS)} "
                      f"(--config.{key}).")
  compat.conv_of_model(config.model)  # model.dirac: conv's former key, the same or unset
  try:  # the terms and their settings (names, weights, ranges), before anything is loaded
    weighted = methods.resolve_terms(config.method, config.terms, config.loss.to_dict(),
                                     config.num_epochs)
  except methods.SettingError:
    raise  # names its key already
  except UserError as e:
    raise UserError(f"{e} (--config.terms, --config.loss.TERM.KEY)") from None
  check_groups(config, weighted)
  refuse_meaningless(config)


def refuse_meaningless(config) -> None:
  """Settings that would change nothing for this method and data are refused (one line
  naming the key): a teacher's on a method without a teacher, a frozen teacher's
  (`checkpoint`, `fold`) with `teacher.train='joint'` (trained from scratch beside the
  student), `data_dir` with a dataset that does not read one (the source says:
  `reads_data_dir`; e.g. `npz:`, `imagefolder:`, the in-memory synthetic arrays)."""
  t = config.teacher
  if not methods.needs_teacher(config.method, config.terms):
    for key, unset in methods.TEACHER_UNSET.items():
      if t[key] != unset:
        raise UserError(f"--config.teacher.{key}={t[key]}: "
                        f"{methods.method_label(config.method, config.terms)} trains without a "
                        "teacher, so the setting would change nothing; drop it (or choose a "
                        "method with a teacher, e.g. jointrd).")
  elif t.train == "joint":
    for key in ("checkpoint", "fold"):
      if t[key] != methods.TEACHER_UNSET[key]:
        raise UserError(f"--config.teacher.{key}={t[key]}: with teacher.train='joint' the "
                        "teacher is trained from scratch beside the student, so the setting "
                        "would change nothing; drop it (or use teacher.train='frozen').")
  ds = datasets.sources.get(config.dataset)
  if config.data_dir and not ds.reads_data_dir(is_streamed(config)):
    readers = ", ".join(name for name, s in datasets.sources.SOURCES.items() if s.tfds)
    raise UserError(f"--config.data_dir={config.data_dir}: dataset {config.dataset!r} does "
                    "not read a data_dir, so the setting would change nothing; drop it (it is "
                    f"for TFDS datasets: {readers}).")


def check_groups(config, weighted) -> None:
  """DIST's intra-class groups (`loss.dist.intra_group` images each, contiguous slices of the
  global batch) must tile the batch: a group size that neither holds the whole batch nor
  divides it is refused."""
  for w in weighted:
    group = w.params.get("intra_group") if w.name == "dist" else None
    if group and group < config.batch_size and config.batch_size % group:
      raise UserError(
          f"--config.loss.dist.intra_group={group} does not divide the batch "
          f"(--config.batch_size={config.batch_size}): DIST's intra-class term is computed "
          f"over groups of {group} images; set intra_group to a divisor of "
          f"{config.batch_size} or the batch size to a multiple of {group}.")


def check_data_present(config) -> None:
  """Data known to be absent is refused before anything is loaded, in one line that says how
  to get it (each source's `check_present`: a python-version CIFAR archive without its
  files; a TFDS CIFAR not prepared in an explicit data_dir with --config.download=False;
  the digits without scikit-learn)."""
  datasets.sources.get(config.dataset).check_present(data_dir=config.data_dir,
                                                      download=config.download)


def steps_per_dispatch(config, mesh) -> int:
  """`config.steps_per_dispatch`, or when 0: 1 on CPU (no loop, see `steps.py`), else 10."""
  if config.steps_per_dispatch:
    return config.steps_per_dispatch
  return 1 if mesh.devices.flat[0].platform == "cpu" else 10


def half_precision(config) -> bool:
  if config.half_precision is None:
    return jax.default_backend() != "cpu"
  return bool(config.half_precision)


def build_method(config, num_classes: int) -> methods.Method:
  dtype = jnp.bfloat16 if half_precision(config) else jnp.float32
  return methods.build(
      config.method, arch=config.model.arch, num_classes=num_classes, width=config.model.width,
      shortcuts=config.model.shortcuts, conv=compat.conv_of_model(config.model),
      teacher_arch=config.teacher.arch, teacher_width=config.teacher.width,
      teacher_train=config.teacher.train, dtype=dtype, terms=config.terms,
      loss_params=config.loss.to_dict(), num_epochs=config.num_epochs)


def is_streamed(config) -> bool:
  """Whether the dataset is read from disk as the run goes (ImageNet: `datasets.streamed`)
  rather than held on the devices (`datasets.in_memory`): the source says
  (`datasets.sources`); `synthetic` is generated like the model's dataset: arrays for the
  CIFAR archs, a folder of JPEGs for the ImageNet ones."""
  arch = models.ARCHS.get(config.model.arch)
  return datasets.sources.get(config.dataset).streamed(arch[0] if arch else None)


def load_data(config, mesh):
  ds = datasets.sources.get(config.dataset)
  settings = ds.settings_of(config)
  if is_streamed(config):
    if config.holdout:
      raise UserError(f"--config.holdout is for the in-memory datasets; {config.dataset} "
                      "evaluates on its validation split (set --config.holdout=0).")
    o = config.streamed
    return datasets.streamed.load(
        config.dataset, mesh=mesh, data_dir=config.data_dir, image_size=o.image_size,
        eval_resize=o.eval_resize, threads=o.threads or None, prefetch=o.prefetch,
        shuffle_buffer=o.shuffle_buffer, train_resize=o.resize, settings=settings)
  return datasets.load(config.dataset, mesh=mesh, data_dir=config.data_dir,
                       download=config.download, holdout=config.holdout,
                       holdout_seed=config.seed, settings=settings)


def make_feed(config, data, dtype, mesh):
  """The trainer's feed of `data` and its steps per dispatch."""
  if isinstance(data, datasets.Data):
    feed = feeds.MemoryFeed(data, config.batch_size, dtype)
    return feed, min(steps_per_dispatch(config, mesh), config.log_every_steps,
                     feed.steps_per_epoch)
  spe = data.steps_per_epoch(config.batch_size)
  k = min(steps_per_dispatch(config, mesh), config.log_every_steps, spe)
  return feeds.StreamFeed(data, config.batch_size, dtype, k), k


def load_teacher(method, run_dir, mesh):
  """The frozen teacher's variables (unfolded): for tests and tools that keep `method`."""
  return teachers.load_teacher(method, run_dir, mesh, fold=False)[1]
