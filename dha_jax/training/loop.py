"""The named parts of the training loop (train.train_and_evaluate runs them in order).

Each part owns one concern and the state it needs across steps: the schedule's horizon
and the search cap (Horizon), the search phase with its host-side decisions and
recompiles (SearchSchedule), the metrics rows and evaluations (StepLog), the non-finite
checks (NonFiniteGuard), SIGTERM (Preemption) and the checkpoint cadence (save_if_due).
They are host code: none of them is traced, so the compiled step does not depend on them.
"""

import math
import os
import signal
import time

import jax
import numpy as np

from dha_jax.core import distributed
from dha_jax.training import budget


class NonFiniteLoss(FloatingPointError):
  pass


class Preemption:
  """SIGTERM (preemption, `kill`, Slurm time limit) -> save at the next step and stop."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. a notebook worker): no handler
      self._old = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def search_cap(strategy, end):
  """The step at which the strategy's max_search_fraction of the run is over (None: no
  cap, or the run's length is not known yet)."""
  fraction = float(strategy.search.max_search_fraction or 0.0)
  if not fraction or math.isinf(end):
    return None
  return max(1, int(math.ceil(fraction * end)))


class Horizon:
  """The step the schedule ends at (`end`) and the search cap (`cap`): from the config's
  length, or under a time budget from budget.Pilot after the first steps (`end` is
  infinite until then); a resumed run keeps the horizon its state holds."""

  def __init__(self, config, strategy, clock, steps_per_epoch, total):
    self.config, self.strategy, self.clock = config, strategy, clock
    self.steps_per_epoch, self.total = steps_per_epoch, total
    self.end, self.cap, self.pilot = total, None, None

  def start(self, state):
    """state with the horizon of this run (num_epochs / num_steps may change on resume)."""
    if not budget.sets_horizon(self.config) and int(
        jax.device_get(state.horizon)) != self.total:
      state = budget.set_horizon(state, self.total)
    self.end = int(jax.device_get(state.horizon))
    if self.end == budget.UNSET:  # a time budget: the pilot sets it; until then, the budget
      self.pilot = budget.Pilot(self.config, self.clock, self.steps_per_epoch)
      self.end = math.inf
    self.cap = search_cap(self.strategy, self.end)
    return state

  def shown(self):
    """The step count a progress bar shows (the config's until the pilot has timed)."""
    return self.end if math.isfinite(self.end) else self.total

  def after_step(self, state, step, writer):
    """state with the horizon once the pilot has timed enough steps (logged)."""
    if self.pilot is None or (h := self.pilot.after_step(step)) is None:
      return state
    state, self.end, self.pilot = budget.set_horizon(state, h), h, None
    self.cap = search_cap(self.strategy, self.end)
    writer.write(step, {'event': 'horizon', 'horizon': h,
                        'train_time_s': self.clock.elapsed()})
    print(f'time budget: the schedule ends at step {h} (timed over the first steps); '
          f'the search, if any, is capped at step {self.cap}', flush=True)
    return state


def searching(strategy, state) -> bool:
  return bool(jax.device_get(strategy.search.searching(state.nas_state)))


