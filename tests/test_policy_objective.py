"""tau's held-out objective (config.policy.objective='val'): its gradient against finite
differences of L_val after one SGD step, and which way it moves tau in a real run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax import steps
from dha_jax.augment import learned


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
