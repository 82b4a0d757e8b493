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

import jax
import numpy as np
import pytest

from dha_jax.hpo import hypergrad
from dha_jax.training import train

import resume_check
from test_dha import ista_dha_config

STEPS_PER_EPOCH = 10  # dataset.train_subset = 320 images, batch 32
INTERRUPT_AT = 15     # inside the second epoch


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


def _dha_ista():
  """test_dha.py's full DHA on ISTA, with ISTA's default traced step (one compile for every
  support; the support-specialised step compiles again per support: 302 s for this test
  on 2 loaded cores), 3 short epochs: the support changes at the end-of-epoch recoveries
  after the interruption."""
  c = ista_dha_config()
  c.nas.execution = 'traced'
  c.dataset.train_subset = STEPS_PER_EPOCH * c.batch_size
  c.log_every_steps, c.checkpoint_every_steps, c.eval_every_epochs = 1, 1000, 1
  c.nas.max_search_fraction = 0.0  # still searching when interrupted and resumed
  return c


CASES = {
    'tau+eta_train': lambda: _tau(_eta(_base(), 'train')),
    'eta_val': lambda: _eta(_base(), 'val'),
    'eta_lagged': lambda: _eta(_base(), 'lagged'),
    # tau + ISTA + eta, resumed across the end-of-epoch recoveries (support changes) and
    # freezing of epoch 2
    # (DHA on DSNAS, across the end of its search: test_dha.py, with its full run)
    'dha_ista': _dha_ista,
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_resume_is_exact_with_every_component(case, tmp_path, monkeypatch):
  config = CASES[case]()
  ref_dir, cut_dir = str(tmp_path / 'uninterrupted'), str(tmp_path / 'interrupted')
  devices = jax.devices()[:1]
  train.train_and_evaluate(config, ref_dir, devices)
  resume_check.run_interrupted(config, cut_dir, monkeypatch, INTERRUPT_AT, devices)
  ref_rows, state = resume_check.assert_same_run(cut_dir, ref_dir,
                                                 config.num_epochs * STEPS_PER_EPOCH)
  # the components really were learning (the comparison is not between constants)
  if config.hpo.enabled:
    assert len({r['hpo/lr'] for r in ref_rows if 'hpo/lr' in r}) > 1
  if config.policy.name == 'learned':
    assert float(np.abs(np.asarray(state['params']['policy']['tau'])).max()) > 1e-4
  supports = {r['step']: r['nas/support'] for r in ref_rows if 'nas/support' in r}
  if supports:  # ISTA: the resumed part changed the support (a new specialised step)
    assert set(v for k, v in supports.items() if k > INTERRUPT_AT) - {supports[INTERRUPT_AT]}
