"""tau's held-out objective (config.policy.objective='val'): its gradient against finite
differences of L_val after one SGD step, and which way it moves tau in a real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.augment import learned
from dha_jax.training import steps


def _tiny_problem(rng, dtype):
  """A 2-layer tanh net, B augmented samples with their pairs, and a held-out batch."""
  k = jax.random.split(rng, 6)
  normal = lambda key, shape: jax.random.normal(key, shape, dtype)
  net = {'w1': normal(k[0], (5, 7)) * 0.5, 'w2': normal(k[1], (7, 3))}
  x, y = normal(k[2], (12, 5)), jax.random.randint(k[3], (12,), 0, 3)
  xv, yv = normal(k[4], (9, 5)), jax.random.randint(k[5], (9,), 0, 3)

  def losses(p, xs, ys):
    logits = jnp.tanh(xs @ p['w1']) @ p['w2']
    return steps.cross_entropy(logits, ys)

  pairs = jnp.array([0, 1, 2, 3, 1, 1, 0, 2, 3, 3, 0, 1])
  tau = jnp.array([[0.3, -0.2], [0.1, 0.4]], dtype)  # K = 2 ops: 4 pairs
  return net, (x, y), (xv, yv), losses, pairs, tau


def test_heldout_gradient_equals_finite_differences_of_the_val_loss_after_the_step():
  """F(tau) = L_val(theta - lr grad_theta mean_k w_k(tau) l_k(theta)), w_k = p_uk(tau) /
  p_uk(tau0): the step's dependence on tau. The policy loss on heldout_scores has F's
  gradient up to the baseline term (lbar mean_k (e_uk - p), added back here) and the
  first-order error O(lr^2): 1% at lr = 1e-3, in float64."""
  with jax.enable_x64(True):
    net, (x, y), (xv, yv), losses, pairs, tau0 = _tiny_problem(jax.random.PRNGKey(0),
                                                               jnp.float64)
    lr = 1e-3
    val_loss = lambda p: jnp.mean(losses(p, xv, yv))

    @jax.jit
    def after_step(tau):
      logp = jax.nn.log_softmax(tau.reshape(-1))[pairs]
      w = jnp.exp(logp - jax.lax.stop_gradient(jax.nn.log_softmax(tau0.reshape(-1))[pairs]))
      g = jax.grad(lambda p: jnp.mean(w * losses(p, x, y)))(net)
      return val_loss(jax.tree_util.tree_map(lambda a, b: a - lr * b, net, g))

    eps = 1e-5
    fd = np.zeros(tau0.shape)
    for i in np.ndindex(tau0.shape):
      d = jnp.zeros_like(tau0).at[i].set(eps)
      fd[i] = (after_step(tau0 + d) - after_step(tau0 - d)) / (2 * eps)

    scores = steps.heldout_scores(lambda p: losses(p, x, y), net,
                                  jax.grad(val_loss)(net), lr)
    ours = jax.grad(learned.policy_loss)(tau0, pairs, scores)
    p = jax.nn.softmax(tau0.reshape(-1))
    onehot_minus_p = jax.nn.one_hot(pairs, 4) - p
    with_baseline_removed = ours - jnp.mean(scores) * jnp.mean(onehot_minus_p, 0).reshape(2, 2)
    assert np.abs(fd).max() > 1e-7  # the check is not vacuous
    np.testing.assert_allclose(with_baseline_removed, fd, rtol=1e-2, atol=1e-9)


def test_per_group_learning_rates_scale_each_group_of_the_val_gradient():
  """hpo.per_group: lr is one per group (conv >= 3-D, dense 2-D, 1-D); the scores equal
  the sum over groups of lr_g <grad l_k, grad L_val> restricted to group g."""
  net = {'conv': jnp.ones((2, 2, 1, 1)), 'dense': jnp.full((3, 2), 0.5), 'bias': jnp.ones(2)}
  x = jnp.arange(6.0).reshape(2, 3)

  def sample_losses(p):
    return (jnp.sum(p['conv']) * x[:, 0] + x @ p['dense'] @ p['bias'])

  v = jax.tree_util.tree_map(lambda a: jnp.full_like(a, 0.1), net)
  lrs = jnp.array([1.0, 0.1, 0.01])
  got = steps.heldout_scores(sample_losses, net, v, lrs)
  want = 0
  for name, g in (('conv', 0), ('dense', 1), ('bias', 2)):
    only = {k: (v[k] if k == name else jnp.zeros_like(v[k])) for k in v}
    want = want + lrs[g] * jax.jvp(sample_losses, (net,), (only,))[1]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_an_unknown_objective_is_refused_naming_the_field():
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.policy.name, c.policy.objective = 'learned', 'holdout'
  with pytest.raises(ValueError, match=r"config.policy.objective='holdout'"):
    learned.LearnedPolicy(c)


# ---- the rest of augment/learned.py against closed forms and the documented laws --------
# (tools/mutation.py, #33 item 13: each of these kills mutants of augment/learned.py that
# every other fast test let through)
def test_policy_helpers_match_their_closed_forms():
  """Gumbel sampling at T -> 0 (1e-6): every sample of a step takes one pair, the
  step's argmax(log p + g), and over 4,000 steps that pair is distributed as p (the
  Gumbel-max law; chi-square p-value > 1e-3; measured 0.04, where the law of
  argmax(log p - g) gives 1e-38). The magnitudes m ~ U[0, M] with a random sign: |m| <= M,
  mean |m| = M/2 and P(m > 0) = 1/2 (5 sigma). The entropy is -sum p log p (float64,
  1e-5). The loop feeds the held-out batch for objective 'val' only; magnitude bounds
  of 0 and 1 are valid; a config without entropy_weight takes no bonus, and with lambda
  the loss is L_DA - lambda H (1e-6)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from scipy import stats  # pylint: disable=g-import-not-at-top
  tau = jnp.array([[1.0, 0.0], [-1.0, 0.5]])
  p = np.exp(np.asarray(tau, np.float64).reshape(-1))
  p /= p.sum()
  steps_ = jax.random.split(jax.random.PRNGKey(3), 4000)
  keys = jax.random.split(jax.random.PRNGKey(4), 8)
  u = np.asarray(jax.jit(jax.vmap(
      lambda s: learned.sample_pairs(tau, s, keys, 1e-6, True)))(steps_))
  assert np.all(u == u[:, :1])
  counts = np.bincount(u[:, 0], minlength=4)
  assert stats.chisquare(counts, p * len(steps_)).pvalue > 1e-3, counts
  n, M = 20000, 0.3
  m = np.asarray(learned.signed_magnitudes(jax.random.PRNGKey(5), (n,), M))
  assert np.abs(m).max() <= M
  assert abs(np.abs(m).mean() - M / 2) < 5 * M / np.sqrt(12 * n)
  assert abs(np.mean(m > 0) - 0.5) < 5 * 0.5 / np.sqrt(n)
  t = jax.random.normal(jax.random.PRNGKey(6), (3, 3))
  q = np.exp(np.asarray(t, np.float64).reshape(-1))
  q /= q.sum()
  assert float(learned.entropy(t)) == pytest.approx(float(-np.sum(q * np.log(q))), rel=1e-5)
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.policy.name = 'learned'
  for objective, fed in (('val', 'val'), ('train', None)):
    c.policy.objective = objective
    assert learned.LearnedPolicy(c).objective == fed
  c.policy.magnitude_search, c.policy.magnitude_tune = 1.0, 0.0
  learned.LearnedPolicy(c)   # both ends of [0, 1] are valid magnitude bounds
  old = c.policy.to_dict()
  del old['entropy_weight']   # a config written before the field: no bonus
  pol = learned.LearnedPolicy(ml_collections.ConfigDict({'policy': old}))
  pairs, losses = jnp.array([0, 5, 5]), jnp.array([1.0, 2.0, 0.5])
  tau14 = jax.random.normal(jax.random.PRNGKey(7), (14, 14))
  l_da = float(learned.policy_loss(tau14, pairs, losses, pol.estimator))
  assert float(pol.loss({'tau': tau14}, {'pairs': pairs}, losses)) == l_da
  c.policy.entropy_weight = 0.5   # L_DA - lambda H(p)
  bonus = learned.LearnedPolicy(c).loss({'tau': tau14}, {'pairs': pairs}, losses)
  assert float(bonus) == pytest.approx(l_da - 0.5 * float(learned.entropy(tau14)), rel=1e-6)


