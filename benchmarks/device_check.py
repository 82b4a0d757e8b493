"""The step of every component on one accelerator, in the few minutes a lent one allows.

  python -m benchmarks.device_check [--batch_size=256] [--out=device_check.json]
  python -m benchmarks.device_check --small     # CPU, a few small networks (the suite)

The imagenet config (configs/imagenet.py) on synthetic data (no dataset on the machine):
the plain step (fixed ResNet-18), + learned tau, + eta 'val', + eta 'lagged', DSNAS
single-path search (switch_vjp and masked), ISTA's search, full DHA; each in float32 and
bfloat16. Per row: images/s, compile seconds, peak device memory of the step (XLA's
accounting of the compiled program), and the time ratio to the plain step of the same
dtype. Steps run on 4 resident batches, so the input pipeline is not measured (that is
benchmarks/input_pipeline.py). Rows that would start past --time_budget_s are skipped
and marked, so the table always comes back.
"""

import json
import os
import time

from absl import app, flags
import numpy as np

from benchmarks import step_cost

FLAGS = flags.FLAGS

# name: (configs/imagenet.py argument, overrides): what each row switches on
VARIANTS = {
    'plain': ('', {}),
    'tau': ('da', {}),
    'eta_val': ('hpo', {'hpo.objective': 'val'}),
    'eta_lagged': ('hpo', {'hpo.objective': 'lagged'}),
    'dsnas_switch_vjp': ('nas/dsnas', {'nas.execution': 'switch_vjp'}),
    'dsnas_masked': ('nas/dsnas', {'nas.execution': 'masked'}),
    'ista': ('nas/ista', {}),
    'dha': ('dha', {}),
}
# --small: the same rows at 32 px with networks a 2-core CPU compiles in seconds, and the
# convolution a GPU runs (XLA's own; the CPU's default formulations compile ~2x longer)
SMALL = {'preprocess.image_size': 32, 'dataset.synthetic.num_classes': 10,
         'model.stage_sizes': (1, 1, 1, 1), 'model.width': 8, 'conv_impl': 'xla'}
SMALL_NAS = {'dsnas': {'nas.space': 'shufflenet_small', 'nas.budget': 0.0},
             'ista': {'nas.channels': 4, 'nas.layers': 3, 'nas.budget_mparams': 0.0}}


def _define_flags():
  flags.DEFINE_bool('small', False, '32 px, tiny networks, batch 8: a CPU smoke run')
  flags.DEFINE_string('variants', ','.join(VARIANTS), 'rows, comma-separated')
  flags.DEFINE_string('dtypes', 'float32,bfloat16', 'config.compute_dtype values')
  flags.DEFINE_integer('batch_size', 256, 'global batch of every row')
  flags.DEFINE_integer('steps', 10, 'timed steps per row (median)')
  flags.DEFINE_integer('warmup', 2, 'untimed steps after the compile')
  flags.DEFINE_float('time_budget_s', 270.0, 'rows that would start later are skipped')
  flags.DEFINE_string('out', 'benchmarks/results/device_check.json', 'JSON written here')


def _set(c, dotted, value):
  *parents, leaf = dotted.split('.')
  for p in parents:
    c = c[p]
  c[leaf] = value


def make_config(name, dtype, batch_size, small=False):
  """The imagenet config of row `name` on synthetic data, in compute dtype `dtype`."""
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  if name not in VARIANTS:
    raise ValueError(f'--variants: unknown row {name!r}; choose from {", ".join(VARIANTS)}')
  arg, overrides = VARIANTS[name]
  c = imagenet.get_config(arg)
  side = c.dataset.load_size
  updates = {'dataset.source': 'synthetic', 'dataset.val_size': batch_size,
             'dataset.synthetic.size': 4 * batch_size,
             'dataset.synthetic.num_classes': 1000, 'batch_size': batch_size,
             'eval_batch_size': batch_size, 'compute_dtype': dtype, **overrides}
  if small:
    side = 36
    updates.update(SMALL)
    strategy = c.nas.strategy
    updates.update(SMALL_NAS.get(strategy, {}))
  updates['dataset.synthetic.shape'] = (side, side, 3)
  for k, v in updates.items():
    _set(c, k, v)
  return c


def measure_row(config, steps, warmup):
  built = step_cost.build(config)
  for _ in range(warmup):
    built.run_one()
  sec = float(np.median([built.run_one() for _ in range(steps)]))
  return {'ms_per_step': sec * 1e3, 'images_per_s': config.batch_size / sec,
          'compile_s': built.compile_s, 'peak_memory_bytes': built.memory()}


def run(names, dtypes, batch_size, steps, warmup, time_budget_s, small=False):
  """Rows in order dtype-major (plain first in each), with ratios to that dtype's plain."""
  import jax  # pylint: disable=g-import-not-at-top
  start, rows = time.perf_counter(), []
  for dtype in dtypes:
    for name in names:
      row = {'variant': name, 'dtype': dtype}
      if time.perf_counter() - start > time_budget_s:
        row['skipped'] = f'past --time_budget_s={time_budget_s:g}'
      else:
        row.update(measure_row(make_config(name, dtype, batch_size, small), steps, warmup))
      rows.append(row)
      print(json.dumps(row), flush=True)
  plain = {r['dtype']: r['ms_per_step'] for r in rows
           if r['variant'] == 'plain' and 'ms_per_step' in r}
  for r in rows:
    if 'ms_per_step' in r and r['dtype'] in plain:
      r['ratio_to_plain'] = r['ms_per_step'] / plain[r['dtype']]
  dev = jax.devices()[0]
  return {'device': getattr(dev, 'device_kind', str(dev)), 'backend': jax.default_backend(),
          'devices': jax.device_count(), 'batch_size': batch_size, 'small': small,
          'jax': jax.__version__, 'date': time.strftime('%Y-%m-%d'),
          'seconds': time.perf_counter() - start, 'rows': rows}


def table(result) -> str:
  lines = [f"{result['device']} ({result['backend']}), batch {result['batch_size']}, "
           f"JAX {result['jax']}, {result['date']}", '',
           '| variant | dtype | images/s | ratio to plain | compile s | peak memory GiB |',
           '|---|---|---|---|---|---|']
  for r in result['rows']:
    if 'skipped' in r:
      lines.append(f"| {r['variant']} | {r['dtype']} | skipped ({r['skipped']}) | | | |")
      continue
    mem = r['peak_memory_bytes']
    lines.append(f"| {r['variant']} | {r['dtype']} | {r['images_per_s']:,.0f} | "
                 f"{r.get('ratio_to_plain', float('nan')):.2f} | {r['compile_s']:.1f} | "
                 f"{'n/a' if mem is None else f'{mem / 2**30:.2f}'} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  batch = 8 if FLAGS.small and FLAGS['batch_size'].using_default_value else FLAGS.batch_size
  result = run([v for v in FLAGS.variants.split(',') if v], FLAGS.dtypes.split(','), batch,
               FLAGS.steps, FLAGS.warmup, FLAGS.time_budget_s, FLAGS.small)
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
  with open(FLAGS.out, 'w') as f:
    json.dump(result, f, indent=2)
  print(table(result))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
