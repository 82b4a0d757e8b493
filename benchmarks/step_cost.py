"""Cost of the compiled train step of a config: median ms/step after warm-up.

  python -m benchmarks.step_cost --config=configs/digits.py [--config.batch_size=128]
      [--steps=20] [--warmup=3] [--label=plain]

Prints one JSON line: {"label", "ms_per_step", "images_per_s", "compile_s", "devices", ...}.
Components report their cost as a ratio against the plain step of the same config in the
same run: run this twice (component off, then on) in one shell and divide.
"""

import json
import time
from typing import Callable, NamedTuple, Optional

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file('config', None, 'config file', lock_config=True)
  flags.DEFINE_integer('steps', 20, 'timed steps')
  flags.DEFINE_integer('warmup', 3, 'untimed steps after compilation')
  flags.DEFINE_string('label', '', 'name printed with the result')


class Built(NamedTuple):
  run_one: Callable[[], float]  # one step, timed to completion (seconds)
  compile_s: float              # the first call: trace + compile + one step
  devices: int
  memory: Callable[[], Optional[int]]  # bytes the compiled step holds (see memory_bytes)


def memory_bytes(compiled) -> Optional[int]:
  """Peak device bytes of one call by XLA's own accounting: arguments + outputs +
  temporaries - donated buffers reused for outputs. None where the backend has no
  analysis. A per-program number (a device's peak counter only ever grows)."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes -
             m.alias_size_in_bytes)


def build(config, devices=None) -> Built:
  """Compiles the step of `config` on resident batches (4 of them, reused in turn)."""
  import jax  # pylint: disable=g-import-not-at-top
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from dha_jax.training import train  # pylint: disable=g-import-not-at-top
  from dha_jax.training import steps as steps_lib  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(devices)
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps_lib.compile_steps(comps, mesh)
  it = train.Batches(ds, comps, config)  # every batch the components declare
  batches = [parallel.shard_batch(next(it), mesh) for _ in range(4)]
  box = {'state': state, 'i': 0}

  def run_one():
    t0 = time.perf_counter()
    box['state'], m = train_step(box['state'], batches[box['i'] % 4])
    jax.block_until_ready((box['state'], m))
    box['i'] += 1
    return time.perf_counter() - t0

  def memory():
    return memory_bytes(train_step.lower(box['state'], batches[0]).compile())

  compile_s = run_one()
  return Built(run_one, compile_s, mesh.devices.size, memory)


def measure(config, steps=20, warmup=3, devices=None):
  """Returns a dict of the step's median time; the data is a fixed resident batch set."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  run_one, compile_s, n_dev, _ = build(config, devices)
  for _ in range(warmup):
    run_one()
  ms = float(np.median([run_one() for _ in range(steps)]) * 1e3)
  return {'ms_per_step': ms, 'images_per_s': config.batch_size / ms * 1e3,
          'compile_s': compile_s, 'devices': n_dev,
          'backend': jax.default_backend(), 'batch_size': config.batch_size}


def main(argv):
  del argv
  out = measure(FLAGS.config, FLAGS.steps, FLAGS.warmup)
  print(json.dumps({'label': FLAGS.label, **out}))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