def test_augment_draws_pairs_and_signed_magnitudes_as_documented(test_config, monkeypatch):
  """tau peaked on one ordered pair of a 3-op subset (first TranslateX, then ShearY, in
  the subset's own order: u = 2 * 3 + 1): every sample hands apply_pair exactly that pair
  (first op first, as ids of the full op list) and its own two magnitudes, drawn apart:
  the two differ in every sample and all four sign pairs occur (64 samples). (The law of
  one magnitude and the switch of its bound: tests/test_policy.py.)"""
  from dha_jax.augment import ops  # pylint: disable=g-import-not-at-top
  c = test_config
  c.policy.name, c.policy.gumbel = 'learned', False
  c.policy.ops = ('Identity', 'ShearY', 'TranslateX')
  c.policy.magnitude_search = c.policy.magnitude_tune = 1.0
  pol = learned.LearnedPolicy(c)
  seen = {}

  def spy(images, op_a, op_b, m_a, m_b):
    seen.update(op_a=np.asarray(op_a), op_b=np.asarray(op_b), m=np.stack([m_a, m_b], -1))
    return images

  monkeypatch.setattr(ops, 'apply_pair', spy)
  tau = {'tau': jnp.zeros((3, 3)).at[2, 1].set(50.0)}
  images = jnp.zeros((64, 1, 1, 1))
  keys = jax.random.split(jax.random.PRNGKey(1), 64)
  _, aux = pol.augment(tau, images, jax.random.PRNGKey(2), keys, jnp.asarray(True))
  np.testing.assert_array_equal(aux['pairs'], 7)
  np.testing.assert_array_equal(seen['op_a'], ops.OP_NAMES.index('TranslateX'))
  np.testing.assert_array_equal(seen['op_b'], ops.OP_NAMES.index('ShearY'))
  m = np.asarray(seen['m'])
  assert m.shape == (64, 2) and np.all(np.abs(m) <= 1.0)
  assert np.all(m[:, 0] != m[:, 1])
  assert set(map(tuple, np.sign(m).astype(int))) == {(1, 1), (1, -1), (-1, 1), (-1, -1)}


