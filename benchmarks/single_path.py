"""DSNAS single-path execution: the search step against the derived child's train step.

  python -m benchmarks.single_path [--config=configs/digits.py:nas/dsnas] [--space=shufflenet_small]
      [--batch_size=128] [--size=28] [--channels=1] [--steps=20] [--warmup=2]
      [--executions=switch_vjp,switch_remat,switch,masked] [--genotype=argmax]
      [--data=synthetic] [--json=/tmp/single_path.json]

  # GPU, the full SPOS space at a reduced resolution:
  python -m benchmarks.single_path --space=shufflenet --size=64 --channels=3 \
      --num_classes=1000 --batch_size=128 --json=$OUT/single_path_gpu.json

Issue #5 item 3: the compiled search step must not pay for all K candidates. For every
execution of config.nas.execution (dha_jax/nas/choice_space.py) this builds the DSNAS
search step (alpha learning from step 0) and, once, the train step of the child network
alone (config.nas.genotype = the genotype the search state derives), both exactly as
dha_jax.main compiles them (train.setup + steps.compile_steps, data-parallel over one
device). Every step is compiled ahead of time (compile time reported separately), warmed
up, then all of them are timed ALTERNATELY (child, search 1, search 2, ..., child, ...)
on the same resident batches so they see the same machine load; medians of --steps.

Memory is XLA's buffer assignment of each compiled step (Compiled.memory_analysis()):
'temp' is the step's working memory (activations, residuals, gradients); 'total' is
arguments + outputs - donated aliases + temp, i.e. everything the step holds at once
(the supernet's state holds every candidate's weights, the child's only its own). On GPU
the process-wide peak of device.memory_stats() is added to the JSON (it cannot be reset
between steps, so it is not a per-step number).

The bound to meet: search / child <= 1.3 in time and in memory; 'masked' (every
candidate evaluated: the full supernet) is printed for contrast. The search step samples
a new path every step, so the FLOPs of the child and the expected FLOPs of a sampled path
(E over softmax(alpha)) are printed too: a time ratio is only meaningful next to them.
--data=synthetic (default) uses random uint8 images of the given size (the step's cost
does not depend on pixel values); --data=config loads config.dataset as configured.
'paired ratio' is the median over rounds of search / child of the same round (robust to
load drifting during the run); the JSON also has every step's time and the minima.

Measured 2026-11-23, CPU (2 shared cores, another job on one of them: per-step times
spread 0.5-2x), JAX 0.10.2, shufflenet_small (L=6, K=4), synthetic 28x28x1, batch 64,
conv_impl auto (= 'mixed' on CPU), 15 alternating steps; child 321020 = the initial
argmax, 7.91 MFLOPs/image vs 7.65 expected for a sampled path (5.90-9.36), 25.43 for all
K. Compile s: first (uncached) run, trace + XLA.

| execution | search ms | child ms | time ratio | paired ratio | temp MiB (search / child) | temp ratio | compile s |
|---|---|---|---|---|---|---|---|
| switch_vjp | 1225.8 | 1108.6 | 1.11 | 1.03 | 375.6 / 284.6 | 1.32 | 89.0 |
| switch_remat | 943.2 | 1108.6 | 0.85 | 0.95 | 108.2 / 284.6 | 0.38 | 91.1 |
| switch | 1216.1 | 1108.6 | 1.10 | 1.25 | 375.6 / 284.6 | 1.32 | 146.7 |
| masked (all K) | 3745.8 | 1108.6 | 3.38 | 3.77 | 1031.4 / 284.6 | 3.62 | 157.2 |

(child compile 58.7 s.) 'total' memory ratios equal the temp ratios to 0.01 here (the
state is ~1.6 MiB). On CPU 'switch_remat' is the only single-path execution within the
bound in both time and memory.
"""

import datetime
import json
import os
import platform
import time

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
SINGLE_PATH = ('switch_vjp', 'switch_remat', 'switch')
BOUND = 1.3
_SOURCE = 'single_path_bench'  # the data source this script registers for its runs


