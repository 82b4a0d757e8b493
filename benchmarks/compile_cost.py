"""Compile seconds (cold and warm cache) and the steady step time of each kind of program.

  python -m benchmarks.compile_cost --config=configs/fashion_mnist.py \
      --out=benchmarks/results/compile_cost_fashion_mnist.jsonl [--rows=plain,ista_traced]
      [--synthetic=28,28,1] [--override=batch_size=64] [--steps=5]

Each row runs the training loop's step (train.StepCache, as a run compiles it) in two
fresh processes over one empty cache directory (dha_jax/core/compile_cache.py): the first
compiles cold (trace + lower + XLA compile, seconds from JAX's monitoring events), the
second finds the kept executable (its load). The first also times `--steps` steps after
two warm-up steps (median ms). Rows already in --out are not measured again (a
measurement may span sessions); --table prints the markdown table of --out.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string('config', 'configs/fashion_mnist.py', 'A dataset config with variants.')
flags.DEFINE_string('out', '', 'JSONL file the rows are appended to.')
flags.DEFINE_list('rows', [], 'Rows to measure (default: all of ROWS).')
flags.DEFINE_list('override', ['dataset.train_subset=1000'], 'field=value for every row.')
flags.DEFINE_string('synthetic', '', 'H,W,C: random pixels of this shape instead of the '
                    "config's data (a data set that is not on this machine, e.g. CIFAR-10).")
flags.DEFINE_integer('steps', 5, 'Timed steps after 2 warm-up steps.')
flags.DEFINE_bool('table', False, 'Only print the table of --out.')
flags.DEFINE_string('_one', '', 'internal: measure this row in this process')
flags.DEFINE_string('_cache', '', 'internal: the cache directory')

# row: (the config's variant argument, {field: value})
ROWS = {
    'plain': ('fixed', {}),
    'tau': ('da', {}),
    'eta_lagged': ('hpo', {'hpo.objective': 'lagged'}),
    'eta_val': ('hpo', {'hpo.objective': 'val'}),
    'dsnas': ('nas/dsnas', {}),
    'ista_traced': ('nas/ista', {}),
    'cell_child_traced': ('random/ista', {'nas.execution': 'traced'}),
    'cell_child_static': ('random/ista', {'nas.execution': 'static'}),
    'dha_ista': ('dha/ista', {}),
    'dha_dsnas': ('dha/dsnas', {}),
}


def _set(config, field, text):
  node, parts = config, field.split('.')
  for p in parts[:-1]:
    node = node[p]
  old = node[parts[-1]]
  if isinstance(old, bool):
    value = text.lower() in ('1', 'true', 'yes')
  elif isinstance(old, (int, float)):
    value = type(old)(text)
  elif isinstance(old, (tuple, list)):
    value = tuple(type(old[0])(v) for v in text.split(',')) if old else tuple(text.split(','))
  else:
    value = text
  node[parts[-1]] = value


def row_config(row):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location('_bench_config', FLAGS.config)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  variant, fields = ROWS[row]
  c = module.get_config(variant)
  for kv in FLAGS.override:
    _set(c, *kv.split('=', 1))
  if FLAGS.synthetic:
    shape = tuple(int(v) for v in FLAGS.synthetic.split(','))
    c.dataset.source = 'synthetic'
    c.dataset.synthetic.shape = shape
    c.dataset.synthetic.size = max(4 * c.batch_size, 512)
    c.dataset.mean, c.dataset.std = (0.5,) * shape[-1], (0.25,) * shape[-1]
  for k, v in fields.items():
    _set(c, k, str(v))
  c.compile_cache_dir = FLAGS._cache  # pylint: disable=protected-access
  return c


def measure_one(row):
  """{'compile_s', 'compiles', 'loaded', 'ms_per_step', ...} of the loop's train step."""
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dha_jax.core import compile_cache, parallel  # pylint: disable=g-import-not-at-top
  from dha_jax.training import train  # pylint: disable=g-import-not-at-top
  c = row_config(row)
  compile_cache.enable(c.compile_cache_dir)
  mesh = parallel.make_mesh(None)
  ds, comps, state, _, _ = train.setup(c, mesh)
  state = parallel.replicate(state, mesh)
  shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), state)
  cache = train.StepCache(comps, mesh, shared=(ds.num_examples('train'), ds.num_classes,
                                               shapes))
  it = train.Batches(ds, comps, c)
  batches = [parallel.shard_batch(next(it), mesh) for _ in range(3)]
  s0, n0 = train.CompileLog.now()
  t0 = time.perf_counter()
  step, _ = cache(state)
  state, m = step(state, batches[0])
  jax.block_until_ready(m)
  first_s = time.perf_counter() - t0
  s1, n1 = train.CompileLog.now()
  times = []
  for i in range(2 + FLAGS.steps):
    t = time.perf_counter()
    state, m = step(state, batches[(i + 1) % 3])
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  n_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(state.params['net']))
  return {'compile_s': round(s1 - s0, 2), 'xla_compiles': n1 - n0,
          'first_call_s': round(first_s, 2), 'loaded': bool(getattr(step, 'loaded', False)),
          'ms_per_step': round(float(np.median(times[2:])) * 1e3, 1),
          'net_params': n_params, 'batch_size': c.batch_size,
          'backend': jax.default_backend(), 'devices': int(mesh.devices.size)}