def test_metrics_and_summary_report_the_policy():
  """metrics: the entropy of p in nats (closed form, 1e-5; finite when a probability
  underflows to 0) and the five most probable pairs, in order, by name; summary: p as
  a K x K table over the ops, rounded to 6 decimals."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.policy.name, c.policy.ops = 'learned', ('Identity', 'ShearY', 'TranslateX')
  pol = learned.LearnedPolicy(c)
  tau = jnp.asarray([[0.5, -1.0, 2.0], [1.5, 0.0, -200.0], [1.0, 0.2, -0.5]])
  m = pol.metrics({'tau': tau})
  p = np.exp(np.asarray(tau, np.float64).reshape(-1))
  p /= p.sum()
  nz = p[p > 0]
  assert m['policy/entropy'] == pytest.approx(float(-np.sum(nz * np.log(nz))), rel=1e-5)
  order = np.argsort(-p)[:5]
  names = learned.pair_names(pol.op_names)
  assert set(m) == {'policy/entropy'} | {f'policy/top{i}_{k}' for i in range(1, 6)
                                         for k in ('prob', 'pair')}
  for i, j in enumerate(order):
    assert m[f'policy/top{i + 1}_pair'] == names[j]
    assert m[f'policy/top{i + 1}_prob'] == pytest.approx(p[j], rel=1e-5)
  assert m['policy/top1_pair'] == 'Identity+TranslateX'
  s = pol.summary({'tau': tau})['policy']
  assert s['ops'] == ['Identity', 'ShearY', 'TranslateX']
  np.testing.assert_allclose(s['probabilities'], p.reshape(3, 3), atol=1e-6)
  table = np.asarray(s['probabilities'], np.float64)   # float32 values rounded to 6 places
  assert np.abs(table - table.round(6)).max() < 1e-7