def _define_flags():
  config_flags.DEFINE_config_file(
      'config', None, 'config file (default: Fashion-MNIST-like settings built here)',
      lock_config=False)
  flags.DEFINE_string('space', None, 'config.nas.space (default: the config\'s, else '
                      'shufflenet_small)')
  flags.DEFINE_string('executions', 'switch_vjp,switch_remat,switch,masked',
                      'comma-separated config.nas.execution values to time')
  flags.DEFINE_string('genotype', 'argmax', "the child: 'argmax' (what the search state "
                      "derives at the start) or comma-separated block indices")
  flags.DEFINE_integer('batch_size', 0, 'global batch (0: the config\'s)')
  flags.DEFINE_enum('data', 'synthetic', ['synthetic', 'config'],
                    'synthetic images, or config.dataset as configured')
  flags.DEFINE_integer('size', 28, 'synthetic: image side in pixels')
  flags.DEFINE_integer('channels', 1, 'synthetic: image channels')
  flags.DEFINE_integer('num_classes', 10, 'synthetic: number of classes')
  flags.DEFINE_integer('steps', 20, 'timed steps per step function (median reported)')
  flags.DEFINE_integer('warmup', 2, 'untimed steps after compilation')
  flags.DEFINE_string('conv_impl', '', 'config.conv_impl (empty: the config\'s)')
  flags.DEFINE_string('cache_dir', '', 'JAX persistent compilation cache (re-runs compile '
                      'from it: the compile times printed are then cache loads)')
  flags.DEFINE_string('json', '', 'write the results here as JSON')


def get_config():
  """Fashion-MNIST settings (configs/fashion_mnist.py) with the DSNAS small space."""
  from configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  from dha_jax.nas import dsnas  # pylint: disable=g-import-not-at-top
  c = fashion_mnist.get_config()
  c.nas = dsnas.default_config()
  c.nas.space = 'shufflenet_small'
  return c


def nas_config(base, space, execution, genotype):
  """config.nas for one step: DSNAS, alpha learning at once, fixing never (host-side)."""
  from dha_jax.nas import dsnas  # pylint: disable=g-import-not-at-top
  n = dsnas.default_config()
  if base.nas.get('strategy') == 'dsnas':
    for k, v in base.nas.items():
      n[k] = v
  n.strategy, n.warmup_steps, n.warmup_epochs = 'dsnas', 0, 0
  if space:
    n.space = space
  n.execution = execution
  n.genotype = tuple(genotype or ())
  return n


def synthetic_dataset(n_train, size, channels, num_classes, seed):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dha_jax.data import base  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)

  def split(n):
    return base.Split(rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8),
                      rng.integers(0, num_classes, n).astype(np.int32))

  return base.Dataset('synthetic', split(n_train), split(num_classes), split(num_classes),
                      num_classes)


class Step:
  """One compiled train step with its own state; run() times one step to completion."""

  def __init__(self, name, config, mesh, batches=None):
    import jax  # pylint: disable=g-import-not-at-top
    from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
    from dha_jax.training import train  # pylint: disable=g-import-not-at-top
    from dha_jax.training import steps as steps_lib  # pylint: disable=g-import-not-at-top
    self.name, self.config = name, config
    self.ds, self.comps, state, _, _ = train.setup(config, mesh)
    self.strategy = self.comps.strategy
    self.state = parallel.replicate(state, mesh)
    self.batches = batches if batches is not None else make_batches(
        self.ds, self.comps, config, mesh)
    train_step, _ = steps_lib.compile_steps(self.comps, mesh)
    t0 = time.perf_counter()
    lowered = train_step.lower(self.state, self.batches[0])
    t1 = time.perf_counter()
    self.compiled = lowered.compile()
    self.trace_s, self.xla_s = t1 - t0, time.perf_counter() - t1
    self.compile_s = self.trace_s + self.xla_s
    self.memory = memory_of(self.compiled)
    try:
      cost = self.compiled.cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      self.xla_gflop = float(cost.get('flops', float('nan'))) / 1e9
    except Exception:  # pylint: disable=broad-except
      self.xla_gflop = float('nan')
    self.times, self.first_loss, self.i = [], None, 0
    self._jax = jax

  def run(self):
    t0 = time.perf_counter()
    self.state, m = self.compiled(self.state, self.batches[self.i % len(self.batches)])
    self._jax.block_until_ready((self.state, m))
    dt = time.perf_counter() - t0
    if self.first_loss is None:
      self.first_loss = float(self._jax.device_get(m['train/loss']))
    self.i += 1
    return dt


def make_batches(ds, comps, config, mesh, n=4):
  """n global batches (with the HPO batch when the config's eta objective needs one)."""
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
  it = ds.train_iterator('train', config.batch_size, config.seed)
  hpo_it = None
  if comps.hpo.objective in ('val', 'train'):
    hpo_it = ds.train_iterator('val' if comps.hpo.objective == 'val' else 'train',
                               config.batch_size, config.seed + 1)
  out = []
  for _ in range(n):
    b = next(it)
    if hpo_it is not None:
      h = next(hpo_it)
      b.update({'hpo_image': h['image'], 'hpo_label': h['label']})
    out.append(parallel.shard_batch(b, mesh))
  return out


