"""A cell of a study: one Table 12 sweep in `DIR/<name>/` (`study.sweep_config` makes its
config), with its network, budget, methods, seeds, setting changes and teacher."""
import dataclasses
from typing import List, Sequence

from jointrd_jax.errors import UserError


@dataclasses.dataclass
class Cell:
  name: str             # its folder under DIR: '<arch>_w<width>_e<epochs>[_<variant>]', or a
                        # zoo cell's ('<arch>', '<teacher>-<student>[-plain]')
  group: str
  arch: str
  width: int
  num_epochs: int
  methods: tuple
  seeds: tuple
  variant: str = ""     # '' or the variant's name
  overrides: tuple = ()  # ((flattened key, value), ...)
  teacher_cell: str = ""  # the cell whose resnet run is the teacher ('' = its own)
  teacher_path: str = ""  # a given teacher run (zoo: an imported teacher), else ''
  pair: str = ""        # zoo: the pair 'TEACHER:STUDENT' of the cell ('' = an arch's cell)


def selected(cells: List[Cell], wanted: Sequence[str], whose: str) -> List[Cell]:
  """The cells named in `config.cells` (`wanted`; empty: all); an unknown name is an error
  listing `whose` cells ('the study's', 'the zoo's')."""
  if not wanted:
    return cells
  names = [c.name for c in cells]
  unknown = sorted(set(wanted) - set(names))
  if unknown:
    raise UserError(f"config.cells names no cell {unknown}; {whose} cells: "
                    f"{', '.join(names)}.")
  return [c for c in cells if c.name in wanted]
