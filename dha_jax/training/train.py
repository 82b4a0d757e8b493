"""The training loop: mesh, data, state (new or restored), steps, evaluation,
checkpoints, logging, and the outputs of a run (result.json, plots)."""

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from dha_jax import data, hpo, nas
from dha_jax.augment import policies
from dha_jax.core import compile_cache, distributed, optim, parallel
from dha_jax.io import checkpoint, export, metrics_io
from dha_jax.layers import conv, precision
from dha_jax.nas import host_init
from dha_jax.training import budget, loop, steps
from dha_jax.training import state as state_lib


NonFiniteLoss = loop.NonFiniteLoss  # (dha_jax/core/cli.py reports it as a run error)


class CompileLog:
  """Seconds JAX spends tracing, lowering, compiling or loading compiled programs (from
  JAX's persistent cache: inside its backend-compile event; the loop's kept executables:
  compile_cache.LOAD_EVENT; a load is not free on a CPU), and the number of programs XLA
  compiled (its backend compiles less the persistent cache's hits), from JAX's
  monitoring events (process-wide; a run reports the difference)."""
  seconds, backend = 0.0, 0
  EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
            '/jax/core/compile/jaxpr_to_mlir_module_duration',
            compile_cache.LOAD_EVENT,
            '/jax/core/compile/backend_compile_duration')

  @classmethod
  def listen(cls, event, duration, **kwargs):
    del kwargs
    if event in cls.EVENTS:
      cls.seconds += duration
      cls.backend += event == cls.EVENTS[-1]

  @classmethod
  def now(cls):
    """(seconds, XLA compiles) so far in this process."""
    return cls.seconds, cls.backend - compile_cache.hits()


jax.monitoring.register_event_duration_secs_listener(CompileLog.listen)


def setup(config, mesh, abstract=False):
  """Everything static a run needs: data, components, compiled steps, a fresh state.

  abstract=True gives the state as shapes and dtypes only (jax.ShapeDtypeStruct; nothing
  initialised or allocated): for tracing or lowering the step ahead of time, e.g. to check
  a config or read its compiled memory, where initialising a big network eagerly costs
  minutes on a CPU."""
  conv.set_default_impl(config.conv_impl)
  precision.set_compute_dtype(config.compute_dtype)
  parallel.check_divisible(config.batch_size, mesh)
  parallel.check_divisible(config.eval_batch_size, mesh, 'config.eval_batch_size')
  ds = data.load(config.dataset, config.seed)
  steps_per_epoch = ds.num_examples('train') // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f'config.batch_size={config.batch_size} exceeds the training split '
                     f'({ds.num_examples("train")} examples)')
  total = config.num_steps or int(math.ceil(config.num_epochs * steps_per_epoch))
  image_shape = _model_input_shape(config, ds)
  strategy = nas.create(config, ds.num_classes, image_shape)
  policy = policies.create(config)
  eta_handler = hpo.create(config)
  txs = state_lib.optimizers(config, strategy, policy)
  lr_factor = optim.schedule_factor(config, steps_per_epoch, total)
  comps = steps.Components(config, strategy, policy, eta_handler, txs, lr_factor)
  create = lambda rng: state_lib.create(config, strategy, policy, eta_handler, txs,
                                        image_shape, rng, budget.initial_horizon(config, total))
  rng = jax.random.PRNGKey(config.seed)
  if abstract:
    with host_init.abstract():
      state = jax.eval_shape(create, rng)
  else:
    state = create(rng) if strategy.init_on_host else state_lib.run_once(create, rng)
  return ds, comps, state, steps_per_epoch, total


def evaluate(eval_step, state, ds, split, config, mesh, limit=None):
  sums = None
  for batch in ds.eval_iterator(split, config.eval_batch_size, jax.process_index(),
                                jax.process_count(), limit):
    out = eval_step(state, parallel.shard_batch(batch, mesh))
    sums = out if sums is None else jax.tree_util.tree_map(jnp.add, sums, out)
  sums = jax.device_get(sums)
  n = max(float(sums['count']), 1.0)
  return {f'{split}/loss': float(sums['loss']) / n,
          f'{split}/accuracy': float(sums['correct']) / n,
          f'{split}/top5': float(sums['correct5']) / n}


