"""The CIFAR-100 distillation zoo as a study (configs/kd_zoo.py): teacher-student pairs x
methods, each pair's teacher and student from scratch, and the published numbers.

A zoo config has `pairs` ('TEACHER:STUDENT') where a digits study has `groups`; the study
machinery (`study.run`) runs its cells and `zoo_report` writes its table. The cells:

- `<arch>`: one per arch of the pairs, the reference network trained from scratch (preset
  `resnet`: CE, the arch's own shortcuts): a student's over every seed (its "student" row),
  a teacher's over `teacher_seed` (the teacher of its pairs). A teacher imported from
  `teachers_dir` (DIR/<arch>/, a finished run) is not trained.
- `<teacher>-<student>`: the logit methods (KD, DKD, DIST, KD + LS) on the reference
  student (shortcuts `all`, plain convs), the published setting.
- `<teacher>-<student>-plain`: JointRD on the plain Dirac twin of the student, for the pairs
  where it makes sense (`jointrd_refusal`); the other pairs' reasons go into the report.

Every cell trains under `base` (mdistiller's recipe); a MobileNet / ShuffleNet network at
lr `small_student_lr` (None: 0.01, as RepDistiller and mdistiller train them).
"""
import os
from typing import Dict, List

from jointrd_jax import methods as methods_lib, models
from jointrd_jax.errors import UserError
from jointrd_jax.models import zoo as zoo_models
from jointrd_jax.sweep import planning
from jointrd_jax.sweep import cell as cell_lib
from jointrd_jax.sweep.cell import Cell

# The standard pairs of RepDistiller / mdistiller (same-family, then cross-family).
STANDARD_PAIRS = (
    "resnet56:resnet20", "resnet110:resnet32", "resnet32x4:resnet8x4", "wrn_40_2:wrn_16_2",
    "wrn_40_2:wrn_40_1", "vgg13:vgg8", "vgg13:mobilenetv2", "resnet50:mobilenetv2",
    "resnet32x4:shufflenetv1", "resnet32x4:shufflenetv2", "wrn_40_2:shufflenetv1",
    "resnet50:vgg8")
# The zoo's methods: name -> (preset, label of the table).
METHODS = {"kd": ("kd_logits", "KD"), "dkd": ("dkd_dirac", "DKD"), "dist": ("dist_dirac", "DIST"),
           "kd_ls": ("kd_ls_dirac", "KD + LS"),
           "jointrd": ("jointrd", "JointRD (plain Dirac student)")}
PLAIN_METHODS = ("jointrd",)  # trained on the student's plain twin, the preset's student
SCRATCH = "resnet"  # the preset of the teacher and student rows: CE, the arch's own network
# The student as the reference defines it, for the logit methods (their presets' students
# are plain; the published numbers are the reference networks').
REFERENCE_STUDENT = (("model.shortcuts", "all"), ("model.conv", "none"))
# The networks RepDistiller and mdistiller train at lr 0.01 (their train_*.py, configs).
SMALL_LR_FAMILIES = ("mobilenetv2", "shufflenet")
SMALL_LR = 0.01
RESIDUAL_FAMILIES = ("cifar_resnet", "wrn", "resnet")  # resnet: this project's ResNets
# DKD's settings per pair, mdistiller's configs/cifar100/dkd/*.yaml (megvii-research/
# mdistiller@e8c5bb3): beta (8 where the file sets none) and the warm-up, 20 epochs.
DKD_BETA = {"resnet56:resnet20": 2.0, "resnet110:resnet32": 2.0, "wrn_40_2:wrn_16_2": 6.0,
            "wrn_40_2:wrn_40_1": 6.0, "vgg13:vgg8": 6.0, "vgg13:mobilenetv2": 6.0}
DKD_WARMUP_EPOCHS = 20


def family(arch: str) -> str:
  z = zoo_models.ZOO.get(arch)
  return z.family if z else "resnet"


def arch_cell(arch: str) -> str:
  return arch


