"""The augmentation policy tau: sampling, the L_DA gradient and its sign, the pipeline."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats

from dha_jax import parallel, steps, train
from dha_jax.augment import learned, ops


def test_pair_sampling_matches_p():
  tau = jax.random.normal(jax.random.PRNGKey(0), (14, 14)) * 1.5
  keys = jax.random.split(jax.random.PRNGKey(1), 200_000)
  pairs = jax.jit(lambda t, k: learned.sample_pairs(t, None, k, 1.0, False))(tau, keys)
  counts = np.bincount(np.asarray(pairs), minlength=196)
  p = np.asarray(learned.probabilities(tau), np.float64).reshape(-1)
  _, pvalue = stats.chisquare(counts, p / p.sum() * len(keys))
  assert pvalue > 1e-3, pvalue


def test_gumbel_sampling_is_shared_per_step_and_varies_over_steps():
  tau = jnp.zeros((14, 14))
  keys = jax.random.split(jax.random.PRNGKey(1), 4000)
  a = learned.sample_pairs(tau, jax.random.PRNGKey(5), keys, 2.0, True)
  b = learned.sample_pairs(tau, jax.random.PRNGKey(5), keys, 2.0, True)
  c = learned.sample_pairs(tau, jax.random.PRNGKey(6), keys, 2.0, True)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_tau_gradient_equals_closed_form():
  rng = np.random.default_rng(0)
  tau = jnp.asarray(rng.normal(size=(14, 14)), jnp.float32)
  pairs = jnp.asarray(rng.integers(0, 196, 64))
  losses = jnp.asarray(rng.uniform(0, 3, 64), jnp.float32)
  g = jax.grad(learned.policy_loss)(tau, pairs, losses).reshape(-1)
  p = np.asarray(jax.nn.softmax(tau.reshape(-1)), np.float64)
  expected = np.zeros(196)
  for u, l in zip(np.asarray(pairs), np.asarray(losses)):
    e = np.zeros(196)
    e[u] = 1
    expected -= l * p[u] * (e - p)
  expected /= 64
  np.testing.assert_allclose(np.asarray(g), expected, atol=1e-7, rtol=1e-4)


def test_training_tau_favours_the_destructive_pair():
  """Toy: the 'loss' of a sample is how much its augmentation destroyed the image
  (squared error to the original). Minimising L_DA must raise the probability of the
  most destructive pairs and lower the harmless Identity+Identity."""
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  img = load_sample_images().images[0][::16, ::16] / 255.0
  images = jnp.asarray(np.repeat(img[None], 256, axis=0), jnp.float32)
  tx = optax.sgd(5.0)
  tau = jnp.zeros((14, 14))
  opt = tx.init(tau)

  @jax.jit
  def update(tau, opt, key):
    keys = jax.random.split(key, images.shape[0])
    pairs = learned.sample_pairs(tau, None, keys, 1.0, False)
    mags = jax.vmap(lambda k: learned.signed_magnitudes(k, (2,), 1.0))(keys)
    out = ops.apply_pair(images, pairs // 14, pairs % 14, mags[:, 0], mags[:, 1])
    losses = jnp.mean((out - images) ** 2, axis=(1, 2, 3))
    g = jax.grad(learned.policy_loss)(tau, pairs, losses)
    upd, opt = tx.update(g, opt, tau)
    return optax.apply_updates(tau, upd), opt, losses, pairs

  sums, counts = np.zeros(196), np.zeros(196)
  for i in range(60):
    tau, opt, losses, pairs = update(tau, opt, jax.random.PRNGKey(i))
    np.add.at(sums, np.asarray(pairs), np.asarray(losses))
    np.add.at(counts, np.asarray(pairs), 1)
  p = np.asarray(learned.probabilities(tau)).reshape(-1)
  mean_loss = sums / np.maximum(counts, 1)
  identity = 13 * 14 + 13
  assert p[identity] < 1 / 196
  worst = np.argsort(-mean_loss)[:10]
  best = np.argsort(mean_loss)[:10]
  assert p[worst].mean() > 1 / 196 > p[best].mean()
  assert np.corrcoef(mean_loss[counts > 0], p[counts > 0])[0, 1] > 0.5


def test_learned_policy_in_the_step_compiles_once_and_moves_tau(test_config):
  test_config.policy.name = 'learned'
  test_config.policy.optimizer.lr = 5.0
  mesh = parallel.make_mesh()
  ds, comps, state, _, _ = train.setup(test_config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  it = ds.train_iterator('train', test_config.batch_size, 0)
  tau0 = np.asarray(state.params['policy']['tau'])
  for _ in range(3):
    state, _ = train_step(state, parallel.shard_batch(next(it), mesh))
  assert train_step._cache_size() == 1  # pylint: disable=protected-access
  tau = np.asarray(state.params['policy']['tau'])
  chex.assert_shape(tau, (14, 14))
  assert np.abs(tau - tau0).max() > 1e-4
  m = comps.policy.metrics(state.params['policy'])
  assert 0 < m['policy/entropy'] <= np.log(196) + 1e-6
  assert '+' in m['policy/top1_pair']
  summary = comps.policy.summary(state.params['policy'])['policy']
  np.testing.assert_allclose(np.sum(summary['probabilities']), 1.0, atol=1e-4)


def test_fixed_policies_run(test_config):
  for name in ('randaugment', 'trivialaugment'):
    test_config.policy.name = name
    mesh = parallel.make_mesh(jax.devices()[:1])
    _, comps, state, _, _ = train.setup(test_config, mesh)
    x = jax.random.uniform(jax.random.PRNGKey(0), (8, 8, 8, 1))
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    out, aux = jax.jit(lambda x, k: comps.policy.augment({}, x, k[0], k, False))(x, keys)
    chex.assert_shape(out, x.shape)
    assert aux == {} and float(jnp.abs(out - x).max()) > 0
