"""Each part of the training loop (dha_jax/training/loop.py) on its own, with fakes for what it
calls: the step counts at which it acts are checked against the rules in its docstring.
(The parts together, on real runs: test_train, test_budget, test_resume.)"""

import math
import types

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dha_jax.training import budget, loop


@flax.struct.dataclass
class _State:
  step: jax.Array
  horizon: jax.Array
  params: dict
  nas_state: dict


def _state(horizon=0, searching=True, params=None):
  return _State(jnp.int32(0), jnp.int32(horizon), params or {'arch': {}, 'policy': {}},
                {'searching': jnp.asarray(searching)})


class _Writer:
  def __init__(self):
    self.rows = []

  def write(self, step, scalars):
    self.rows.append((step, dict(scalars)))

  def events(self, name):
    return [(s, r) for s, r in self.rows if r.get('event') == name]


def _capped(fraction):
  """A strategy whose search part stops at `fraction` of the run (Horizon reads it)."""
  return types.SimpleNamespace(search=types.SimpleNamespace(max_search_fraction=fraction))


class _Clock:
  def __init__(self, spent=False):
    self.spent = spent

  def elapsed(self):
    return 12.5

  def exhausted(self):
    return self.spent


def _config(**kw):
  c = ml_collections.ConfigDict({'time_budget_s': 0.0, 'time_budget_sets_horizon': True,
                                 'time_budget_pilot_steps': 20, 'time_budget_clock': 'wall',
                                 'log_every_steps': 3, 'eval_every_epochs': 2})
  c.update(kw)
  return c


def test_horizon_from_the_config_and_the_search_cap():
  """Without a time budget the horizon is the config's length (also when a resumed
  state holds another: num_epochs changed), the cap ceil(fraction x horizon), none at 0."""
  h = loop.Horizon(_config(), _capped(0.3), _Clock(), 4, 50)
  state = h.start(_state(horizon=40))
  assert int(state.horizon) == 50 and h.end == 50 and h.cap == 15 and h.shown() == 50
  assert h.after_step(state, 1, _Writer()) is state  # nothing left to time
  h = loop.Horizon(_config(), _capped(0.0), _Clock(), 4, 50)
  h.start(_state(horizon=50))
  assert h.cap is None


def test_horizon_from_the_pilot_under_a_time_budget(monkeypatch):
  """A new run under a time budget: the horizon is infinite (the progress bar shows the
  config's length) until the pilot returns one; then the schedule, the cap and the
  logged 'horizon' event follow it; a resumed run keeps the horizon its state holds."""
  class Pilot:
    def __init__(self, config, clock, steps_per_epoch):
      del config, clock, steps_per_epoch

    def after_step(self, step):
      return 40 if step >= 5 else None

  monkeypatch.setattr(budget, 'Pilot', Pilot)
  config = _config(time_budget_s=60.0)
  h = loop.Horizon(config, _capped(0.3), _Clock(), 4, 50)
  state, writer = h.start(_state(horizon=budget.UNSET)), _Writer()
  assert math.isinf(h.end) and h.cap is None and h.shown() == 50
  for step in range(1, 7):
    state = h.after_step(state, step, writer)
  assert int(state.horizon) == 40 and (h.end, h.cap, h.shown()) == (40, 12, 40)
  assert writer.events('horizon') == [(5, {'event': 'horizon', 'horizon': 40,
                                           'train_time_s': 12.5})]
  resumed = loop.Horizon(config, _capped(0.3), _Clock(), 4, 50)
  resumed.start(_state(horizon=40))
  assert resumed.pilot is None and (resumed.end, resumed.cap) == (40, 12)


class _Strategy:
  """Searches until end_of_epoch(stop_epoch) or stop_search; records the calls."""

  def __init__(self, stop_epoch):
    self.stop_epoch, self.calls = stop_epoch, []

  @property
  def search(self):  # the loop calls the strategy's Search part (nas/base.py)
    return self

  def searching(self, nas_state):
    return nas_state['searching']

  def _stopped(self, state):
    return state.replace(nas_state={'searching': jnp.asarray(False)})

  def end_of_epoch(self, state, epoch):
    self.calls.append(('end_of_epoch', epoch))
    return self._stopped(state) if epoch == self.stop_epoch else state

  def stop_search(self, state):
    self.calls.append(('stop_search',))
    return self._stopped(state)


def _schedule(strategy, state):
  compiles, drawn, writer = [], [], _Writer()

  def compiled(s):
    compiles.append(bool(s.nas_state['searching']))
    return ('train', len(compiles)), ('eval', len(compiles))

  search = loop.SearchSchedule(strategy, compiled, state, 4, writer,
                               lambda s, step: drawn.append(step))
  return search, compiles, drawn, writer


