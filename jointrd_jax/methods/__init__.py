"""The methods: a student network plus weighted loss terms.

- `terms.py`: the term registry (`Term`, `Inputs`, `register`, `combine`);
- one module per family of terms, each registering its own: `ce`, `kd`, `features`
  (`mse_all`), `jointrd`, `dkd`, `dist`;
- `presets.py`: the named methods (`METHODS`), one line each;
- `compose.py`: name + composition + settings -> `Method` (`build`);
- `method.py`: `Method.loss_fn` / `eval_logits`, JointRD's hybrid paths;

Every module of this package is imported here, so a module of terms registers them by
being in the package.
"""
import importlib
import pkgutil

from jointrd_jax.methods.compose import (build, method_label, needs_teacher,
                                         parse_terms, per_run_words, resolve_terms)
from jointrd_jax.methods.method import EVAL_HEADS, Method, hybrid_logits
from jointrd_jax.methods.presets import (METHODS, TEACHER_TRAIN, TEACHER_UNSET, Preset,
                                         get_spec)
from jointrd_jax.methods.terms import (NEEDS, TERMS, Inputs, Range, SettingError, Term, Weighted,
                                       combine, register)

for _module in pkgutil.iter_modules(__path__):
  importlib.import_module(f"{__name__}.{_module.name}")
