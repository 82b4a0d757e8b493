"""Which ops a policy draws from: config.policy.ops, registered ops by name (the
default: the papers' 14, ops.OP_NAMES).

DiffAutoML's Table 3 compares the 14 ops with the 4 geometric ones; the learned tau, and
RandAugment and TrivialAugment, then draw only from the subset (tau sized to it). The
names keep their given order, which is the order of tau's axes.
"""

import numpy as np

from dha_jax.augment import ops
from dha_jax.core import config_util

FIELD = 'config.policy.ops'


def names(config) -> tuple:
  """config.policy.ops as a checked tuple of op names.

  An element may hold several comma-separated names: ml_collections hands the command
  line's --config.policy.ops=ShearX,ShearY to the config as ('ShearX,ShearY',). Unknown,
  repeated or no names are a ValueError naming the field.
  """
  given = config.policy.get('ops', ops.OP_NAMES)  # configs written before the field
  if isinstance(given, str):
    given = (given,)
  out = tuple(n.strip() for item in given for n in str(item).split(',') if n.strip())
  valid = ', '.join(ops.registered())
  if not out:
    raise ValueError(f'{FIELD} is empty; name at least one of: {valid}')
  for n in out:
    if n not in ops.registered():
      near = config_util.nearest(n, ops.registered())
      hint = f" (did you mean {', '.join(near)}?)" if near else ''
      raise ValueError(f'{FIELD}: {n!r} is not an op{hint}; the valid names are: {valid}')
  repeated = sorted({n for n in out if out.count(n) > 1}, key=out.index)
  if repeated:
    raise ValueError(f"{FIELD} names {', '.join(map(repr, repeated))} more than once; "
                     'name each op once')
  return out


def indices(op_names) -> np.ndarray:
  """int32 indices (what ops.apply takes) of `op_names`, in order."""
  return np.asarray([ops.index(n) for n in op_names], np.int32)
