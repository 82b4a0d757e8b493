"""The augmentation policy tau: sampling, the L_DA gradient of both estimators and its
sign, the baseline, the pipeline."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from scipy import stats

from dha_jax.augment import learned, ops
from dha_jax.core import parallel
from dha_jax.training import steps, train


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


def _closed_form_gradient(tau, pairs, losses, estimator):
  """The docs/method.md section 2 gradient of L_DA, in float64.

  reference:  -(1/B) sum_k l_k p_{u_k} (e_{u_k} - p)
  importance: -(1/B) sum_k (l_k - lbar) (e_{u_k} - p), lbar = mean_k l_k
  """
  tau = np.asarray(tau, np.float64).reshape(-1)
  p = np.exp(tau - tau.max())
  p /= p.sum()
  losses = np.asarray(losses, np.float64)
  lbar = losses.mean()
  g = np.zeros(196)
  for u, l in zip(np.asarray(pairs), losses):
    e = np.zeros(196)
    e[u] = 1
    g -= (l * p[u] if estimator == 'reference' else l - lbar) * (e - p)
  return g / len(losses)


def _random_problem(seed, batch=64):
  rng = np.random.default_rng(seed)
  tau = jnp.asarray(rng.normal(size=(14, 14)) * 1.5, jnp.float32)
  pairs = jnp.asarray(rng.integers(0, 196, batch), jnp.int32)  # with repeats
  losses = jnp.asarray(rng.uniform(0, 3, batch), jnp.float32)
  return tau, pairs, losses


# float32 autodiff against the float64 formula: 1e-6 of the gradient's largest entry.
GRAD_RTOL = 1e-6


@pytest.mark.parametrize('estimator', learned.ESTIMATORS)
@pytest.mark.parametrize('seed', [0, 1])
def test_tau_gradient_equals_closed_form(estimator, seed):
  tau, pairs, losses = _random_problem(seed)
  g = jax.grad(learned.policy_loss)(tau, pairs, losses, estimator).reshape(-1)
  expected = _closed_form_gradient(tau, pairs, losses, estimator)
  scale = np.abs(expected).max()
  assert scale > 0
  np.testing.assert_allclose(np.asarray(g, np.float64), expected, rtol=GRAD_RTOL,
                             atol=GRAD_RTOL * scale)


def test_entropy_bonus_gradient_closed_form():
  """L_DA - lambda H: the gradient adds lambda p (log p + H) (closed form). Under sampling
  from p the expected importance gradient is p_e (l_e - E_p l), so the two cancel where
  p ~ exp(l / lambda): a bounded tilt instead of a collapse on the hardest pair."""
  cfg = ml_collections.ConfigDict({'policy': {'estimator': 'importance',
                                              'entropy_weight': 0.5}})
  pol = learned.LearnedPolicy(cfg)
  tau, pairs, losses = _random_problem(3)
  g = jax.grad(lambda t: pol.loss({'tau': t}, {'pairs': pairs}, losses))(tau).reshape(-1)
  p = np.asarray(jax.nn.softmax(np.asarray(tau, np.float64).reshape(-1)))
  h = -np.sum(p * np.log(p))
  expected = _closed_form_gradient(tau, pairs, losses, 'importance') + 0.5 * p * (np.log(p) + h)
  np.testing.assert_allclose(np.asarray(g, np.float64), expected, rtol=GRAD_RTOL,
                             atol=GRAD_RTOL * np.abs(expected).max())


@pytest.mark.parametrize('estimator', learned.ESTIMATORS)
def test_minimising_l_da_raises_the_probability_of_high_loss_pairs(estimator):
  """One small SGD step on L_DA: the highest-loss pair gains probability and gains on the
  lowest-loss one; with the baseline, below-mean pairs lose probability. The four pairs
  share one logit in an otherwise random tau: the literal form weights a sample by
  l_k p_{u_k}, so only at equal p does its ranking follow the loss alone."""
  tau, _, _ = _random_problem(2)
  pairs = jnp.array([3, 50, 101, 177], jnp.int32)
  tau = tau.reshape(-1).at[pairs].set(0.3).reshape(14, 14)
  losses = jnp.array([2.5, 0.2, 1.0, 1.6], jnp.float32)  # mean 1.325
  g = jax.grad(learned.policy_loss)(tau, pairs, losses, estimator)
  p0 = np.asarray(learned.probabilities(tau), np.float64).reshape(-1)
  p1 = np.asarray(learned.probabilities(tau - 1e-2 * g), np.float64).reshape(-1)
  assert p1[3] > p0[3]
  assert p1[3] / p1[50] > p0[3] / p0[50]
  if estimator == 'importance':
    assert p1[50] < p0[50] and p1[101] < p0[101] and p1[177] > p0[177]


def test_importance_gradient_is_zero_for_equal_losses():
  """The baseline: when every sample has the same loss there is nothing to prefer."""
  tau, pairs, _ = _random_problem(3)
  # 1.5: the float32 batch mean is exact, so the gradient is exactly 0.
  losses = jnp.full(pairs.shape, 1.5, jnp.float32)
  g = jax.grad(learned.policy_loss)(tau, pairs, losses, 'importance')
  np.testing.assert_array_equal(np.asarray(g), 0.0)
  # 1.7: the mean is off by at most an ulp of 1.7, and |g_j| <= 2 max_k |l_k - lbar|.
  losses = jnp.full(pairs.shape, 1.7, jnp.float32)
  g = jax.grad(learned.policy_loss)(tau, pairs, losses, 'importance')
  assert np.abs(np.asarray(g)).max() <= 2 * np.spacing(np.float32(1.7))
  # The literal form is not centred: it still moves tau.
  g_ref = jax.grad(learned.policy_loss)(tau, pairs, losses, 'reference')
  assert np.abs(np.asarray(g_ref)).max() > 1e-4


def test_importance_loss_is_finite_for_vanishing_probabilities():
  tau = jnp.zeros((14, 14)).at[0, 0].set(-200.0)  # p of pair 0 underflows float32
  pairs, losses = jnp.array([0, 1]), jnp.array([2.0, 1.0])
  g = jax.grad(learned.policy_loss)(tau, pairs, losses, 'importance')
  expected = _closed_form_gradient(tau, pairs, losses, 'importance')
  np.testing.assert_allclose(np.asarray(g, np.float64).reshape(-1), expected, atol=1e-7)


def test_importance_baseline_is_the_global_batch_mean(test_config):
  """In the step (shard_map over 4 devices, gradients pmean'd) lbar is the mean over the
  GLOBAL batch: the averaged gradient is the closed form of the whole batch, though the
  devices' losses have different means."""
  test_config.policy.name = 'learned'
  policy = learned.LearnedPolicy(test_config)
  mesh = parallel.make_mesh()
  n_dev = mesh.devices.size
  assert n_dev > 1
  tau, pairs, losses = _random_problem(4, batch=16 * n_dev)
  losses = losses + jnp.repeat(jnp.arange(n_dev, dtype=jnp.float32), 16)  # per-device offsets

  def grad_fn(tau, pairs, losses):
    g = jax.grad(lambda t: policy.loss({'tau': t}, {'pairs': pairs}, losses))(tau)
    return parallel.pmean(g)

  R, S = parallel.REPLICATED, parallel.SHARDED
  g = parallel.data_parallel(grad_fn, mesh, (R, S, S), R)(tau, pairs, losses)
  expected = _closed_form_gradient(tau, pairs, losses, 'importance')
  np.testing.assert_allclose(np.asarray(g, np.float64).reshape(-1), expected,
                             rtol=GRAD_RTOL, atol=GRAD_RTOL * np.abs(expected).max())
  # Outside a mapped axis the same loss takes the (then global) batch mean itself.
  g_host = jax.grad(lambda t: policy.loss({'tau': t}, {'pairs': pairs}, losses))(tau)
  np.testing.assert_allclose(np.asarray(g_host, np.float64).reshape(-1), expected,
                             rtol=GRAD_RTOL, atol=GRAD_RTOL * np.abs(expected).max())


def test_estimator_config(test_config):
  test_config.policy.name = 'learned'
  assert learned.LearnedPolicy(test_config).estimator == 'importance'  # the default
  old = test_config.policy.to_dict()
  del old['estimator']  # configs written before the field existed
  assert learned.LearnedPolicy(
      ml_collections.ConfigDict({'policy': old})).estimator == 'importance'
  test_config.policy.estimator = 'reference'
  assert learned.LearnedPolicy(test_config).estimator == 'reference'
  test_config.policy.estimator = 'score'
  with pytest.raises(ValueError, match=r"config\.policy\.estimator='score'.*importance.*"
                     r"reference"):
    learned.LearnedPolicy(test_config)
  with pytest.raises(ValueError, match='estimator'):
    learned.policy_loss(jnp.zeros((14, 14)), jnp.zeros(2, jnp.int32), jnp.ones(2), 'score')


# The importance estimator's gradient is ~196x the literal one's at uniform p.
@pytest.mark.parametrize('estimator,lr', [('reference', 5.0), ('importance', 5.0 / 196)],
                         ids=['reference', 'importance'])
def test_training_tau_favours_the_destructive_pair(estimator, lr):
  """Toy: the 'loss' of a sample is how much its augmentation destroyed the image
  (squared error to the original). Minimising L_DA must raise the probability of the
  most destructive pairs and lower the harmless Identity+Identity."""
  from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
  img = load_sample_images().images[0][::16, ::16] / 255.0
  images = jnp.asarray(np.repeat(img[None], 256, axis=0), jnp.float32)
  tx = optax.sgd(lr)
  tau = jnp.zeros((14, 14))
  opt = tx.init(tau)

  @jax.jit
  def update(tau, opt, key):
    keys = jax.random.split(key, images.shape[0])
    pairs = learned.sample_pairs(tau, None, keys, 1.0, False)
    mags = jax.vmap(lambda k: learned.signed_magnitudes(k, (2,), 1.0))(keys)
    out = ops.apply_pair(images, pairs // 14, pairs % 14, mags[:, 0], mags[:, 1])
    losses = jnp.mean((out - images) ** 2, axis=(1, 2, 3))
    g = jax.grad(learned.policy_loss)(tau, pairs, losses, estimator)
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


def test_one_gumbel_draw_per_step_is_shared_by_every_sample_and_device(test_config):
  """Inside the compiled 4-device step: at a temperature of 1e-6 the step's perturbed
  distribution puts all its mass on one pair, so if every sample on every device shares
  the step's Gumbel draw, all 32 samples take that pair and the reference estimator's
  gradient, -(1/B) sum_k l_k p_u (e_u - p), moves tau along (e_u - p) alone: with plain
  SGD the update over p is the same for the 195 other pairs. Per-device or per-sample
  draws would give several pairs (several entries off that line)."""
  test_config.policy.name = 'learned'
  test_config.policy.estimator = 'reference'
  test_config.policy.temperature = 1e-6
  test_config.policy.entropy_weight = 0.0
  test_config.policy.optimizer.update(lr=1.0, momentum=0.0, nesterov=False, weight_decay=0.0)
  mesh = parallel.make_mesh(jax.devices()[:4])  # plain SGD: each step's update is its own
  ds, comps, state, _, _ = train.setup(test_config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  it = ds.train_iterator('train', test_config.batch_size, 0)
  chosen = []
  for _ in range(3):
    before = np.asarray(jax.device_get(state.params['policy']['tau'])).reshape(-1)
    state, _ = train_step(state, parallel.shard_batch(next(it), mesh))
    delta = np.asarray(jax.device_get(state.params['policy']['tau'])).reshape(-1) - before
    ratio = delta / np.asarray(jax.nn.softmax(before))  # -lr * A off u, positive at u
    u = int(np.argmax(ratio))
    rest = np.delete(ratio, u)
    np.testing.assert_allclose(rest, rest.mean(), rtol=1e-3)
    assert ratio[u] > 0 > rest.mean()
    chosen.append(u)
  assert len(set(chosen)) > 1, chosen  # a new draw each step


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


def test_magnitude_bound_switches_from_search_to_tune(test_config, monkeypatch):
  """A sample's two magnitudes are m = +-U M (U ~ U[0, 1), a fair random sign) with M =
  magnitude_search while `searching` (the strategy's traced flag) and magnitude_tune
  after, in one compiled program. Captured where they enter apply_pair, over 4096 draws
  each: bounded by their M and reaching within 1% of it (all below: P = 0.99^4096 ~ 1e-18),
  |m| / M uniform (KS p > 1e-3), half of the signs positive (4 standard errors); and with
  the same keys the tune magnitudes are the search ones times M_tune / M_search (1e-6)."""
  test_config.policy.name = 'learned'
  test_config.policy.update(magnitude_search=0.3, magnitude_tune=0.8)
  policy = learned.LearnedPolicy(test_config)
  monkeypatch.setattr(ops, 'apply_pair',
                      lambda images, op_a, op_b, m_a, m_b: jnp.stack([m_a, m_b], -1))
  n = 2048
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  images = jnp.zeros((n, 1, 1, 1))
  draw = jax.jit(lambda searching: policy.augment(
      policy.init(None), images, jax.random.PRNGKey(1), keys, searching)[0])
  search, tune = (np.asarray(draw(jnp.asarray(flag)), np.float64) for flag in (True, False))
  assert draw._cache_size() == 1  # pylint: disable=protected-access
  assert search.shape == tune.shape == (n, 2)
  for m, bound in ((search, 0.3), (tune, 0.8)):
    assert 0.99 * bound < np.abs(m).max() <= bound, (np.abs(m).max(), bound)
    assert stats.kstest(np.abs(m).reshape(-1) / bound, 'uniform').pvalue > 1e-3
    assert abs(np.mean(m > 0) - 0.5) <= 4 * np.sqrt(0.25 / m.size)
  np.testing.assert_allclose(tune, search * (0.8 / 0.3), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('field, value', [('magnitude_search', 1.5), ('magnitude_tune', -0.1)])
def test_a_magnitude_bound_outside_0_1_is_refused_naming_the_field(field, value):
  """The ops clip m to [0, 1], so a bound above 1 would silently be 1: refused instead."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.policy.name = 'learned'
  c.policy[field] = value
  with pytest.raises(ValueError, match=rf'config.policy.{field}={value!r} is outside \[0, 1\]'):
    learned.LearnedPolicy(c)