def _child(row, cache):
  cmd = [sys.executable, '-m', 'benchmarks.compile_cost', f'--config={FLAGS.config}',
         f'--_one={row}', f'--_cache={cache}', f'--steps={FLAGS.steps}',
         f'--override={",".join(FLAGS.override)}'] + (
             [f'--synthetic={FLAGS.synthetic}'] if FLAGS.synthetic else [])
  out = subprocess.run(cmd, capture_output=True, text=True, check=False)
  lines = [ln for ln in out.stdout.splitlines() if ln.startswith('{')]
  if out.returncode or not lines:
    raise RuntimeError(f'row {row} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}')
  return json.loads(lines[-1])


def _done(path):
  if not path or not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(ln) for ln in f if ln.strip()]


def table(rows):
  head = ('| program | cold compile s | warm (load) s | warm / cold | XLA compiles cold | '
          'ms / step | params |\n|---|---|---|---|---|---|---|')
  lines = [head]
  for r in rows:
    lines.append(f"| {r['row']} | {r['cold']['compile_s']:.1f} | {r['warm']['compile_s']:.1f} "
                 f"| {r['warm']['compile_s'] / max(r['cold']['compile_s'], 1e-9):.2f} | "
                 f"{r['cold']['xla_compiles']} | {r['cold']['ms_per_step']:.0f} | "
                 f"{r['cold']['net_params']:,} |")
  return '\n'.join(lines)


def main(argv):
  del argv
  if FLAGS._one:  # pylint: disable=protected-access
    print(json.dumps(measure_one(FLAGS._one)))  # pylint: disable=protected-access
    return
  if FLAGS.table:
    print(table(_done(FLAGS.out)))
    return
  done = {r['row'] for r in _done(FLAGS.out)}
  for row in FLAGS.rows or list(ROWS):
    if row in done:
      continue
    with tempfile.TemporaryDirectory(prefix='compile_cost_') as cache:
      cold = _child(row, cache)
      warm = _child(row, cache)
    rec = {'row': row, 'config': FLAGS.config, 'variant': ROWS[row][0],
           'fields': ROWS[row][1], 'override': FLAGS.override, 'synthetic': FLAGS.synthetic,
           'cold': cold, 'warm': warm}
    print(json.dumps(rec), flush=True)
    if FLAGS.out:
      with open(FLAGS.out, 'a') as f:
        f.write(json.dumps(rec) + '\n')
  print(table([r for r in _done(FLAGS.out)]) if FLAGS.out else '')


if __name__ == '__main__':
  app.run(main)
