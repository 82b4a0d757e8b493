"""Cell search spaces: the candidate ops and the number of nodes of a DARTS-style cell.

The cell strategies (ISTA, DARTS, a fixed genotype) and the cell network
(darts_space.py) read every size from one `CellSpace`, never from module constants, so a
new cell space is a module defining its CellSpace and one `register(...)` line; the run
selects it by config.nas.cell_space (see darts_space.py for the 'darts' space itself).

Node i of a cell sums ops on any of its i + 2 inputs (the two previous cells' outputs,
then the earlier nodes); the cell's output is the concat of its nodes. An edge (input j,
op o) is addressed by the column c = j * num_ops + o, the index ISTA's measurement matrix
and the networks' static edges use.
"""

import dataclasses
from typing import Tuple

from dha_jax.core import registry


@dataclasses.dataclass(frozen=True)
class CellSpace:
  """ops: names darts_ops.make_op knows (each maps [N, H, W, C] to [N, H/s, W/s, C]).
  Hashable: it is a field of darts_space.Spec, a Flax module field."""
  name: str
  ops: Tuple[str, ...]
  num_nodes: int

  def __post_init__(self):
    if len(set(self.ops)) != len(self.ops) or not self.ops:
      raise ValueError(f'cell space {self.name!r}: ops must be distinct and non-empty, '
                       f'got {self.ops}')
    if self.num_nodes < 1:
      raise ValueError(f'cell space {self.name!r}: num_nodes must be >= 1')
    object.__setattr__(self, 'ops', tuple(self.ops))

  @property
  def num_ops(self) -> int:
    return len(self.ops)

  def num_inputs(self, node: int) -> int:
    return node + 2

  @property
  def concat(self) -> Tuple[int, ...]:
    """The states whose concat is the cell output: every node (0, 1 are the inputs)."""
    return tuple(range(2, 2 + self.num_nodes))

  @property
  def num_edges(self) -> int:
    """(node, input) pairs of a cell: 2 + 3 + ... (DARTS' alpha rows)."""
    return sum(self.num_inputs(i) for i in range(self.num_nodes))

  @property
  def max_columns(self) -> int:
    """Columns of the widest (last) node: the padded width of ISTA's measurements."""
    return self.num_inputs(self.num_nodes - 1) * self.num_ops

  def num_columns(self, node: int) -> int:
    return self.num_inputs(node) * self.num_ops

  def all_edges(self) -> Tuple[Tuple[int, ...], ...]:
    """Every (input, op) column of every node: the weighted-sum supernet."""
    return tuple(tuple(range(self.num_columns(i))) for i in range(self.num_nodes))

  def column(self, op: str, j: int) -> int:
    return j * self.num_ops + self.ops.index(op)

  def pair(self, col: int) -> Tuple[str, int]:
    """column's inverse: (op, input)."""
    return self.ops[col % self.num_ops], col // self.num_ops


# name -> CellSpace; config.nas.cell_space picks one
SPACES = registry.Registry('config.nas.cell_space')


def register(space: CellSpace) -> CellSpace:
  """Adds `space` under its name (a second space of the same name is an error: it would
  silently change what existing configs run). Returns it."""
  return SPACES.register(space.name)(space)


def get(name: str) -> CellSpace:
  return SPACES.get(name)
