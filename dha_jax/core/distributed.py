"""More than one process: JAX's multi-controller runtime, and the few host-side values
every process must agree on.

Each process runs the same program on its own devices; together they form one global
'data' mesh (dha_jax/core/parallel.py). Whatever the hosts decide from their own clocks or
signals (the time budget, a SIGTERM) is agreed on here, so that every process takes the
same branch at the same step: a process that stopped alone would leave the others
waiting in a collective.
"""

import os
import sys
import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

from dha_jax.core import parallel


_timeout_s = 300  # initialize()'s: how long a process waits for the others
_barriers = 0


class DistributedSetupError(ValueError):
  """The processes could not form a cluster (reported as one line by dha_jax.core.cli)."""


def initialize(coordinator_address=None, num_processes=None, process_id=None,
               timeout_s: int = 300):
  """jax.distributed.initialize with explicit settings, or (all three None) the cluster's
  own: Slurm and Cloud TPU are detected by JAX, JAX_COORDINATOR_ADDRESS is read."""
  explicit = {'--coordinator_address': coordinator_address,
              '--num_processes': num_processes, '--process_id': process_id}
  given = [k for k, v in explicit.items() if v is not None]
  if given and len(given) < 3:
    missing = [k for k in explicit if k not in given]
    raise DistributedSetupError(
        f'{", ".join(given)} given without {", ".join(missing)}: set all three (or none, '
        'on Slurm or a Cloud TPU VM, where JAX reads them from the environment)')
  if num_processes is not None and not 0 <= process_id < num_processes:
    raise DistributedSetupError(f'--process_id={process_id} must be in [0, '
                                f'--num_processes={num_processes})')
  # On CPU (tests, a laptop): collectives across processes need gloo, and programs are
  # dispatched synchronously, so that no two of them run in a different order on
  # different processes (seen here to deadlock). Both settings only touch the CPU backend.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  where = coordinator_address or 'the address the cluster environment gives'
  message = (f'error: process {process_id if process_id is not None else "?"} could not '
             f'join the run at {where} within {timeout_s} s: check that every process got '
             'the same --coordinator_address (host:port of process 0, reachable from all) '
             'and --num_processes, and that all of them were started')
  # JAX aborts the process (a C++ fatal error and a core dump) when the others do not
  # show up in time; this watchdog reports it as one line first and exits with status 2.
  joined = threading.Event()
  threading.Thread(target=_watchdog, args=(joined, timeout_s, message), daemon=True).start()
  global _timeout_s
  _timeout_s = int(timeout_s)
  try:
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               initialization_timeout=int(timeout_s) + 60)
  except (RuntimeError, ValueError) as e:
    raise DistributedSetupError(f'{message[len("error: "):]} ({e})') from e
  finally:
    joined.set()


def leave_together(name: str, timeout_s: float = 60.0):
  """Waits, at most timeout_s, until every process of the run is here (e.g. each met the
  same input error). Why: process 0 hosts the coordination service, and its exit aborts
  the others wherever they are (seen: while one still set up its devices, before it could
  report the error). No-op outside a multi-process run."""
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  client = jax_distributed.global_state.client
  if client is None:
    return
  try:
    client.wait_at_barrier(f'dha_leave_{name}', int(min(timeout_s, _timeout_s) * 1000))
  except Exception:  # pylint: disable=broad-except
    pass  # some process did not get here (it did not fail the same way): leave anyway


def _watchdog(joined, timeout_s, message):
  if not joined.wait(timeout_s):
    print(message, file=sys.stderr, flush=True)
    os._exit(2)  # pylint: disable=protected-access


def together(mesh, name: str):
  """Waits until every process is here, then opens the collectives the run uses.

  On CPU, gloo connects a group of devices at its first collective and gives the others
  only 30 s to get there (XLA's fixed key-value timeout). A process that compiles its
  first step more slowly (a loaded machine, a cache hit on one host only) fails the run
  there. After this barrier (the coordination service, --distributed_timeout_s) the
  groups are connected while the processes are together; later programs reuse them, and
  their collectives wait as long as a compile takes."""
  if jax.process_count() == 1:
    return
  from jax._src import distributed as jax_distributed  # pylint: disable=g-import-not-at-top
  global _barriers
  _barriers += 1  # a barrier's name is used once per run of the cluster
  jax_distributed.global_state.client.wait_at_barrier(f'dha_{name}_{_barriers}',
                                                      _timeout_s * 1000)
  ones = jax.make_array_from_callback(
      (mesh.devices.size,), NamedSharding(mesh, parallel.SHARDED),
      lambda idx: np.ones((1,), np.int32))
  total = int(jax.jit(jnp.sum, out_shardings=NamedSharding(mesh, parallel.REPLICATED))(ones))
  assert total == mesh.devices.size, total
  any_process(False)  # the one-device-per-process group of the host-side agreements


def any_process(flag: bool) -> bool:
  """True on every process when it is True on any (e.g. one of them got SIGTERM)."""
  if jax.process_count() == 1:
    return bool(flag)
  return bool(np.any(multihost_utils.process_allgather(np.asarray(flag, np.int32))))


def from_process0(value: float) -> float:
  """Process 0's value on every process (e.g. the clock a time budget is spent on)."""
  if jax.process_count() == 1:
    return value
  return float(multihost_utils.broadcast_one_to_all(np.asarray(value, np.float32)))


def host_copy(tree):
  """A replicated state's values as host numpy arrays. What a single process computes
  from them (pictures, summaries) then runs on its own device: an eager op on a global
  array is a program over every process's devices, which the others never join."""
  return jax.device_get(tree)