def pair_cell(pair: str, plain: bool = False) -> str:
  return pair.replace(":", "-") + ("-plain" if plain else "")


def parse_pairs(sc) -> List[tuple]:
  """config.pairs as [(teacher, student)], each checked."""
  pairs = tuple(sc.pairs)
  if not pairs:
    raise UserError("config.pairs is empty; name at least one TEACHER:STUDENT pair, e.g. "
                    "--config.pairs=resnet32x4:resnet8x4.")
  if len(set(pairs)) != len(pairs):
    raise UserError(f"config.pairs={pairs} names a pair twice.")
  out = []
  for p in pairs:
    t, sep, s = str(p).partition(":")
    if not sep or not t or not s or ":" in s:
      raise UserError(f"config.pairs: {p!r} is not a pair; write TEACHER:STUDENT, e.g. "
                      "resnet32x4:resnet8x4.")
    for arch in (t, s):
      if arch not in models.arch_names():
        raise UserError(f"config.pairs: {p!r}: unknown arch {arch!r}; choose from "
                        f"{', '.join(models.arch_names())}.")
    out.append((t, s))
  return out


def check_methods(sc) -> tuple:
  ms = tuple(sc.methods)
  for m in ms:
    if m not in METHODS:
      raise UserError(f"config.methods: unknown zoo method {m!r}; choose from "
                      f"{', '.join(METHODS)} (e.g. --config.methods=\"('kd', 'dkd')\").")
  if len(set(ms)) != len(ms):
    raise UserError(f"config.methods={ms} names a method twice.")
  return ms


def jointrd_refusal(teacher: str, student: str, width: int) -> str:
  """'' when JointRD makes sense for the pair (a residual teacher, the plain twin of a
  residual student, stages of equal shapes), else why not, in one line."""
  if family(student) not in RESIDUAL_FAMILIES:
    kind = "is plain already" if family(student) == "vgg" else "is a fixed network"
    return (f"JointRD trains the plain twin of a residual student; {student} {kind}, with no "
            "shortcuts to distil away.")
  if family(teacher) not in RESIDUAL_FAMILIES:
    return (f"JointRD runs the student's stages through a residual teacher's; {teacher} has "
            "no shortcuts.")
  try:
    methods_lib.build(METHODS["jointrd"][0], arch=student, teacher_arch=teacher,
                      num_classes=100, width=width)
  except UserError as e:
    return str(e)
  return ""


def lr_of(sc, arch: str):
  """The learning rate override of a cell whose trained network is `arch` (None: base's)."""
  if family(arch) in SMALL_LR_FAMILIES:
    return SMALL_LR if sc.small_student_lr is None else sc.small_student_lr
  return None


def teacher_run(sc, arch: str) -> str:
  """An imported teacher's run: `teachers_dir/<arch>`, checked (finished, of `arch`)."""
  path = os.path.abspath(os.path.join(sc.teachers_dir, arch))
  if not os.path.isdir(path):
    raise UserError(f"--config.teachers_dir={sc.teachers_dir} has no teacher {arch} "
                    f"({path} does not exist); import it there with python -m "
                    f"experiments.convert_torch --from=mdistiller --arch={arch} "
                    f"--checkpoint=FILE --out={path}, or leave teachers_dir empty to train "
                    "the teachers.")
  try:
    cfg = planning.check_teacher_run(path)
  except UserError:
    raise UserError(f"--config.teachers_dir: {path} holds no finished run (config.json and a "
                    "summary.json with all epochs done); import the teacher there with python "
                    "-m experiments.convert_torch, or leave teachers_dir empty to train the "
                    "teachers.") from None
  got = cfg.get("model", {}).get("arch")
  if got != arch:
    raise UserError(f"--config.teachers_dir: {path} holds a {got} run, not {arch}; put the "
                    f"{arch} teacher there.")
  return path


def _overrides(sc, arch: str, extra=()) -> tuple:
  lr = lr_of(sc, arch)
  return tuple(extra) + ((("optimizer.learning_rate", lr),) if lr is not None else ())


