"""Cost of the ISTA search step against the derived network alone and the DARTS supernet.

  python benchmarks/ista_cost.py [--layers 3 --channels 8 --batch 32 --reps 7]
  python benchmarks/ista_cost.py --base fashion_mnist --layers 5 --batch 64 --no_supernet

Three full train steps (train.setup + steps.compile_steps, 1 device, digits 8x8 or
--base fashion_mnist 28x28, the real data): the ISTA
search step specialised to its support (only the 2 selected ops per node run; theta still
holds every op's weights), 'darts_fixed' on the same genotype (the derived network alone)
and first-order DARTS' weighted-sum supernet (all 7 ops on every edge). Steps alternate
in one process; medians are printed, with XLA's memory analysis of each compiled step and
the compile time of the ISTA step for a second support (what a support change costs).
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

import importlib  # pylint: disable=g-import-not-at-top,wrong-import-position
from dha_jax import parallel, steps, train  # pylint: disable=g-import-not-at-top
from dha_jax.nas import darts, ista  # pylint: disable=g-import-not-at-top


def _config(nas, args):
  c = importlib.import_module(f'configs.{args.base}').get_config()
  nas.channels, nas.layers = args.channels, args.layers
  nas.auxiliary_weight, nas.drop_path = 0.4, 0.0
  if 'affine' in nas:  # same op modules in all three networks
    nas.affine, nas.pool_bn = True, False
  c.nas = nas
  c.batch_size = args.batch
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
  # exe: for the memory analysis and compile time; the timings call train_step itself,
  # which (steps.compile_steps) keeps an ISTA support's unused weights out of the call
  return {'step': train_step, 'state': state, 'batch': batch, 'compile_s': compile_s,
          'peak_bytes': peak, 'comps': comps}


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--layers', type=int, default=3)
  p.add_argument('--channels', type=int, default=8)
  p.add_argument('--batch', type=int, default=32)
  p.add_argument('--reps', type=int, default=7)
  p.add_argument('--no_supernet', action='store_true')
  p.add_argument('--base', default='digits', choices=('digits', 'fashion_mnist'))
  args = p.parse_args()
  mesh = parallel.make_mesh(jax.devices()[:1])

  def spec_to_support(strategy, state):
    return strategy.specialize(strategy.static_key(jax.device_get(state.nas_state)))

  runs = {}
  cfg = _config(ista.default_config(), args)
  runs['ista_search'] = _compiled(cfg, mesh, spec_to_support)
  search = runs['ista_search']
  genotype = search['comps'].strategy.genotype_of(search['state'].params['arch'],
                                                  search['state'].nas_state)
  fixed = darts.fixed_config()
  fixed.genotype = json.dumps(genotype.to_json())
  runs['derived_only'] = _compiled(_config(fixed, args), mesh)
  if not args.no_supernet:
    runs['darts_supernet'] = _compiled(_config(darts.darts_config(), args), mesh)

  # a support change: compile the search step for another support
  other = np.asarray(jax.device_get(search['state'].nas_state['support'])).copy()
  other[:, :, 1] = other[:, :, 1] // 7 * 7 + (other[:, :, 1] % 7 + 1) % 7  # next op, same edge
  key = ista.edges_of(other)
  comps2 = search['comps'].with_strategy(search['comps'].strategy.specialize(key))
  step2, _ = steps.compile_steps(comps2, mesh)
  t = time.perf_counter()
  step2.lower(search['state'], search['batch']).compile()
  change_s = time.perf_counter() - t

  times = {k: [] for k in runs}
  states = {k: r['state'] for k, r in runs.items()}
  for k, r in runs.items():  # warm-up (compiles the called step; the donated state)
    states[k], m = r['step'](states[k], r['batch'])
    jax.block_until_ready(m)
  for _ in range(args.reps):
    for k, r in runs.items():
      t = time.perf_counter()
      states[k], m = r['step'](states[k], r['batch'])
      jax.block_until_ready((states[k], m))
      times[k].append(time.perf_counter() - t)
  med = {k: statistics.median(v) for k, v in times.items()}
  base = med['derived_only']
  shape = 'x'.join(str(d) for d in search['batch']['image'].shape[1:])
  print(f'config: {args.layers} cells, C={args.channels}, batch {args.batch}, {shape}, '
        f'{jax.devices()[0].platform}, conv impl auto; genotype:\n{genotype}')
  base_peak = runs['derived_only']['peak_bytes']
  for k in runs:
    peak = runs[k]['peak_bytes']
    mem = 'n/a' if peak is None else f'{peak / 2**20:.1f} MiB'
    if peak is not None and base_peak:
      mem += f' (x{peak / base_peak:.2f})'
    print(f'{k:15s} step {med[k] * 1e3:8.1f} ms  x{med[k] / base:5.2f} of derived   '
          f'compile {runs[k]["compile_s"]:6.1f} s   memory {mem}')
  print(f'compile of the search step for a new support: {change_s:.1f} s '
        '(at most once per epoch)')


if __name__ == '__main__':
  main()
