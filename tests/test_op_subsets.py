"""config.policy.ops: tau sized to the subset, only its ops drawn (learned, RandAugment,
TrivialAugment), the full list exactly today's default, the errors, the command-line
override on the Table 3 configs, and a train step with a subset."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from dha_jax.augment import learned, op_subset, ops, policies
from dha_jax.core import parallel
from dha_jax.io import plots
from dha_jax.training import steps, train

GEOMETRIC = ('ShearX', 'ShearY', 'TranslateX', 'TranslateY')  # DiffAutoML Table 3
POLICY_NAMES = ('learned', 'randaugment', 'trivialaugment')


def _policy(config, name, op_names=None):
  config.policy.name = name
  if op_names is not None:
    config.policy.ops = op_names
  return policies.create(config)


def _batch(n=256, seed=0):
  images = jax.random.uniform(jax.random.PRNGKey(seed), (n, 8, 8, 1))
  keys = jax.random.split(jax.random.PRNGKey(seed + 1), n)
  return images, jax.random.PRNGKey(seed + 2), keys


def _augment(policy, tau, images, step_key, keys):
  return jax.jit(lambda x, s, k: policy.augment(tau, x, s, k, False))(images, step_key, keys)


def test_default_is_every_op_in_order(test_config):
  from configs import default  # pylint: disable=g-import-not-at-top
  assert tuple(default.get_config().policy.ops) == ops.OP_NAMES
  assert op_subset.names(test_config) == ops.OP_NAMES
  old = test_config.policy.to_dict()
  del old['ops']  # configs written before the field: all 14
  import ml_collections  # pylint: disable=g-import-not-at-top
  assert op_subset.names(ml_collections.ConfigDict({'policy': old})) == ops.OP_NAMES


def test_tau_and_its_logging_follow_the_subset(test_config):
  subset = ('TranslateY', 'Identity', 'ShearX')  # tau's axes in the given order
  pol = _policy(test_config, 'learned', subset)
  tau = pol.init(jax.random.PRNGKey(0))
  assert tau['tau'].shape == (3, 3)
  tau = {'tau': tau['tau'].at[1, 2].set(2.0)}  # Identity then ShearX
  m = pol.metrics(tau)
  assert m['policy/top1_pair'] == 'Identity+ShearX'
  assert m['policy/entropy'] <= np.log(9) + 1e-6
  assert all(m[f'policy/top{i}_pair'].split('+')[0] in subset for i in range(1, 6))
  summary = pol.summary(tau)['policy']
  assert summary['ops'] == list(subset) and np.shape(summary['probabilities']) == (3, 3)
  assert learned.pair_names(subset)[5] == 'Identity+ShearX'  # u = 1 * 3 + 2


@pytest.mark.parametrize('name', POLICY_NAMES)
def test_only_the_subsets_ops_are_drawn(test_config, name, monkeypatch):
  """Every drawn op is in the subset and, over 256 samples, every op of it is drawn; the
  learned pair u is (subset[u // K], subset[u % K])."""
  subset = ('Solarize', 'ShearY', 'Rotate')
  ids = op_subset.indices(subset)
  pol = _policy(test_config, name, subset)
  drawn = []

  def record(x, *op_ids):  # stands in for the ops: keeps the op indices they are given
    for op in op_ids:
      jax.debug.callback(lambda o: drawn.append(np.asarray(o)), op, ordered=True)
    return x

  monkeypatch.setattr(ops, 'apply', lambda x, op, m: record(x, op))
  monkeypatch.setattr(ops, 'apply_pair', lambda x, a, b, ma, mb: record(x, a, b))
  _, aux = _augment(pol, pol.init(jax.random.PRNGKey(0)), *_batch())
  jax.effects_barrier()
  assert len(drawn) == {'learned': 2, 'randaugment': test_config.policy.num_ops,
                        'trivialaugment': 1}[name]
  for op in drawn:
    assert set(np.unique(op)) == set(ids.tolist()), (name, np.unique(op))
  if name == 'learned':
    pairs = np.asarray(aux['pairs'])
    assert pairs.max() < len(subset) ** 2
    np.testing.assert_array_equal(drawn[0], ids[pairs // 3])
    np.testing.assert_array_equal(drawn[1], ids[pairs % 3])


# The images today's policies (before config.policy.ops) made from _batch(64)'s keys:
# stored on 2026-12-07 from a copy of their code written out (checked equal to it and to
# the policies, then the copy removed). The full list must give these images: to 1e-6,
# since XLA's optimisation level (the suite compiles at -O0) moves float32 results by
# an ulp, while another op, magnitude or drawn pair moves pixels by far more.
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden',
                      'full_op_list_policies.npz')


@pytest.mark.parametrize('name', POLICY_NAMES)
def test_the_full_list_is_todays_policy(test_config, name):
  pol = _policy(test_config, name)  # the default: all 14
  tau = pol.init(jax.random.PRNGKey(0))
  if name == 'learned':  # a non-uniform tau, so that the pairs' order matters
    tau = {'tau': jax.random.normal(jax.random.PRNGKey(3), (14, 14))}
  images, step_key, keys = _batch(64)
  out, _ = _augment(pol, tau, images, step_key, keys)
  with np.load(GOLDEN) as golden:
    np.testing.assert_allclose(np.asarray(out), golden[name], rtol=0, atol=1e-6)
  assert float(jnp.abs(out - images).max()) > 0
  # the same list as one comma-separated string (the command line's form): the same ops
  test_config.policy.ops = (','.join(ops.OP_NAMES),)
  np.testing.assert_array_equal(_policy(test_config, name).op_ids, np.arange(14))


@pytest.mark.parametrize('name', ('none',) + POLICY_NAMES)
def test_unknown_repeated_or_no_ops_are_one_error(test_config, name):
  with pytest.raises(ValueError, match=r"config\.policy\.ops: 'Shear' is not an op "
                     r"\(did you mean [^)]*ShearX[^)]*\); the valid names are: "
                     + ', '.join(ops.OP_NAMES)) as e:
    _policy(test_config, name, ('Rotate', 'Shear'))
  assert '\n' not in str(e.value)
  with pytest.raises(ValueError, match=r"config\.policy\.ops names 'ShearX' more than once"):
    _policy(test_config, name, ('ShearX,Rotate', 'ShearX'))
  with pytest.raises(ValueError, match=r'config\.policy\.ops is empty'):
    _policy(test_config, name, ())


def _parse(argv):
  """A config file with its --config.* overrides, parsed as dha_jax.main parses them."""
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


@pytest.mark.parametrize('config_arg', ['configs/fashion_mnist.py:dha',
                                        'configs/fashion_mnist.py:da',
                                        'configs/imagenet.py:dha/dsnas'])
@pytest.mark.parametrize('override', ['ShearX,ShearY,TranslateX,TranslateY',
                                      "('ShearX','ShearY','TranslateX','TranslateY')"])
def test_table3_geometric_ops_by_one_override(config_arg, override):
  """DiffAutoML Table 3's geometric-only run of the dataset configs, unchanged: a
  comma-separated list or a tuple literal on the command line."""
  import os  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path, _, variant = config_arg.partition(':')
  argv = ['main', f'--config={os.path.join(root, path)}:{variant}',
          f'--config.policy.ops={override}']
  config = _parse(argv)
  assert config.policy.name == 'learned'
  assert op_subset.names(config) == GEOMETRIC
  assert learned.LearnedPolicy(config).init(None)['tau'].shape == (4, 4)


def test_a_train_step_with_the_geometric_subset(test_config):
  """configs/test.py with the 4 geometric ops: tau is 4 x 4 and moves, its logging and
  picture use their names."""
  test_config.policy.name = 'learned'
  test_config.policy.ops = GEOMETRIC
  test_config.policy.optimizer.lr = 5.0
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(test_config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  it = ds.train_iterator('train', test_config.batch_size, 0)
  tau0 = np.asarray(state.params['policy']['tau'])
  assert tau0.shape == (4, 4)
  for _ in range(2):
    state, metrics = train_step(state, parallel.shard_batch(next(it), mesh))
  assert np.isfinite(float(metrics['train/loss']))
  tau = np.asarray(state.params['policy']['tau'])
  assert tau.shape == (4, 4) and np.abs(tau - tau0).max() > 1e-4
  m = comps.policy.metrics(state.params['policy'])
  assert 0 < m['policy/entropy'] <= np.log(16) + 1e-6
  first, second = m['policy/top1_pair'].split('+')
  assert first in GEOMETRIC and second in GEOMETRIC
  summary = comps.policy.summary(state.params['policy'])['policy']
  fig = plots.policy_figure(summary['probabilities'], summary['ops'])
  assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(GEOMETRIC)
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  plt.close(fig)