def _dkd_settings(pair: str) -> tuple:
  return (("loss.dkd.beta", DKD_BETA.get(pair, 8.0)),
          ("loss.dkd.warmup_epochs", DKD_WARMUP_EPOCHS))


def _check_networks(pairs, width: int) -> None:
  """Every network the zoo trains builds (a fixed network at a width it lacks, ...): one line
  before any run."""
  for t, s in pairs:
    for arch in (t, s):
      models.build(arch, "all", conv="none", num_classes=100, width=width)


def jointrd_pairs(sc) -> Dict[str, str]:
  """{pair: why not ('' = it gets JointRD)} of the config's pairs, when JointRD is among its
  methods ({} otherwise); JointRD asked for and no pair fitting is refused with the first
  pair's reason."""
  if "jointrd" not in tuple(sc.methods):
    return {}
  width = sc.base.model.width
  why = {f"{t}:{s}": jointrd_refusal(t, s, width) for t, s in parse_pairs(sc)}
  if all(why.values()):
    first = next(iter(why))
    raise UserError(f"config.methods has jointrd, and no pair fits it: {first}: {why[first]}")
  return why


def cells(sc) -> list:
  """The zoo's cells in the order they run: the archs' cells (teachers first), then each
  pair's logit-method cell and its JointRD cell."""
  pairs, ms = parse_pairs(sc), check_methods(sc)
  width, epochs = sc.base.model.width, int(sc.base.num_epochs)
  _check_networks(pairs, width)
  seeds, tseed = tuple(sc.seeds), sc.teacher_seed
  teachers = list(dict.fromkeys(t for t, _ in pairs))
  students = list(dict.fromkeys(s for _, s in pairs))
  if sc.small_student_lr is not None and not any(
      lr_of(sc, a) is not None for a in students + (teachers if not sc.teachers_dir else [])):
    raise UserError(f"--config.small_student_lr={sc.small_student_lr}: no network of the "
                    f"zoo's pairs is a MobileNet or ShuffleNet, so the setting would change "
                    "nothing; drop it.")
  imported = {t: teacher_run(sc, t) for t in teachers} if sc.teachers_dir else {}
  if imported and tseed:
    raise UserError(f"--config.teacher_seed={tseed}: every teacher comes from "
                    "--config.teachers_dir, none is trained, so the setting would change "
                    "nothing; drop it.")
  out = []
  for arch in [a for a in teachers if a not in imported] + students:
    if any(c.name == arch_cell(arch) for c in out):
      continue
    arch_seeds = seeds if arch in students else ()
    if arch in teachers and arch not in imported and tseed not in arch_seeds:
      arch_seeds += (tseed,)
    out.append(Cell(arch_cell(arch), "arch", arch, width, epochs, (SCRATCH,), arch_seeds,
                    overrides=_overrides(sc, arch)))
  why = jointrd_pairs(sc)
  for t, s in pairs:
    pair = f"{t}:{s}"
    teacher = dict(teacher_cell="" if t in imported else arch_cell(t),
                   teacher_path=imported.get(t, ""), pair=pair)
    teach = (("teacher.arch", t),)
    logit = [METHODS[m][0] for m in ms if m not in PLAIN_METHODS]
    if logit:
      extra = REFERENCE_STUDENT + teach + (_dkd_settings(pair) if "dkd" in ms else ())
      out.append(Cell(pair_cell(pair), "pair", s, width, epochs, tuple(logit), seeds,
                      overrides=_overrides(sc, s, extra), **teacher))
    plain = [METHODS[m][0] for m in ms if m in PLAIN_METHODS and not why.get(pair)]
    if plain:
      out.append(Cell(pair_cell(pair, plain=True), "pair", s, width, epochs, tuple(plain),
                      seeds, overrides=_overrides(sc, s, teach), **teacher))
  return cell_lib.selected(out, sc.cells, "the zoo's")
