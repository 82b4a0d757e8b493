"""The learned augmentation policy tau (docs/method.md section 2).

tau in R^{KxK}: logits over ORDERED pairs (first op, second op) of the K ops of
config.policy.ops (all 14 by default: 196 pairs), one softmax over all K^2. Each step draws
one Gumbel-perturbed sampling distribution q = softmax((log p + g)/T) (the same on every
device), then every sample its own pair from q and its own two magnitudes m ~ U[0, M]
with a random sign. The policy loss L_DA raises the probability of pairs that give a HIGH
training loss l_k (harder augmentations); config.policy.estimator picks its form (l_k are
constants to it):
  'importance' (default)  L_DA = - mean_k (p_{u_k} / stopgrad(p_{u_k})) * (l_k - lbar)
      p_{u_k}/stopgrad(p_{u_k}) is a value-1 factor (as DSNAS's z) and lbar the mean of l
      over the GLOBAL batch (a baseline). Gradient -(1/B) sum_k (l_k - lbar)(e_{u_k} - p):
      the direction of the literal form, ~K^2x larger at uniform p. Its value is ~0 (not a
      quantity to log). Inside the step's shard_map lbar is pmean'd over 'data'.
  'reference'             L_DA = - mean_k p_{u_k}(tau) * l_k   (the papers' literal form)
      Gradient -(1/B) sum_k l_k p_{u_k} (e_{u_k} - p).

config.policy.objective picks the per-sample scores l_k:
  'train' (default)  the training losses: the papers' L_DA. It can only make augmentation
      harder, never milder, so where augmentation hurts it cannot help.
  'val'   the held-out objective L_val(theta_{t+1}(tau)): theta's step is
      theta - lr mean_k w_k grad l_k with w_k the value-1 factor above, so to first order
      d L_val / d tau = -lr mean_k <grad L_val, grad l_k> (e_{u_k} - p), and the scores are
      l_k = lr <grad L_val, grad l_k> (steps.heldout_scores: one JVP of the per-sample
      losses along grad L_val). Pairs whose samples pull theta the way the held-out loss
      falls gain mass; pairs that hurt it, Identity included, lose it.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.augment import base, op_subset, ops
from dha_jax.core import config_util, optim, parallel

ESTIMATORS = ('importance', 'reference')
OBJECTIVES = ('train', 'val')


def pair_names(op_names=ops.OP_NAMES):
  """'first+second' of each pair index u = first * K + second."""
  return [f'{a}+{b}' for a in op_names for b in op_names]


def probabilities(tau):
  return jax.nn.softmax(tau.reshape(-1)).reshape(tau.shape)


def sample_pairs(tau, step_key, sample_keys, temperature, gumbel):
  """Pair index u_k in [0, K^2) per sample (tau is K x K)."""
  logp = jax.nn.log_softmax(tau.reshape(-1))
  if gumbel:
    logp = jax.nn.log_softmax((logp + jax.random.gumbel(step_key, logp.shape)) / temperature)
  return jax.vmap(lambda k: jax.random.categorical(k, logp))(sample_keys)


def signed_magnitudes(key, shape, max_magnitude):
  """m ~ U[0, M] with a random sign (the sign picks the direction of directed ops)."""
  k_m, k_s = jax.random.split(key)
  m = jax.random.uniform(k_m, shape) * max_magnitude
  return jnp.where(jax.random.bernoulli(k_s, shape=shape), m, -m)


def entropy(tau):
  """H(p(tau)) over the K^2 pairs. config.policy.entropy_weight lambda subtracts lambda H
  from L_DA: the adversarial objective alone collapses p onto the most destructive pair
  (measured: Equalize+Solarize at p = 0.99999 after 300 Fashion-MNIST steps); with the
  bonus its optimum is p ~ exp(mean loss of the pair / lambda), a bounded tilt."""
  logp = jax.nn.log_softmax(tau.reshape(-1))
  return -jnp.sum(jnp.exp(logp) * logp)


def policy_loss(tau, pairs, losses, estimator='importance', axis_name=None):
  """L_DA of the pairs u_k and per-sample losses l_k (constants); see the module docstring.

  axis_name: the mapped axis the batch is sharded over, if any. 'importance' then takes
  lbar over the whole global batch (a pmean of the per-device means, which the equal
  per-device batches make exact), so that the step's pmean of the gradients gives the
  formula above for the global batch B.
  """
  losses = jax.lax.stop_gradient(losses)
  if estimator == 'reference':
    p = jax.nn.softmax(tau.reshape(-1))
    return -jnp.mean(p[pairs] * losses)
  if estimator == 'importance':
    baseline = jnp.mean(losses)
    if axis_name is not None:
      baseline = jax.lax.pmean(baseline, axis_name)
    # p_u / stopgrad(p_u) in log space: value 1, gradient e_u - p, finite for tiny p_u.
    logp = jax.nn.log_softmax(tau.reshape(-1))[pairs]
    weight = jnp.exp(logp - jax.lax.stop_gradient(logp))
    return -jnp.mean(weight * (losses - baseline))
  raise ValueError(f'estimator={estimator!r} is unknown; choose one of {ESTIMATORS}')


def _bound_data_axis():
  """parallel.AXIS while tracing inside the step's shard_map, else None."""
  try:
    jax.lax.axis_size(parallel.AXIS)
  except NameError:  # JAX's error for an unbound axis name
    return None
  return parallel.AXIS


