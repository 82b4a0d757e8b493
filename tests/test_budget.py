"""A time budget fixes the schedule's horizon (closed form, exact resume with it), the
search cap ends a search at its fraction of the run, and the random control's genotypes
are deterministic per seed, inside the space and inside the budget."""

import json
import math
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dha_jax.comparison import experiments
from dha_jax.io import metrics_io
from dha_jax.nas import darts, darts_space
from dha_jax.training import budget, loop, train
from tests import test_dha


class _FakeClock:
  """elapsed() returns what the test sets."""

  def __init__(self):
    self.t = 0.0

  def elapsed(self):
    return self.t


def _pilot_config(budget_s=100.0, pilot_steps=5):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.time_budget_s, c.time_budget_pilot_steps = budget_s, pilot_steps
  return c


def test_pilot_horizon_closed_form():
  """Compile on the first step (10 s), then 0.5 s a step: with 100 s, at step 1 + 5 the
  remaining 87.5 s afford 175 more steps, unless the first epoch is not over yet."""
  clock = _FakeClock()
  pilot = budget.Pilot(_pilot_config(), clock, steps_per_epoch=4, max_fraction=0.15)
  clock.t = 10.0
  assert pilot.after_step(1) is None  # the step that compiled: timing starts here
  for s in range(2, 6):
    clock.t += 0.5
    assert pilot.after_step(s) is None, s  # fewer than 5 steps timed
  clock.t += 0.5
  assert pilot.after_step(6) == 6 + math.floor((100.0 - 12.5) / 0.5)
  # A long first epoch: the pilot waits for its end, or for 15% of the budget.
  clock = _FakeClock()
  pilot = budget.Pilot(_pilot_config(), clock, steps_per_epoch=100, max_fraction=0.15)
  pilot.after_step(1)
  for s in range(2, 11):
    clock.t += 1.0
    assert pilot.after_step(s) is None, s   # 9 s < 15 s
  for s in range(11, 20):
    clock.t += 1.0
    h = pilot.after_step(s)
    if clock.t >= 15.0:
      assert h == s + math.floor((100.0 - clock.t) / 1.0)
      break
    assert h is None
  assert h is not None and s == 16


def test_no_budget_keeps_the_epoch_horizon():
  c = _pilot_config(budget_s=0.0)
  assert budget.initial_horizon(c, 80) == 80 and not budget.sets_horizon(c)
  c.time_budget_s = 5.0
  assert budget.initial_horizon(c, 80) == budget.UNSET
  c.time_budget_sets_horizon = False
  assert budget.initial_horizon(c, 80) == 80


HORIZON, PILOT_END = 24, 5


class _FixedPilot(budget.Pilot):
  """A pilot whose estimate is HORIZON at step PILOT_END (timing is not reproducible;
  the loop's handling of what it returns is)."""

  def after_step(self, step):
    return HORIZON if step >= PILOT_END else None


class _StopAfter:
  """A preemption that is requested after `steps` steps (the loop reads it once a step)."""
  steps = None

  def __init__(self):
    self.reads = 0

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return None

  @property
  def requested(self):
    self.reads += 1
    return self.steps is not None and self.reads > self.steps


def _budget_run(workdir, monkeypatch, stop_after=None):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.time_budget_s = 1e6  # never reached: the horizon ends the run
  c.checkpoint_every_steps, c.log_every_steps, c.eval_every_epochs = 1000, 1, 0
  c.recalibration_batches = 1
  monkeypatch.setattr(budget, 'Pilot', _FixedPilot)
  stopper = type('Stop', (_StopAfter,), {'steps': stop_after})
  monkeypatch.setattr(loop, 'Preemption', stopper)
  return c, train.train_and_evaluate(c, workdir)


def _rows(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f]