class StepCache:
  """Compiled (train_step, eval_step) per static structure of the strategy: a strategy
  with static_key/specialize (e.g. an ISTA support, changing at most once per epoch) gets
  one compiled step per structure; every other strategy has one key, None.

  Given `shared` (the training loop: what its components depend on besides the config,
  the data's size and classes and the state's shapes), the steps are also kept process-wide
  (_RunSteps): running the same config on the same data again in a process (a resumed
  run, a notebook's second run) traces nothing again."""

  def __init__(self, comps, mesh, shared=None):
    self.comps, self.mesh = comps, mesh
    self.steps, self.executables = {}, None
    if shared is not None:  # kept in the process and on disk (compile_cache.py)
      identity = step_identity(comps, mesh, shared)
      self.steps = _RunSteps.get(identity)
      self.executables = compile_cache.Executables(identity, comps.modules(),
                                                   mesh.devices.flat)

  def components(self, state):
    """(static key, the components with the strategy specialised to it) for `state`."""
    strategy = self.comps.strategy
    key = strategy.sparse.static_key(jax.device_get(state.nas_state))
    specialized = strategy if key is None else strategy.sparse.specialize(key)
    return key, self.comps.with_strategy(specialized)

  def __call__(self, state):
    key, comps = self.components(state)
    if key not in self.steps:
      wrap = None
      if self.executables is not None:
        wrap = lambda fn, name: self.executables.wrap(fn, f'{name}-{key!r}')
      self.steps[key] = steps.compile_steps(comps, self.mesh, wrap)
    return self.steps[key]


def step_identity(comps, mesh, shared):
  """What the loop's compiled steps depend on besides their arguments: the config less
  what reaches the step as arrays (config.seed, Strategy.data_fields), what the strategy
  fixed outside the config (program_key), `shared` (the data's sizes, the state's shapes),
  the mesh and the process-wide settings. Runs with equal identities share programs."""
  return (repr(shared), _process_settings(mesh), comps.strategy.program_key(),
          compile_cache.config_key(comps.config, comps.strategy.data_fields))


def _process_settings(mesh):
  """What a compiled step depends on beyond its config and arguments: the mesh and the
  process-wide settings read at trace time."""
  return (tuple(mesh.shape.items()), tuple(d.id for d in mesh.devices.flat),
          str(precision.compute_dtype()), conv.get_default_impl(),
          bool(jax.config.jax_enable_x64), jax.process_count())


class _RunSteps:
  """The loop's StepCache.steps of the last few programs (StepCache's identity: the
  config less what reaches the step as data, the data's sizes, the state's shapes, the
  mesh and the process-wide settings)."""
  MAX = 4
  _kept = {}

  @classmethod
  def get(cls, key):
    steps_ = cls._kept.pop(key, None)
    if steps_ is None:
      steps_ = {}
      while len(cls._kept) >= cls.MAX:
        cls._kept.pop(next(iter(cls._kept)))  # the least recently used
    cls._kept[key] = steps_
    return steps_


class Batches:
  """The step's input, built from what the components declare: the training batch, plus
  the HPO batch when eta is learned from one ('train' or 'val' objective), the
  held-out batch of a bi-level strategy (fed every step; used while it searches) and
  that of tau's held-out objective. Each
  stream has its own seed and resumes at `start`; this process reads its slice."""

  def __init__(self, ds, comps, config, start=0, process_index=0, process_count=1):
    def stream(split, offset):
      return ds.train_iterator(split, config.batch_size, config.seed + offset, start,
                               process_index, process_count)
    self.streams = [('', stream('train', 0))]
    if comps.feeds_hpo_batch:
      self.streams.append(('hpo_', stream('train' if comps.hpo.objective == 'train' else 'val',
                                          1)))
    if comps.feeds_arch_batch:
      self.streams.append(('arch_', stream('val', 2)))
    if comps.feeds_policy_batch:  # tau's held-out objective
      self.streams.append(('policy_', stream('val', 3)))

  def __iter__(self):
    return self

  def __next__(self):
    batch = {}
    for prefix, it in self.streams:
      batch.update({prefix + k: v for k, v in next(it).items()})
    return batch


