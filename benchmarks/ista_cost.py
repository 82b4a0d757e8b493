"""Cost of the ISTA search step: traced against static support, the derived network alone
and the DARTS supernet.

  python -m benchmarks.ista_cost [--layers=3 --channels=8 --batch=32 --reps=7]
  python -m benchmarks.ista_cost --base=fashion_mnist --layers=5 --batch=64 --no_supernet

Full train steps (train.setup + steps.compile_steps, 1 device, digits 8x8 or
--base=fashion_mnist 28x28, the real data; plain SGD, no tau or eta): the ISTA search
step with the support traced (config.nas.execution='traced', the default: one compiled
step for every support) and specialised to its support ('static': only the 2 selected
ops per node are in the program, one compile per support; theta still holds every op's
weights), 'darts_fixed' on the same genotype (the derived network alone) and first-order
DARTS' weighted-sum supernet (all 7 ops on every edge). Steps alternate in one process;
medians are printed (and the median of the per-round traced / static ratios), with XLA's
memory analysis and the compile time of each step, and the static step's compile for a
second support (what every support change costs it; the traced step has none).
"""

import importlib
import json
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from dha_jax.core import parallel
from dha_jax.nas import darts, ista
from dha_jax.training import steps, train

flags.DEFINE_integer('layers', 3, 'config.nas.layers (cells)')
flags.DEFINE_integer('channels', 8, 'config.nas.channels')
flags.DEFINE_integer('batch', 32, 'config.batch_size')
flags.DEFINE_integer('reps', 7, 'timed rounds, each step once per round (medians)')
flags.DEFINE_bool('no_supernet', False, "skip the DARTS supernet's step")
flags.DEFINE_bool('no_derived', False, "skip the derived network's step")
flags.DEFINE_enum('base', 'digits', ['digits', 'fashion_mnist'], 'configs/<base>.py')
FLAGS = flags.FLAGS


def _config(nas):
  c = importlib.import_module(f'configs.{FLAGS.base}').get_config()
  nas.channels, nas.layers = FLAGS.channels, FLAGS.layers
  nas.auxiliary_weight, nas.drop_path = 0.4, 0.0
  if 'affine' in nas:  # same op modules in all three networks
    nas.affine, nas.pool_bn = True, False
  c.nas = nas
  c.batch_size = FLAGS.batch
  c.progress = False
  return c


def _compiled(config, mesh, specialize=None):
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  if specialize is not None:
    comps = comps.with_strategy(specialize(comps.strategy, state))
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = parallel.shard_batch(next(ds.train_iterator('train', config.batch_size, 0)), mesh)
  t = time.perf_counter()
  exe = train_step.lower(state, batch).compile()
  compile_s = time.perf_counter() - t
  mem = exe.memory_analysis()
  peak = None if mem is None else int(mem.temp_size_in_bytes + mem.argument_size_in_bytes
                                      + mem.output_size_in_bytes)
  # exe: for the memory analysis and compile time; the timings call train_step itself
  # (steps.compile_steps keeps a static support's unused weights out of the call), whose
  # first call compiles once more (not timed)
  return {'step': train_step, 'state': state, 'batch': batch, 'compile_s': compile_s,
          'peak_bytes': peak, 'comps': comps}


def main(argv):
  del argv
  mesh = parallel.make_mesh(jax.devices()[:1])

  def to_support(strategy, state):
    return strategy.specialize(ista.edges_of(jax.device_get(state.nas_state['support'])))

  runs = {}
  static_cfg = ista.default_config()
  static_cfg.execution = 'static'
  runs['ista_static'] = _compiled(_config(static_cfg), mesh, to_support)
  runs['ista_traced'] = _compiled(_config(ista.default_config()), mesh)
  search = runs['ista_static']
  genotype = search['comps'].strategy.genotype_of(search['state'].params['arch'],
                                                  search['state'].nas_state)
  if not FLAGS.no_derived:
    fixed = darts.fixed_config()
    fixed.genotype = json.dumps(genotype.to_json())
    runs['derived_only'] = _compiled(_config(fixed), mesh)
  if not FLAGS.no_supernet:
    runs['darts_supernet'] = _compiled(_config(darts.darts_config()), mesh)

  # a support change: compile the static search step for another support
  other = np.asarray(jax.device_get(search['state'].nas_state['support'])).copy()
  other[:, :, 1] = other[:, :, 1] // 7 * 7 + (other[:, :, 1] % 7 + 1) % 7  # next op, same edge
  comps2 = search['comps'].with_strategy(search['comps'].strategy.specialize(
      ista.edges_of(other)))
  step2, _ = steps.compile_steps(comps2, mesh)
  t = time.perf_counter()
  step2.lower(search['state'], search['batch']).compile()
  change_s = time.perf_counter() - t

  times = {k: [] for k in runs}
  states = {k: r['state'] for k, r in runs.items()}
  for k, r in runs.items():  # warm-up (compiles the called step; the donated state)
    states[k], m = r['step'](states[k], r['batch'])
    jax.block_until_ready(m)
  for _ in range(FLAGS.reps):
    for k, r in runs.items():
      t = time.perf_counter()
      states[k], m = r['step'](states[k], r['batch'])
      jax.block_until_ready((states[k], m))
      times[k].append(time.perf_counter() - t)
  med = {k: statistics.median(v) for k, v in times.items()}
  paired = statistics.median(a / b for a, b in zip(times['ista_traced'], times['ista_static']))
  base_name = 'derived_only' if 'derived_only' in runs else 'ista_static'
  base = med[base_name]
  shape = 'x'.join(str(d) for d in search['batch']['image'].shape[1:])
  print(f'config: {FLAGS.layers} cells, C={FLAGS.channels}, batch {FLAGS.batch}, {shape}, '
        f'{jax.devices()[0].platform}, conv impl auto; genotype:\n{genotype}')
  base_peak = runs[base_name]['peak_bytes']
  for k in runs:
    peak = runs[k]['peak_bytes']
    mem = 'n/a' if peak is None else f'{peak / 2**20:.1f} MiB'
    if peak is not None and base_peak:
      mem += f' (x{peak / base_peak:.2f})'
    print(f'{k:15s} step {med[k] * 1e3:8.1f} ms  x{med[k] / base:5.2f} of {base_name}   '
          f'compile {runs[k]["compile_s"]:6.1f} s   memory {mem}')
  print(f'traced / static step time: x{med["ista_traced"] / med["ista_static"]:.2f} '
        f'(medians), x{paired:.2f} (median of the paired ratios)')
  print(f'compile: traced {runs["ista_traced"]["compile_s"]:.1f} s once; static '
        f'{runs["ista_static"]["compile_s"]:.1f} s, and {change_s:.1f} s again for a new '
        'support (at most once per epoch)')


if __name__ == '__main__':
  app.run(main)
