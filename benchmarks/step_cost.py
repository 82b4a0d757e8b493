"""Cost of the compiled train step of a config: median ms/step after warm-up.

  python -m benchmarks.step_cost --config=configs/digits.py [--config.batch_size=128]
      [--steps=20] [--warmup=3] [--label=plain]

Prints one JSON line: {"label", "ms_per_step", "images_per_s", "compile_s", "devices", ...}.
Components report their cost as a ratio against the plain step of the same config in the
same run: run this twice (component off, then on) in one shell and divide.
"""

import json
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS


def _define_flags():
  config_flags.DEFINE_config_file('config', None, 'config file', lock_config=True)
  flags.DEFINE_integer('steps', 20, 'timed steps')
  flags.DEFINE_integer('warmup', 3, 'untimed steps after compilation')
  flags.DEFINE_string('label', '', 'name printed with the result')


def build(config, devices=None):
  """Compiles the step of `config`; returns (run_one_step, compile_seconds)."""
  import jax  # pylint: disable=g-import-not-at-top
  from dha_jax import parallel, train  # pylint: disable=g-import-not-at-top
  from dha_jax import steps as steps_lib  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(devices)
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps_lib.compile_steps(comps, mesh)
  it = ds.train_iterator('train', config.batch_size, config.seed)
  hpo_it = None
  if comps.hpo.objective in ('val', 'train'):
    hpo_it = ds.train_iterator('val' if comps.hpo.objective == 'val' else 'train',
                               config.batch_size, config.seed + 1)

  def batch():
    b = next(it)
    if hpo_it is not None:
      h = next(hpo_it)
      b.update({'hpo_image': h['image'], 'hpo_label': h['label']})
    return parallel.shard_batch(b, mesh)

  batches = [batch() for _ in range(4)]
  box = {'state': state, 'i': 0}

  def run_one():
    """One step, timed to completion (seconds)."""
    t0 = time.perf_counter()
    box['state'], m = train_step(box['state'], batches[box['i'] % 4])
    jax.block_until_ready((box['state'], m))
    box['i'] += 1
    return time.perf_counter() - t0

  compile_s = run_one()
  return run_one, compile_s, mesh.devices.size


def measure(config, steps=20, warmup=3, devices=None):
  """Returns a dict of the step's median time; the data is a fixed resident batch set."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  run_one, compile_s, n_dev = build(config, devices)
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
