"""Orbax checkpoints of the whole TrainState in <workdir>/checkpoints.

Saves are asynchronous; a run started again in the same workdir resumes from the latest
one. The run's config is stored beside them and a different config is refused, so a
checkpoint is never silently overwritten by an incompatible run.
"""

import json
import os

import jax
import orbax.checkpoint as ocp

from dha_jax import nas
from dha_jax.augment import ops

# Fields that may change between a run and its resumption (they do not change the maths
# of the steps already taken): logging, checkpoint cadence, the length of the run, where
# the data lives; a strategy adds its own config.nas ones (base.Strategy.may_differ).
MAY_DIFFER = ('log_every_steps', 'checkpoint_every_steps', 'keep_checkpoints', 'progress',
              'eval_every_epochs', 'num_epochs', 'num_steps', 'time_budget_s', 'time_budget_clock',
              'dataset.data_dir', 'recalibration_batches', 'time_budget_pilot_steps',
              'time_budget_sets_horizon', 'compile_cache_dir')


# Fields added to the config after runs already existed, each with the value that means
# the behaviour from before it: a checkpoint whose config.json predates a field resumes
# when the new config keeps that value (any other value is a different run).
ADDED_FIELDS = {'model.depth': 0, 'model.widen': 0, 'policy.ops': list(ops.OP_NAMES),
                'dataset.synthetic.shape': [32, 32, 3], 'dataset.synthetic.num_classes': 10,
                'dataset.synthetic.size': 1024, 'compute_dtype': 'float32',
                'model.hidden': 256, 'dataset.eval_shift': [0, 0], 'dataset.eval_rotate': 0.0,
                'policy.objective': 'train', 'hpo.tangent_decay': 0.0, 'hpo.every_steps': 1,
                'hpo.reset_tangent': False, 'hpo.handler': 'hypergrad'}  # (2026-12-07, #34)


def may_differ():
  """MAY_DIFFER with every registered strategy's config.nas fields that may change (ISTA's
  freeze threshold: decisions taken are in the state, so a search whose codes keep moving
  can be told to stop sooner without losing the run)."""
  return set(MAY_DIFFER) | {f'nas.{k}' for name in nas.STRATEGIES
                            for k in nas.STRATEGIES[name].may_differ}


def added_fields():
  """ADDED_FIELDS with every registered strategy's config.nas ones (base.Strategy.
  added_fields); two strategies adding one field must agree on what it means."""
  out = dict(ADDED_FIELDS)
  for name in nas.STRATEGIES:
    for k, v in nas.STRATEGIES[name].added_fields.items():
      if out.setdefault(f'nas.{k}', v) != v:
        raise ValueError(f'strategy {name!r} adds config.nas.{k} = {v!r}, another strategy '
                         f'{out[f"nas.{k}"]!r}: one value must mean the old behaviour')
  return out


class IncompatibleCheckpoint(ValueError):
  pass


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def config_differences(old: dict, new: dict):
  a, b = _flatten(old), _flatten(new)

  may, added = may_differ(), added_fields()

  def differs(k):
    if k in may:
      return False
    if k not in a and k in added:
      return b.get(k) != added[k]
    return a.get(k) != b.get(k)

  return sorted(k for k in set(a) | set(b) if differs(k))


class Checkpointer:

  def __init__(self, workdir, config, every_steps, keep):
    self.dir = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self.every = every_steps
    self._check_config(workdir, config)
    # A save cut short by SIGKILL leaves a temporary directory that is never the latest
    # step; it is removed when the next run opens the manager.
    opts = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                        enable_async_checkpointing=True,
                                        cleanup_tmp_directories=True)
    self.manager = ocp.CheckpointManager(self.dir, options=opts)
    self._load_clock()

  def _check_config(self, workdir, config):
    path = os.path.join(workdir, 'config.json')
    new = json.loads(config.to_json_best_effort())
    has_ckpt = os.path.isdir(self.dir) and any(
        n.isdigit() for n in os.listdir(self.dir))
    if has_ckpt and os.path.exists(path):
      with open(path) as f:
        old = json.load(f)
      diff = config_differences(old, new)
      if diff:
        shown = ', '.join(f'{k}: {_flatten(old).get(k)!r} -> {_flatten(new).get(k)!r}'
                          for k in diff[:8])
        raise IncompatibleCheckpoint(
            f'{workdir} holds checkpoints of a run with a different config ({shown}). '
            'Use a new --workdir, or delete its checkpoints/ to start over.')
    if jax.process_index() == 0:
      os.makedirs(workdir, exist_ok=True)
      with open(path + '.tmp', 'w') as f:  # other processes may be reading it
        f.write(json.dumps(new, indent=2, sort_keys=True))
      os.replace(path + '.tmp', path)

  def latest_step(self):
    return self.manager.latest_step()

  # Training time spent up to each saved step, so a time budget spans restarts: a resumed
  # run continues the clock of the checkpoint it restores instead of starting a new one.
  def _load_clock(self):
    self._clock_path = os.path.join(self.dir, 'train_time.json')
    try:
      with open(self._clock_path) as f:
        self._elapsed = json.load(f)
    except (OSError, ValueError):
      self._elapsed = {}

  def elapsed_at(self, step) -> float:
    """Training seconds (of config.time_budget_clock) spent before `step` was saved."""
    return float(self._elapsed.get(str(step), 0.0))

  def _record_elapsed(self, step, elapsed_s):
    self._elapsed[str(step)] = float(elapsed_s)
    if jax.process_index() == 0:
      tmp = self._clock_path + '.tmp'
      with open(tmp, 'w') as f:
        json.dump(self._elapsed, f)
      os.replace(tmp, self._clock_path)

  def restore(self, state):
    """Returns (state, restored?) — the latest checkpoint laid out like `state`."""
    step = self.manager.latest_step()
    if step is None:
      return state, False
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
    try:
      restored = self.manager.restore(step, args=ocp.args.StandardRestore(abstract))
    except (ValueError, KeyError, TypeError) as e:
      raise IncompatibleCheckpoint(
          f'checkpoint {self.dir}/{step} does not match this run\'s state ({e}). Use a new '
          '--workdir, or delete the checkpoints to start over.') from e
    return restored, True

  def should_save(self, step):
    return self.every > 0 and step % self.every == 0

  def save(self, state, step, force=False, elapsed_s=None):
    self.manager.save(step, args=ocp.args.StandardSave(state), force=force)
    if elapsed_s is not None:
      self._record_elapsed(step, elapsed_s)

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()
