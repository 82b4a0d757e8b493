"""Exact resume with every component on: a run interrupted inside its second epoch (a real
SIGTERM, raised in this process right after a step's metrics are written) and run again
ends bit-identical to the uninterrupted run: every logged metric, every leaf of the final
TrainState and result.json (timings aside).

Bit-identical is possible because everything a step depends on is in the checkpoint or a
function of it: the rng is a TrainState leaf and the step's keys are folded from it and the
step; the data order and the per-sample keys are functions of (seed, step, global index);
the host-side decisions (ISTA's recovery and freezing, DSNAS's fixing, the search cap) read
only the restored state. The compiled steps are the same programs (the suite's persistent
XLA cache serves the second compile), here on one device: that 1 and 4 devices compute the
same step is test_step.py's and test_dha.py's.

The plain path (no component on, a subprocess killed by SIGTERM) is test_train.py's.
"""

import json
import os
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dha_jax import experiments, metrics_io, train
from dha_jax.hpo import hypergrad

STEPS_PER_EPOCH = 10  # dataset.train_subset = 320 images, batch 32
INTERRUPT_AT = 15     # inside the second epoch
# What differs between two runs of the same computation: clocks and the number of compiles.
TIMING = ('steps_per_sec', 'train_time_s', 'wall_time_s', 'compile_s', 'num_compiles')
SEARCH = {'dsnas': {'stem_channels': 8, 'stage_repeats': (1, 2), 'stage_channels': (16, 32),
                    'last_channels': 32, 'warmup_epochs': 1, 'search_epochs': 2,
                    'max_search_fraction': 0.0,
                    'optimizer': {'name': 'adam', 'lr': 0.05, 'b1': 0.5, 'b2': 0.999}},
          'ista': {'channels': 4, 'layers': 3, 'auxiliary_weight': 0.0,
                   'freeze_from_epoch': 1, 'max_search_fraction': 0.0}}


def _base(num_epochs=2):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.dataset.train_subset = STEPS_PER_EPOCH * c.batch_size
  c.num_epochs, c.log_every_steps, c.checkpoint_every_steps = num_epochs, 1, 1000
  c.eval_every_epochs, c.recalibration_batches = 1, 2
  return c


def _eta(c, objective):
  c.hpo = hypergrad.default_config()
  c.hpo.update(enabled=True, objective=objective, lr_mode='multiplier')
  c.hpo.optimizer.lr = 0.05
  return c


def _tau(c):
  c.policy.name = 'learned'
  c.policy.optimizer.lr = 0.5
  return c


def _dha(strategy):
  c = experiments.apply(_base(num_epochs=3), f'dha/{strategy}', SEARCH,
                        default_strategy='dsnas',
                        hpo={'objective': 'lagged', 'optimizer': {'name': 'adam', 'lr': 0.05}})
  c.policy.optimizer.lr = 0.5
  return c


CASES = {
    'tau+eta_train': lambda: _tau(_eta(_base(), 'train')),
    'eta_val': lambda: _eta(_base(), 'val'),
    'eta_lagged': lambda: _eta(_base(), 'lagged'),
    # tau + DSNAS + eta: interrupted before the end of epoch 2, where every layer is fixed
    'dha_dsnas': lambda: _dha('dsnas'),
    # tau + ISTA + eta: resumed across the end-of-epoch recoveries and freezing of epoch 2
    'dha_ista': lambda: _dha('ista'),
}


def _interrupt_at(monkeypatch, step):
  """SIGTERM to this process once `step`'s training metrics are written: the loop's own
  handler asks for a save and a stop at that step, as a preemption would."""
  write = metrics_io.MetricsWriter.write

  def write_then_signal(self, s, scalars):
    write(self, s, scalars)
    if s == step and 'train/loss' in scalars:
      signal.raise_signal(signal.SIGTERM)

  monkeypatch.setattr(metrics_io.MetricsWriter, 'write', write_then_signal)


def _rows(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING}
          for r in metrics_io.read_rows(workdir)]


def _final_state(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = mgr.latest_step()
  tree = mgr.restore(step, args=ocp.args.StandardRestore())
  mgr.close()
  return step, tree


def _result(workdir):
  with open(os.path.join(workdir, 'result.json')) as f:
    return {k: v for k, v in json.load(f).items() if k not in TIMING}


@pytest.mark.parametrize('case', sorted(CASES))
def test_resume_is_exact_with_every_component(case, tmp_path, monkeypatch):
  config = CASES[case]()
  ref_dir, cut_dir = str(tmp_path / 'uninterrupted'), str(tmp_path / 'interrupted')
  devices = jax.devices()[:1]
  train.train_and_evaluate(config, ref_dir, devices)
  with monkeypatch.context() as m:
    _interrupt_at(m, INTERRUPT_AT)
    stopped = train.train_and_evaluate(config, cut_dir, devices)
  assert stopped == {'preempted': True, 'step': INTERRUPT_AT}
  assert not os.path.exists(os.path.join(cut_dir, 'result.json'))
  train.train_and_evaluate(config, cut_dir, devices)

  rows, ref_rows = _rows(cut_dir), _rows(ref_dir)
  assert len(rows) == len(ref_rows) > 2 * STEPS_PER_EPOCH
  for got, want in zip(rows, ref_rows):
    assert got == want, (got.get('step'), got.get('event'))
  (step, state), (ref_step, ref_state) = _final_state(cut_dir), _final_state(ref_dir)
  assert step == ref_step == config.num_epochs * STEPS_PER_EPOCH
  assert set(state) >= {'params', 'opt_state', 'hparams', 'batch_stats', 'nas_state',
                        'rng', 'step'}
  leaves, ref_leaves = (jax.tree_util.tree_leaves_with_path(t) for t in (state, ref_state))
  assert [p for p, _ in leaves] == [p for p, _ in ref_leaves]
  for (path, a), (_, b) in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  assert _result(cut_dir) == _result(ref_dir)
  # the components really were learning (the comparison is not between constants)
  if config.hpo.enabled:
    assert len({r['hpo/lr'] for r in ref_rows if 'hpo/lr' in r}) > 1
  if config.policy.name == 'learned':
    assert float(np.abs(np.asarray(state['params']['policy']['tau'])).max()) > 1e-4
