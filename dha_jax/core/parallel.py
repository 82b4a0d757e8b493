"""The 1-D 'data' mesh: replicated state, sharded batches, per-device programs.

jit(shard_map(...)) is what jax.pmap is built on since JAX 0.10: every device runs the
step on its shard and collectives over 'data' average what must agree.
"""

import collections

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = 'data'


def make_mesh(devices=None) -> Mesh:
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), (AXIS,))


def check_divisible(global_batch: int, mesh: Mesh, field: str = 'config.batch_size'):
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(f'{field}={global_batch} is not divisible by the {n} devices; use a '
                     f'multiple of {n} (e.g. {max(n, global_batch // n * n)})')


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy batch (this process's slice) -> one global array per field."""
  sharding = NamedSharding(mesh, P(AXIS))
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def prefetch_to_device(batches, mesh: Mesh, size: int = 2):
  """Host batches -> sharded device batches, `size` of them in flight (double buffering
  at 2): the copy of the next batch overlaps the running step. A batch is a function of
  its step (data/base.py), so one read ahead and never used (a stop) is read again on
  resume: nothing is lost or repeated."""
  queue = collections.deque()
  while True:
    while len(queue) < size:
      queue.append(shard_batch(next(batches), mesh))
    yield queue.popleft()


def data_parallel(fn, mesh: Mesh, in_specs, out_specs, donate_argnums=()):
  """jit(shard_map(fn)): P() for replicated arguments/results, P('data') for batches.

  check_vma=False keeps pmap semantics: gradients of a device's local loss are local
  and the step averages them itself with lax.pmean.
  """
  mapped = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                         check_vma=False)
  return jax.jit(mapped, donate_argnums=donate_argnums)


def device_index():
  return jax.lax.axis_index(AXIS)


def pmean(tree):
  return jax.lax.pmean(tree, AXIS)


def psum(tree):
  return jax.lax.psum(tree, AXIS)


REPLICATED, SHARDED = P(), P(AXIS)