@base.POLICIES.register('learned')
class LearnedPolicy(base.Policy):
  """tau trained with L_DA; see the module docstring."""

  def __init__(self, config):
    self.cfg = config_util.merge(base.default_config(), config.policy, 'config.policy')
    self.estimator = self.cfg.estimator
    if self.estimator not in ESTIMATORS:
      raise ValueError(f'config.policy.estimator={self.estimator!r} is unknown; choose one '
                       f'of {ESTIMATORS}')
    objective = self.cfg.objective
    if objective not in OBJECTIVES:
      raise ValueError(f'config.policy.objective={objective!r} is unknown; choose one of '
                       f'{OBJECTIVES}')
    self.objective = 'val' if objective == 'val' else None  # the batch the loop feeds
    for field in ('magnitude_search', 'magnitude_tune'):  # the ops clip m to [0, 1]
      m = self.cfg[field]
      if not 0.0 <= float(m) <= 1.0:
        raise ValueError(f'config.policy.{field}={m!r} is outside [0, 1]: it is the '
                         "largest magnitude as a fraction of each op's full range (1 = the "
                         'range the papers give)')
    self.op_names = op_subset.names(config)  # tau's axes, in this order
    self.op_ids = op_subset.indices(self.op_names)

  def init(self, rng):
    del rng
    k = len(self.op_names)
    return {'tau': jnp.zeros((k, k), jnp.float32)}  # uniform

  def augment(self, tau, images, step_key, sample_keys, searching):
    pair_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(sample_keys)
    mag_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(sample_keys)
    pairs = sample_pairs(tau['tau'], step_key, pair_keys, self.cfg.temperature,
                         self.cfg.gumbel)
    max_m = jnp.where(searching, self.cfg.magnitude_search, self.cfg.magnitude_tune)
    mags = jax.vmap(lambda k: signed_magnitudes(k, (2,), max_m))(mag_keys)
    k, ids = len(self.op_names), jnp.asarray(self.op_ids)
    out = ops.apply_pair(images, ids[pairs // k], ids[pairs % k], mags[:, 0], mags[:, 1])
    return out, {'pairs': pairs}

  def loss(self, tau, aux, losses):
    l_da = policy_loss(tau['tau'], aux['pairs'], losses, self.estimator,
                       axis_name=_bound_data_axis())
    weight = float(self.cfg.entropy_weight)
    return l_da - weight * entropy(tau['tau']) if weight else l_da

  def optimizer(self):
    return optim.group_optimizer(self.cfg.optimizer)

  def metrics(self, tau):
    p = np.asarray(jax.device_get(probabilities(tau['tau']))).reshape(-1)
    top = np.argsort(-p)[:5]
    names = pair_names(self.op_names)
    out = {'policy/entropy': float(-(p * np.log(p + 1e-30)).sum())}
    for i, j in enumerate(top):
      out[f'policy/top{i + 1}_prob'] = float(p[j])
      out[f'policy/top{i + 1}_pair'] = names[j]
    return out

  def summary(self, tau):
    p = np.asarray(jax.device_get(probabilities(tau['tau'])))
    return {'policy': {'ops': list(self.op_names), 'probabilities': p.round(6).tolist()}}