def test_budget_horizon_sets_the_schedule_and_resumes_exactly(tmp_path, monkeypatch):
  c, ref = _budget_run(str(tmp_path / 'ref'), monkeypatch)
  assert ref['steps'] == ref['horizon'] == HORIZON
  rows = _rows(str(tmp_path / 'ref'))
  assert [r['horizon'] for r in rows if r.get('event') == 'horizon'] == [HORIZON]
  lr = {r['step']: r['lr'] for r in rows if 'lr' in r}
  # step s trains with lr(s - 1): the epoch count's cosine (2 epochs) before the pilot
  # ended, the horizon's after it
  total = c.num_epochs * (1288 // c.batch_size)
  cosine = lambda s, h: 0.5 * (1 + math.cos(math.pi * s / h))
  np.testing.assert_allclose(lr[3], c.lr * cosine(2, total), rtol=1e-5)
  np.testing.assert_allclose(lr[HORIZON], c.lr * cosine(HORIZON - 1, HORIZON), rtol=1e-4)
  # Interrupted after the pilot, resumed with the true pilot: the saved horizon is kept.
  workdir = str(tmp_path / 'resumed')
  _, first = _budget_run(workdir, monkeypatch, stop_after=10)
  assert first == {'preempted': True, 'step': 11}
  monkeypatch.setattr(loop, 'Preemption', _StopAfter)
  monkeypatch.setattr(budget, 'Pilot', None)  # must not be used: the horizon is fixed
  resumed = train.train_and_evaluate(c, workdir)
  assert resumed['steps'] == HORIZON and resumed['test/loss'] == ref['test/loss']
  loss = lambda w: {r['step']: r['train/loss'] for r in _rows(w) if 'train/loss' in r}
  assert loss(workdir) == loss(str(tmp_path / 'ref'))
  trees = []
  for w in (str(tmp_path / 'ref'), workdir):
    mgr = ocp.CheckpointManager(os.path.join(w, 'checkpoints'))
    trees.append(mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore()))
    mgr.close()
  assert trees[0]['horizon'] == trees[1]['horizon'] == HORIZON
  jax.tree_util.tree_map(np.testing.assert_array_equal, trees[0], trees[1])


class _FakeProcessClock:
  """An injected 'process' clock: every read advances it by 10 ms, so a run's time (and
  the real pilot's horizon from it) does not depend on the machine's load."""

  def __init__(self):
    self.t = 0.0

  def __call__(self):
    self.t += 0.01
    return self.t


def test_real_pilot_sets_the_horizon_and_the_search_cap_follows_it(tmp_path, monkeypatch):
  """A DSNAS run given a time budget on an injected clock: the real budget.Pilot fixes the
  horizon, the run's cosine ends there, and the search is capped at
  ceil(max_search_fraction x horizon) (search_end with search_capped). (A cap that falls
  before the pilot has timed its 20 steps ends the search when the horizon is known.)"""
  c = test_dha.dha_config('nas/dsnas')
  c.num_steps, c.nas.search_epochs, c.nas.fix_threshold = 10**6, 0, 2.0  # nothing else fixes
  c.nas.max_search_fraction = 0.7
  c.time_budget_s, c.time_budget_clock = 1.0, 'process'
  c.checkpoint_every_steps, c.recalibration_batches, c.log_every_steps = 1000, 1, 1
  monkeypatch.setitem(budget.TrainClock.CLOCKS, 'process', _FakeProcessClock())
  result = train.train_and_evaluate(c, str(tmp_path))
  rows = _rows(str(tmp_path))
  (event,) = [r for r in rows if r.get('event') == 'horizon']
  horizon = event['horizon']
  assert 20 < horizon < 10**6 and result['horizon'] == horizon
  assert event['step'] < result['search_end_step'] == math.ceil(0.7 * horizon)
  assert horizon - 2 <= result['steps'] <= horizon  # the budget ends with the schedule
  ends = [r for r in rows if r.get('event') == 'search_end']
  assert len(ends) == 1 and ends[0]['search_capped'] is True
  arch = result['architecture']
  assert all(arch['fixed'])
  # fixed at the argmax of alpha at the cap, which then stops moving
  assert arch['genotype'] == list(np.argmax(arch['probabilities'], -1))
  # after the pilot, step s trained with lr(s - 1) of the cosine ending at the horizon
  lr = {r['step']: r['lr'] for r in rows if 'lr' in r}
  last = max(s for s in lr if s > event['step'])
  np.testing.assert_allclose(
      lr[last], c.lr * 0.5 * (1 + math.cos(math.pi * (last - 1) / horizon)), rtol=1e-4)