class SearchSchedule:
  """The search phase: at each epoch's end the strategy's host-side decisions
  (end_of_epoch), at the cap stop_search; after either the steps for the new structure
  (`train_step`, `eval_step`) and the architecture's pictures; the search_end event once
  the strategy stops searching. `draw(state, step)` draws the pictures."""

  def __init__(self, strategy, compiled, state, steps_per_epoch, writer, draw):
    self.strategy, self.compiled, self.writer, self.draw = strategy, compiled, writer, draw
    self.steps_per_epoch = steps_per_epoch
    self.searching = searching(strategy, state)
    self.train_step, self.eval_step = compiled(state)
    start = int(jax.device_get(state.step))
    print(f'phase: {self.phase} from step {start}', flush=True)

  @property
  def phase(self):
    return 'search' if self.searching else 'tune'

  def after_step(self, state, step, horizon):
    epoch_done = step % self.steps_per_epoch == 0
    capped = self.searching and horizon.cap is not None and step >= horizon.cap
    if not (epoch_done or capped) or step >= horizon.end:
      return state  # the trained structure is the one exported
    if epoch_done:
      state = self.strategy.search.end_of_epoch(state, step // self.steps_per_epoch)
    if capped:  # max_search_fraction: fix whatever still searches
      state = self.strategy.search.stop_search(state)
    self.train_step, self.eval_step = self.compiled(state)
    self.draw(state, step)
    if self.searching and not searching(self.strategy, state):
      self.searching = False
      epoch = step / self.steps_per_epoch
      self.writer.write(step, {'event': 'search_end', 'epoch': epoch,
                               'search_capped': capped})
      print(f'phase: search ended at step {step} (epoch {epoch:.2f}); the derived network '
            'trains on (tau and eta continue)', flush=True)
    return state


class StepLog:
  """A metrics row every config.log_every_steps, at each epoch's end and at the last step:
  the step's metrics, speed, the training clock, the phase, the strategy's and the
  policy's scalars, and every config.eval_every_epochs epochs the validation metrics
  (`evaluate(eval_step, state)`); the progress line with it."""

  def __init__(self, config, comps, writer, progress, clock, steps_per_epoch, start,
               evaluate):
    self.config, self.comps, self.writer, self.progress = config, comps, writer, progress
    self.clock, self.steps_per_epoch, self.evaluate = clock, steps_per_epoch, evaluate
    self.t_log, self.s_log = time.time(), start

  def after_step(self, step, end, metrics, state, search):
    epoch_done = step % self.steps_per_epoch == 0
    if not (step % self.config.log_every_steps == 0 or step == end or epoch_done):
      return
    metrics = jax.device_get(metrics)
    now = time.time()
    sps = (step - self.s_log) / max(now - self.t_log, 1e-9)
    self.t_log, self.s_log = now, step
    scalars = {'epoch': step / self.steps_per_epoch, **metrics, 'steps_per_sec': sps,
               'train_time_s': self.clock.elapsed(), 'phase': search.phase}
    arch, nas_state, policy = distributed.host_copy(
        (state.params['arch'], state.nas_state, state.params['policy']))
    scalars.update(self.comps.strategy.metrics(arch, nas_state))
    scalars.update(self.comps.policy.metrics(policy))
    every = self.config.eval_every_epochs
    if epoch_done and every and (step // self.steps_per_epoch) % every == 0:
      scalars.update(self.evaluate(search.eval_step, state))
    self.writer.write(step, scalars)
    self.progress(step, scalars['epoch'], scalars, sps)


def all_finite(tree):
  return all(bool(np.all(np.isfinite(x))) for x in jax.tree_util.tree_leaves(
      jax.device_get(tree)) if np.issubdtype(np.asarray(x).dtype, np.floating))


class NonFiniteGuard:
  """Stops the run when the training loss or the parameters become non-finite, keeping
  the last good checkpoint (in `ckpt_dir`). The loss is read one step late, so that the
  check never waits for the step in flight."""

  def __init__(self, ckpt_dir):
    self.ckpt_dir, self.last = ckpt_dir, None

  def _finite_loss(self):
    return self.last is None or np.isfinite(float(self.last['train/loss']))

  def after_step(self, metrics, step):
    """Checks the previous step's loss (`step`: the steps taken before this one)."""
    if not self._finite_loss():
      raise NonFiniteLoss(
          f'the training loss became {float(self.last["train/loss"])} at step {step}; '
          f'stopped. The last good checkpoint is kept in {self.ckpt_dir}. Lower config.lr '
          'or raise config.optimizer.grad_clip_norm, then run again in a new workdir.')
    self.last = metrics

  def before_save(self, params, step):
    if not all_finite(params):
      raise NonFiniteLoss(f'parameters became non-finite by step {step}; stopped. The '
                          f'last good checkpoint is kept in {self.ckpt_dir}.')

  def at_end(self, step):
    if not self._finite_loss():
      raise NonFiniteLoss(f'the training loss became non-finite at step {step}; stopped. '
                          f'The last good checkpoint is kept in {self.ckpt_dir}.')


def save_if_due(ckpt, guard, state, step, stop, clock):
  """Saves at the checkpoint cadence, and at once when the run stops (SIGTERM)."""
  if ckpt.should_save(step) or stop:
    guard.before_save(state.params, step)
    ckpt.save(state, step, force=stop, elapsed_s=clock.elapsed())


def budget_spent(clock, config, writer, step) -> bool:
  """True (logged) once the time budget is spent: the run finishes at this step."""
  if not clock.exhausted():
    return False
  print(f'time budget of {config.time_budget_s:g} s ({config.time_budget_clock}) '
        f'reached at step {step}; finishing the run here', flush=True)
  writer.write(step, {'event': 'time_budget', 'train_time_s': clock.elapsed()})
  return True


def save_pictures(workdir, writer, step, figures):
  """<workdir>/<name>.png and a TensorBoard image for each {name: Figure}."""
  from dha_jax.io import plots  # pylint: disable=g-import-not-at-top
  for name, fig in figures.items():
    writer.write_images(step, {name: plots.save_figure(
        fig, os.path.join(workdir, name + '.png'))[None]})