def memory_of(compiled):
  """Bytes from XLA's buffer assignment of a compiled step."""
  m = compiled.memory_analysis()
  m = m[0] if isinstance(m, (list, tuple)) else m
  get = lambda k: int(getattr(m, k, 0) or 0)
  out = {k: get(k) for k in ('argument_size_in_bytes', 'output_size_in_bytes',
                             'alias_size_in_bytes', 'temp_size_in_bytes',
                             'generated_code_size_in_bytes', 'peak_memory_in_bytes')}
  out['total_bytes'] = (out['argument_size_in_bytes'] + out['output_size_in_bytes']
                        - out['alias_size_in_bytes'] + out['temp_size_in_bytes'])
  return out


def parse_genotype(text, num_layers):
  if text == 'argmax':
    return None
  g = tuple(int(v) for v in text.split(','))
  if len(g) != num_layers:
    raise ValueError(f'--genotype needs {num_layers} comma-separated indices, got {text!r}')
  return g


def main(argv):
  del argv
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from dha_jax import data  # pylint: disable=g-import-not-at-top
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top

  if FLAGS.cache_dir:
    jax.config.update('jax_compilation_cache_dir', FLAGS.cache_dir)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  base = FLAGS.config if FLAGS.config is not None else get_config()
  base = base.copy_and_resolve_references()
  if FLAGS.batch_size:
    base.batch_size = FLAGS.batch_size
  if FLAGS.conv_impl:
    base.conv_impl = FLAGS.conv_impl
  executions = [e for e in FLAGS.executions.split(',') if e]
  if FLAGS.data == 'synthetic':
    ds = synthetic_dataset(4 * base.batch_size, FLAGS.size, FLAGS.channels,
                           FLAGS.num_classes, base.seed)
  else:
    ds = data.load(base.dataset, base.seed)
  data.SOURCES.register(_SOURCE)(lambda cfg, seed: ds)  # loaded once, shared by every step
  base.dataset.source = _SOURCE

  mesh = parallel.make_mesh(jax.devices()[:1])
  device = jax.devices()[0]

  def config_for(execution, genotype=None):
    c = base.copy_and_resolve_references()
    c.nas = nas_config(base, FLAGS.space, execution, genotype)
    return c

  # Search steps first: the child's genotype is what their (common) initial alpha derives.
  search, batches = {}, None
  for e in executions:
    search[e] = Step(e, config_for(e), mesh, batches)
    batches = search[e].batches
    print(f'compiled search step {e}: trace {search[e].trace_s:.1f} s + XLA '
          f'{search[e].xla_s:.1f} s', flush=True)
  first = next(iter(search.values()))
  strategy = first.strategy
  L, K = strategy.space.num_layers, strategy.space.num_choices
  alpha0 = np.asarray(jax.device_get(first.state.params['arch']['alpha']))
  genotype = parse_genotype(FLAGS.genotype, L) or tuple(
      strategy.genotype_of(first.state.params['arch'], first.state.nas_state))
  child = Step('child', config_for(executions[0], genotype), mesh, batches)
  print(f'compiled child step {"".join(map(str, genotype))}: {child.compile_s:.1f} s',
        flush=True)

  # FLOPs (multiply-adds per image) of the child, of a sampled path, of the supernet.
  costs = strategy.costs
  p0 = np.exp(alpha0 - alpha0.max(-1, keepdims=True))
  p0 /= p0.sum(-1, keepdims=True)
  mflops = {
      'child': costs.of(genotype)[0] / 1e6,
      'sampled_path_mean': (costs.fixed_flops + float((p0 * costs.flops).sum())) / 1e6,
      'path_min': (costs.fixed_flops + float(costs.flops.min(-1).sum())) / 1e6,
      'path_max': (costs.fixed_flops + float(costs.flops.max(-1).sum())) / 1e6,
      'supernet_all_k': (costs.fixed_flops + float(costs.flops.sum())) / 1e6,
  }

  steps = [child] + [search[e] for e in executions]
  for s in steps:
    for _ in range(FLAGS.warmup + 1):  # the first call also takes the first-step loss
      s.run()
  for _ in range(FLAGS.steps):
    for s in steps:
      s.times.append(s.run())
  med = {s.name: float(np.median(s.times) * 1e3) for s in steps}

  mib = lambda b: b / 2**20
  child_ms, child_mem = med['child'], child.memory
  rows = []
  for e in executions:
    s = search[e]
    rows.append({
        'execution': e, 'search_ms': med[e], 'child_ms': child_ms,
        'time_ratio': med[e] / child_ms,
        'time_ratio_paired': float(np.median(np.asarray(s.times) / np.asarray(child.times))),
        'search_temp_mib': mib(s.memory['temp_size_in_bytes']),
        'child_temp_mib': mib(child_mem['temp_size_in_bytes']),
        'temp_ratio': s.memory['temp_size_in_bytes'] / max(child_mem['temp_size_in_bytes'], 1),
        'search_total_mib': mib(s.memory['total_bytes']),
        'child_total_mib': mib(child_mem['total_bytes']),
        'total_ratio': s.memory['total_bytes'] / max(child_mem['total_bytes'], 1),
        'compile_s': s.compile_s, 'trace_s': s.trace_s, 'xla_compile_s': s.xla_s,
        'first_loss': s.first_loss,
        'search_ms_min': min(s.times) * 1e3, 'child_ms_min': min(child.times) * 1e3,
        'search_ms_all': [t * 1e3 for t in s.times], 'memory': s.memory,
        'xla_gflop': s.xla_gflop,
        'genotype_after': strategy.genotype_of(s.state.params['arch'], s.state.nas_state),
    })
    rows[-1]['within_bound'] = bool(e != 'masked' and rows[-1]['time_ratio'] <= BOUND
                                    and rows[-1]['temp_ratio'] <= BOUND
                                    and rows[-1]['total_ratio'] <= BOUND)

  ok = [r for r in rows if r['within_bound']]
  single = [r for r in rows if r['execution'] in SINGLE_PATH]
  pick = min(ok or single or rows, key=lambda r: r['search_ms'])['execution']
  stats = getattr(device, 'memory_stats', lambda: None)()
  out = {
      'date': datetime.datetime.now().isoformat(timespec='seconds'),
      'backend': jax.default_backend(), 'device': str(getattr(device, 'device_kind', device)),
      'jax': jax.__version__, 'python': platform.python_version(),
      'space': strategy.space.name, 'num_layers': L, 'num_choices': K,
      'image_shape': list(ds.image_shape), 'batch_size': base.batch_size,
      'data': ds.name, 'conv_impl': base.conv_impl, 'steps': FLAGS.steps,
      'warmup': FLAGS.warmup, 'compilation_cache': FLAGS.cache_dir or None,
      'genotype': list(genotype),
      'genotype_names': [strategy.space.choices[g] for g in genotype],
      'mflops_per_image': mflops, 'child_ms_all': [t * 1e3 for t in child.times],
      'child_memory': child_mem, 'child_compile_s': child.compile_s,
      'child_first_loss': child.first_loss, 'child_xla_gflop': child.xla_gflop,
      'bound': BOUND, 'rows': rows, 'recommended': pick, 'recommended_within_bound': bool(ok),
      'process_peak_bytes_in_use': (stats or {}).get('peak_bytes_in_use'),
  }

  print(f'\nDSNAS single-path step vs derived child, {out["date"]}, backend {out["backend"]} '
        f'({out["device"]}), JAX {out["jax"]}, Python {out["python"]}')
  print(f'space {out["space"]} (L={L}, K={K}), images {tuple(ds.image_shape)} ({ds.name}), '
        f'batch {base.batch_size}, conv_impl {base.conv_impl}, medians of {FLAGS.steps} '
        f'alternating steps after {FLAGS.warmup + 1} warm-up')
  print(f'child genotype {"".join(map(str, genotype))}: {mflops["child"]:.2f} MFLOPs/image '
        f'(multiply-adds); sampled path mean {mflops["sampled_path_mean"]:.2f} '
        f'[min {mflops["path_min"]:.2f}, max {mflops["path_max"]:.2f}]; all K candidates '
        f'{mflops["supernet_all_k"]:.2f}. Child step: compile {child.compile_s:.1f} s, '
        f'first loss {child.first_loss:.4f}\n')
  if FLAGS.cache_dir:
    print(f'(compilation cache {FLAGS.cache_dir}: compile s may be cache loads)')
  print('| execution | search ms | child ms | time ratio | paired ratio | search temp MiB '
        '| child temp MiB | temp ratio | search total MiB | child total MiB | total ratio '
        '| compile s | loss step 1 |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    name = r['execution'] + (' (full supernet)' if r['execution'] == 'masked' else '')
    print(f'| {name} | {r["search_ms"]:.1f} | {r["child_ms"]:.1f} | {r["time_ratio"]:.2f} '
          f'| {r["time_ratio_paired"]:.2f} | {r["search_temp_mib"]:.1f} | {r["child_temp_mib"]:.1f} | {r["temp_ratio"]:.2f} '
          f'| {r["search_total_mib"]:.1f} | {r["child_total_mib"]:.1f} '
          f'| {r["total_ratio"]:.2f} | {r["compile_s"]:.1f} | {r["first_loss"]:.4f} |')
  print(f'\nrecommended on {out["backend"]}: {pick} '
        f'({"within" if ok else "NOT within"} the {BOUND}x bound in time and memory)')
  if out['process_peak_bytes_in_use'] is not None:
    print(f'process-wide device peak (all steps): '
          f'{mib(out["process_peak_bytes_in_use"]):.1f} MiB')
  if FLAGS.json:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json)), exist_ok=True)
    with open(FLAGS.json, 'w') as f:
      json.dump(out, f, indent=1)
    print(f'wrote {FLAGS.json}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