def test_random_cell_genotype_is_seeded_in_space_and_in_budget():
  space = darts_space.DARTS
  draws = [darts.random_genotype(space, np.random.default_rng([s, 5])) for s in (0, 0, 1)]
  assert draws[0] == draws[1] and draws[0] != draws[2]
  for g in draws:
    for cell in ('normal', 'reduce'):
      edges = g.edges(cell)  # raises unless every pair is in the DARTS space
      for i, node in enumerate(edges):
        inputs = [col // darts_space.NUM_OPS for col in node]
        assert len(set(inputs)) == 2 and max(inputs) < darts_space.num_inputs(i)
  # uniform: over many draws every op and every input of node 3 appears
  gen = np.random.default_rng(0)
  cols = np.array([darts.random_genotype(space, gen).edges('normal')[3] for _ in range(400)])
  assert set(np.unique(cols % darts_space.NUM_OPS)) == set(range(darts_space.NUM_OPS))
  assert set(np.unique(cols // darts_space.NUM_OPS)) == set(range(5))


def _random_strategy(variant_seed, budget_m=0.0):
  c = test_dha.dha_config('random/ista')
  c.seed = variant_seed
  c.nas.budget_mparams = budget_m
  return c


def test_random_variant_trains_the_seeds_genotype_within_the_budget():
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  dummy = jnp.zeros((1, 8, 8, 1))
  genos, sizes = [], []
  for seed in (0, 0, 1):
    s = nas.create(_random_strategy(seed), 10, (8, 8, 1))
    s.init(jax.random.PRNGKey(0), dummy)
    genos.append(s.genotype)
    sizes.append(s.num_child_params(s.genotype))
  assert genos[0] == genos[1] and genos[0] != genos[2]
  # a budget below the first draw's size forces redraws, all within it
  budget_m = (min(sizes) + 1) / 1e6
  s = nas.create(_random_strategy(0, budget_m), 10, (8, 8, 1))
  s.init(jax.random.PRNGKey(0), dummy)
  assert s.num_child_params(s.genotype) <= budget_m * 1e6
  with pytest.raises(ValueError, match='budget_mparams'):
    nas.create(_random_strategy(0, 1e-6), 10, (8, 8, 1)).init(jax.random.PRNGKey(0), dummy)
  # the choice space: the same seed, the same child, inside the FLOPs budget
  c = test_dha.dha_config('random/dsnas')
  assert c.nas.random_genotype and c.nas.strategy == 'dsnas'
  children = []
  for _ in range(2):
    strat = nas.create(c, 10, (8, 8, 1))
    strat.init(jax.random.PRNGKey(0), dummy)
    children.append(strat.genotype)
    assert not bool(strat.search.searching({}))
  assert children[0] == children[1]
  c.nas.budget = float(min(strat.costs.of(list(children[0]))[0], 1e12)) - 1
  strat = nas.create(c, 10, (8, 8, 1))
  strat.init(jax.random.PRNGKey(0), dummy)
  assert strat.costs.of(list(strat.genotype))[0] <= c.nas.budget


def test_variants_switch_the_components():
  from configs import fashion_mnist  # pylint: disable=g-import-not-at-top
  got = {v: fashion_mnist.get_config(v) for v in experiments.VARIANTS}
  assert got['da'].policy.name == 'learned' and not got['da'].hpo.enabled
  assert got['hpo'].policy.name == 'none' and got['hpo'].hpo.enabled
  assert got['trivialaugment'].policy.name == 'trivialaugment'
  assert got['da'].policy.objective == 'train' and got['da_val'].policy.objective == 'val'
  assert got['da_val'].policy.optimizer.name == 'adam'  # the dataset's policy_val settings
  assert got['lr_grid'] == got['fixed']  # compare.py runs it at three rates
  assert got['random'].nas.strategy == 'darts_fixed' and got['random'].nas.genotype == 'random'
  for v in ('none', 'fixed', 'lr_grid', 'randaugment', 'trivialaugment', 'da', 'da_val', 'hpo',
            'da_hpo'):
    assert got[v].nas.strategy == 'none', v
  # 'none': no augmentation at all; the others keep the dataset's standard one
  assert (got['none'].preprocess.kind, got['none'].policy.name) == ('none', 'none')
  assert not got['none'].hpo.enabled and got['none'].lr == got['fixed'].lr
  assert got['fixed'].preprocess.kind == got['da'].preprocess.kind == 'crop_flip'
  for v in ('hpo', 'da_hpo', 'dha'):
    h = got[v].hpo
    assert h.lr_mode == 'multiplier' and tuple(h.lr_multiplier_bounds) == (0.25, 4.0)
  # random is the nas variant's space: the same cells and channels
  for k in ('channels', 'layers'):
    assert got['random'].nas[k] == got['nas'].nas[k]


def test_process_clock_stops_a_run(tmp_path):
  """time_budget_clock='process': the run stops when this process has spent the budget in
  CPU seconds of training, long before its 10^6 steps, and result.json says so."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.num_steps, c.time_budget_s, c.time_budget_clock = 10**6, 3.0, 'process'
  c.eval_every_epochs, c.checkpoint_every_steps = 0, 10**6
  c.time_budget_sets_horizon = False  # the clock, not a pilot's horizon, ends the run
  result = train.train_and_evaluate(c, str(tmp_path))
  assert 0 < result['steps'] < 10**6
  # stops at the first check past it: checks follow every step, and the first step holds
  # the compile (CPU seconds that grow under load: 8.2 s seen with 3 jobs on 2 cores)
  assert 3.0 <= result['train_time_s'] < max(3.0, result['compile_s']) + 5.0
  events = [r for r in metrics_io.read_rows(str(tmp_path)) if r.get('event') == 'time_budget']
  assert len(events) == 1 and events[0]['train_time_s'] >= 3.0
