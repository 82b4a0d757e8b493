"""The compiled data-parallel train step: state structure, 1 vs 4 devices, bad batch."""

import itertools

import chex
import jax
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.training import steps, train
from dha_jax.training import state as state_lib

from agreement import assert_agree, run_steps


def test_state_has_every_group(test_config):
  mesh = parallel.make_mesh(jax.devices()[:1])
  _, comps, state, _, _ = train.setup(test_config, mesh)
  assert set(state.params) == {'net', 'arch', 'policy'}
  assert set(state.opt_state) == {'net', 'arch', 'policy', 'hparams'}
  # eta lives inside theta's optimizer state (optax.inject_hyperparams)
  assert hasattr(state.opt_state['net'], 'hyperparams')
  assert set(state.opt_state['net'].hyperparams) == {'learning_rate', 'weight_decay'}
  assert set(state.hparams) == {'lr', 'weight_decay'}
  chex.assert_shape(state.step, ())
  chex.assert_type(state.step, np.int32)
  kernel = state.params['net']['Conv_0']['kernel']
  chex.assert_shape(kernel, (3, 3, 1, 8))
  assert state_lib.num_params(state.params['net']) > 0
  assert comps.eta(0, state.hparams, state.horizon)['learning_rate'] == pytest.approx(
      test_config.lr)


def test_one_and_four_devices_agree(test_config):
  test_config.preprocess.cutout = 3  # exercise per-sample randomness too
  one, four = run_steps(test_config, jax.devices()[:1]), run_steps(test_config, jax.devices())
  assert len(jax.devices()) == 4
  assert_agree(one, four, {'train/loss': {'rtol': 1e-5}, 'train/accuracy': {'atol': 1e-6}},
                ('params', 'batch_stats'))
  s1 = one[0]
  # the step really changed the parameters (the comparison is not between inits)
  _, comps, init, _, _ = train.setup(test_config, parallel.make_mesh(jax.devices()[:1]))
  diff = jax.tree_util.tree_map(lambda a, b: float(np.abs(a - b).max()), s1.params['net'],
                                init.params['net'])
  assert max(jax.tree_util.tree_leaves(diff)) > 1e-3


def test_one_and_four_devices_agree_with_learned_tau_and_eta(test_config):
  """The same property with tau (importance estimator, its baseline pmean'd) and eta
  ('lagged': the tangent of theta's step, contracted with the next gradient) learned in
  the step."""
  from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
  test_config.policy.name = 'learned'
  test_config.policy.optimizer.lr = 0.5
  test_config.hpo = hypergrad.default_config()
  test_config.hpo.update(enabled=True, objective='lagged', lr_mode='multiplier')
  test_config.hpo.optimizer.lr = 0.05
  one, four = run_steps(test_config, jax.devices()[:1]), run_steps(test_config, jax.devices())
  assert_agree(one, four, {'train/loss': {'rtol': 1e-5}, 'hpo/lr_multiplier': {'rtol': 1e-5}},
                ('params', 'hparams'))
  s1, h1, _ = one
  assert float(np.abs(s1.params['policy']['tau']).max()) > 1e-4  # tau moved
  assert h1[-1]['hpo/lr_multiplier'] != 1.0  # eta moved


def test_batch_not_divisible_by_devices_is_clear(test_config):
  test_config.batch_size = 30
  with pytest.raises(ValueError, match=r'config.batch_size=30 is not divisible by the 4'):
    train.setup(test_config, parallel.make_mesh())


def test_sample_keys_do_not_depend_on_device_count():
  key = jax.random.PRNGKey(0)
  mesh1, mesh4 = parallel.make_mesh(jax.devices()[:1]), parallel.make_mesh()
  R, S = parallel.REPLICATED, parallel.SHARDED
  f = lambda m: parallel.data_parallel(
      lambda k, x: steps.sample_keys(k, x.shape[0]), m, (R, S), S)
  x = np.zeros(8, np.float32)
  np.testing.assert_array_equal(np.asarray(f(mesh1)(key, x)), np.asarray(f(mesh4)(key, x)))


def test_prefetch_to_device_yields_the_same_batches_in_order_sharded():
  mesh = parallel.make_mesh(jax.devices())
  host = [{'image': np.full((8, 2, 2, 1), i, np.uint8), 'label': np.arange(8) + i}
          for i in range(5)]
  got = list(itertools.islice(parallel.prefetch_to_device(iter(host), mesh, 2), 3))
  for a, b in zip(got, host):
    for k in b:
      np.testing.assert_array_equal(np.asarray(a[k]), b[k])
      assert a[k].sharding.spec == parallel.SHARDED and len(a[k].addressable_shards) == 4