def train_and_evaluate(config, workdir: str, devices=None):
  """Trains (or resumes) the run in `workdir`; returns the result dict (also result.json).
  The loop's parts are dha_jax/training/loop.py's, run in this order each step."""
  t_start = time.time()
  compile_cache.enable(config.compile_cache_dir)  # before the first compile
  clock, compile_start = budget.TrainClock(config), CompileLog.now()
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.make_mesh(devices)
  ds, comps, state, steps_per_epoch, total = setup(config, mesh)
  distributed.together(mesh, 'setup')  # before Orbax's and the first step's collectives
  ckpt = checkpoint.Checkpointer(workdir, config, config.checkpoint_every_steps,
                                 config.keep_checkpoints)
  state, resumed = ckpt.restore(parallel.replicate(state, mesh))
  start = int(jax.device_get(state.step))
  if resumed:
    print(f'resumed from {ckpt.dir} at step {start}', flush=True)
  shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), state)
  compiled = StepCache(comps, mesh, shared=(ds.num_examples('train'), ds.num_classes, shapes))
  writer = metrics_io.MetricsWriter(workdir, start)
  search = loop.SearchSchedule(comps.strategy, compiled, state, steps_per_epoch, writer,
                               lambda s, step: _arch_pictures(workdir, comps, s, writer, step))
  progress = metrics_io.Progress(total, start, config.progress)
  batches = parallel.prefetch_to_device(Batches(ds, comps, config, start, jax.process_index(),
                                                jax.process_count()), mesh)
  horizon = loop.Horizon(config, comps.strategy, clock, steps_per_epoch, total)
  state = horizon.start(state)
  progress.total = horizon.shown()
  log = loop.StepLog(config, comps, writer, progress, clock, steps_per_epoch, start,
                     lambda eval_step, s: evaluate(eval_step, s, ds, 'val', config, mesh))
  guard, step, stop = loop.NonFiniteGuard(ckpt.dir), start, False
  clock.start(ckpt.elapsed_at(start) if resumed else 0.0)
  try:
    with loop.Preemption() as preemption:
      while step < horizon.end and not loop.budget_spent(clock, config, writer, step):
        state, metrics = search.train_step(state, next(batches))
        guard.after_step(metrics, step)
        step += 1
        state = horizon.after_step(state, step, writer)
        progress.total = horizon.shown()
        log.after_step(step, horizon.end, metrics, state, search)
        state = search.after_step(state, step, horizon)
        stop = distributed.any_process(preemption.requested)  # one SIGTERM stops all
        loop.save_if_due(ckpt, guard, state, step, stop, clock)
        if stop:
          break
    if not stop:
      guard.at_end(step)
  except BaseException:
    # Whatever ends the loop (non-finite loss, an exception, Ctrl-C), the checkpoint writes
    # in flight finish first, so the latest checkpoint on disk is whole and restorable.
    ckpt.close()
    writer.close()
    raise
  if stop:
    ckpt.close()
    writer.close()
    print(f'SIGTERM: saved step {step} to {ckpt.dir}; run the same command to resume.',
          flush=True)
    return {'preempted': True, 'step': step}
  return _export(config, workdir, state, ds, comps, mesh, step, ckpt, writer, clock,
                 t_start, compile_start)


def _export(config, workdir, state, ds, comps, mesh, step, ckpt, writer, clock, t_start,
            compile_start):
  """The last state saved, then finish(): the exported child, result.json, the last
  metrics row (the result's numbers)."""
  train_time = clock.elapsed()  # training only (the final save, test and export follow)
  if ckpt.latest_step() != step and loop.all_finite(state.params):
    ckpt.save(state, step, force=True, elapsed_s=train_time)
  ckpt.close()
  result = finish(config, workdir, state, ds, comps, mesh, step, time.time() - t_start,
                  writer, extra={
                      'train_time_s': train_time, 'horizon': int(
                          jax.device_get(state.horizon)),
                      'compile_s': CompileLog.now()[0] - compile_start[0],
                      'num_compiles': CompileLog.now()[1] - compile_start[1]})
  writer.write(step, {k: v for k, v in result.items() if isinstance(v, (int, float))})
  writer.close()
  return result