@pytest.mark.parametrize('cap', [None, 6])
def test_search_schedule_acts_at_epoch_ends_and_at_the_cap(cap):
  """4 steps an epoch, the run ends at step 20: the strategy's end_of_epoch at steps 4, 8,
  12, 16 (not at the last step: the trained structure is the exported one), each time
  the steps recompiled and the architecture drawn; search_end once, when searching turns
  False: at epoch 2, or at the cap (step 6, search_capped) after stop_search."""
  strategy = _Strategy(stop_epoch=2)
  state = _state()
  search, compiles, drawn, writer = _schedule(strategy, state)
  assert search.phase == 'search' and search.train_step == ('train', 1)
  horizon = types.SimpleNamespace(end=20, cap=cap)
  phases = []
  for step in range(1, 21):
    state = search.after_step(state, step, horizon)
    phases.append(search.phase)
  acted = [4, 6, 8, 12, 16] if cap else [4, 8, 12, 16]
  assert drawn == acted and len(compiles) == 1 + len(acted)
  assert search.train_step == ('train', len(compiles))
  ends = writer.events('search_end')
  if cap:
    assert strategy.calls[:3] == [('end_of_epoch', 1), ('stop_search',), ('end_of_epoch', 2)]
    assert ends == [(6, {'event': 'search_end', 'epoch': 1.5, 'search_capped': True})]
  else:
    assert ('stop_search',) not in strategy.calls
    assert ends == [(8, {'event': 'search_end', 'epoch': 2.0, 'search_capped': False})]
  assert [c for c in strategy.calls if c[0] == 'end_of_epoch'] == [
      ('end_of_epoch', e) for e in (1, 2, 3, 4)]
  first_tune = ends[0][0]
  assert phases == ['search'] * (first_tune - 1) + ['tune'] * (21 - first_tune)


def test_a_search_that_never_started_logs_no_search_end():
  search, compiles, drawn, writer = _schedule(_Strategy(stop_epoch=1), _state(searching=False))
  state = _state(searching=False)
  for step in range(1, 9):
    state = search.after_step(state, step, types.SimpleNamespace(end=8, cap=2))
  assert search.phase == 'tune' and not writer.events('search_end') and drawn == [4]
  assert len(compiles) == 2


def test_step_log_rows_and_evaluations():
  """Rows every 3 steps, at each epoch's end (4 steps) and at the last step (10); the
  validation every 2 epochs (step 8 only); each row with the step's metrics, the phase,
  the clock and the strategy's and the policy's scalars; the progress line with it."""
  writer, shown, evaluated = _Writer(), [], []
  comps = types.SimpleNamespace(
      strategy=types.SimpleNamespace(metrics=lambda arch, nas_state: {'nas/x': 1.0}),
      policy=types.SimpleNamespace(metrics=lambda policy: {'policy/y': 2.0}))

  def evaluate(eval_step, state):
    evaluated.append(eval_step)
    return {'val/accuracy': 0.5}

  log = loop.StepLog(_config(), comps, writer, lambda *a: shown.append(a[0]), _Clock(), 4, 0,
                     evaluate)
  search = types.SimpleNamespace(phase='search', eval_step='eval')
  for step in range(1, 11):
    log.after_step(step, 10, {'train/loss': jnp.float32(step)}, _state(), search)
  assert [s for s, _ in writer.rows] == shown == [3, 4, 6, 8, 9, 10]
  assert evaluated == ['eval']
  rows = dict(writer.rows)
  assert rows[8]['val/accuracy'] == 0.5 and 'val/accuracy' not in rows[4]
  assert rows[6] == {'epoch': 1.5, 'train/loss': 6.0, 'steps_per_sec': rows[6]['steps_per_sec'],
                     'train_time_s': 12.5, 'phase': 'search', 'nas/x': 1.0, 'policy/y': 2.0}


def test_non_finite_guard_reads_the_loss_one_step_late_and_checks_params_before_a_save():
  guard = loop.NonFiniteGuard('/ckpts')
  guard.after_step({'train/loss': np.float32(1.0)}, 0)
  guard.after_step({'train/loss': np.float32(np.nan)}, 1)  # not read yet
  with pytest.raises(loop.NonFiniteLoss, match=r'became nan at step 2.*kept in /ckpts'):
    guard.after_step({'train/loss': np.float32(1.0)}, 2)
  with pytest.raises(loop.NonFiniteLoss, match='non-finite at step 2'):
    guard.at_end(2)
  ok = loop.NonFiniteGuard('/ckpts')
  ok.at_end(0)  # no step taken
  ok.after_step({'train/loss': np.float32(0.5)}, 0)
  ok.at_end(1)
  with pytest.raises(loop.NonFiniteLoss, match='parameters became non-finite by step 3'):
    ok.before_save({'net': {'w': np.array([1.0, np.inf])}, 'count': np.int32(3)}, 3)
  ok.before_save({'net': {'w': np.ones(2)}}, 3)


def test_saves_at_the_cadence_at_a_stop_and_never_non_finite_parameters():
  saved = []
  ckpt = types.SimpleNamespace(should_save=lambda step: step % 5 == 0,
                               save=lambda state, step, force, elapsed_s: saved.append(
                                   (step, force, elapsed_s)))
  guard, clock = loop.NonFiniteGuard('/c'), _Clock()
  for step in range(1, 8):
    loop.save_if_due(ckpt, guard, _state(), step, step == 7, clock)
  assert saved == [(5, False, 12.5), (7, True, 12.5)]
  bad = _state(params={'arch': {}, 'policy': {}, 'net': np.array([np.nan])})
  with pytest.raises(loop.NonFiniteLoss):
    loop.save_if_due(ckpt, guard, bad, 10, False, clock)
  assert len(saved) == 2


def test_budget_spent_logs_the_event_once_the_clock_runs_out():
  writer = _Writer()
  config = _config(time_budget_s=60.0)
  assert not loop.budget_spent(_Clock(spent=False), config, writer, 3)
  assert loop.budget_spent(_Clock(spent=True), config, writer, 4)
  assert writer.rows == [(4, {'event': 'time_budget', 'train_time_s': 12.5})]