def _arch_pictures(workdir, comps, state, writer, step):
  """The strategy's current architecture, drawn (host 0)."""
  if jax.process_index() != 0:
    return
  arch, nas_state = distributed.host_copy((state.params['arch'], state.nas_state))
  loop.save_pictures(workdir, writer, step, comps.strategy.search.pictures(arch, nas_state))


def _search_end_step(workdir):
  for row in metrics_io.read_rows(workdir):
    if row.get('event') == 'search_end':
      return int(row['step'])
  return None


def _model_input_shape(config, ds):
  shape = tuple(ds.image_shape)
  if config.preprocess.image_size:
    shape = (config.preprocess.image_size,) * 2 + shape[2:]
  return shape


def finish(config, workdir, state, ds, comps, mesh, step, wall_time, writer, extra=None):
  """The derived child (BN recalibrated) is exported to <workdir>/model and its test
  accuracy is the run's result (its validation accuracy too: the caller logs the result
  as the last metrics row); result.json and the pictures of what was learned."""
  module, variables, genotype = comps.strategy.child(state)
  if config.recalibration_batches:
    it = ds.train_iterator('train', config.batch_size, config.seed + 3, 0,
                           jax.process_index(), jax.process_count())
    batches = (next(it)['image'] for _ in range(config.recalibration_batches))
    variables = export.recalibrate_bn(module, variables, batches, mesh, comps.prepare_eval)
  eval_child = parallel.data_parallel(
      steps.make_eval_step(comps, lambda v, x: module.apply(v, x, train=False)), mesh,
      (parallel.REPLICATED, parallel.SHARDED), parallel.REPLICATED)
  replicated = parallel.replicate(variables, mesh)
  result = evaluate(eval_child, replicated, ds, 'test', config, mesh)
  if ds.num_examples('val'):  # the exported model's, what a choice between runs reads
    val = evaluate(eval_child, replicated, ds, 'val', config, mesh)  # (compare's lr_grid)
    result.update({k: val[k] for k in ('val/loss', 'val/accuracy')})
  if ds.num_classes <= 10:
    result.pop('test/top5')
  hp = jax.device_get(comps.eta(state.step, state.hparams, state.horizon))
  result.update({
      'num_params': state_lib.num_params(variables['params']),
      'model_flops': export.forward_flops(module, variables, _model_input_shape(config, ds)),
      'wall_time_s': wall_time,
      'steps': step,
      'images_processed': step * config.batch_size,
      'search_end_step': _search_end_step(workdir),
      'hparams': {k: np.asarray(v).tolist() for k, v in hp.items()},
      'dataset': ds.name,
      'test_examples': int(ds.num_examples('test')),  # the binomial noise floor of test/
      'devices': int(mesh.devices.size),
      **(extra or {}),
  })
  arch, nas_state, policy = distributed.host_copy(
      (state.params['arch'], state.nas_state, state.params['policy']))
  result.update(comps.policy.summary(policy))
  result.update(comps.strategy.summary(arch, nas_state))
  image_shape = tuple(ds.image_shape)
  export.save(os.path.join(workdir, 'model'), config, ds.num_classes, image_shape,
              genotype, variables,
              {k: v for k, v in result.items() if k.startswith('test/')})
  if jax.process_index() == 0:
    _pictures(workdir, result, writer, step, comps)
    with open(os.path.join(workdir, 'result.json'), 'w') as f:
      json.dump(result, f, indent=2)
  print('result: ' + json.dumps({k: v for k, v in result.items()
                                 if isinstance(v, (int, float))}), flush=True)
  return result


def _pictures(workdir, result, writer, step, comps):
  """What tau, eta and the search learned, drawn once at the end (host 0)."""
  from dha_jax.io import plots  # pylint: disable=g-import-not-at-top
  if comps.hpo.objective is not None:
    from dha_jax.hpo import plot  # pylint: disable=g-import-not-at-top
    plot.plot_hparams(os.path.join(workdir, 'metrics.jsonl'),
                      os.path.join(workdir, 'hparams.png'))
  loop.save_pictures(workdir, writer, step,
                 comps.strategy.search.run_pictures(metrics_io.read_rows(workdir)))
  if 'policy' in result:
    loop.save_pictures(workdir, writer, step, {'policy': plots.policy_figure(
        result['policy']['probabilities'], result['policy']['ops'])})
