"""Augmentation policies, applied on device after the standard pre-processing.

The contract is dha_jax/augment/base.py's Policy. A new policy is a class with
@base.POLICIES.register('name'), in any module imported before the run starts; the train
step does not change. RandAugment, TrivialAugment and the learned
policy draw from config.policy.ops (dha_jax/augment/op_subset.py; default all 14).
"""

import jax
import jax.numpy as jnp

from dha_jax.augment import base, learned, op_subset, ops  # learned: registers 'learned'


@base.POLICIES.register('none')
class NoPolicy(base.Policy):
  """Only the standard pre-processing (the baseline)."""

  def augment(self, tau, images, step_key, sample_keys, searching):
    return images, {}


def _draw_ops(keys, op_ids):
  """One op per key, uniform over the subset `op_ids` (indices into ops.OP_NAMES)."""
  k = jax.vmap(lambda key: jax.random.randint(key, (), 0, len(op_ids)))(keys)
  return jnp.asarray(op_ids)[k]


@base.POLICIES.register('randaugment')
class RandAugment(NoPolicy):
  """RandAugment: N ops per sample, uniform over config.policy.ops, fixed magnitude M
  (random sign).

  AutoContrast, Equalize and Identity ignore M (full strength, docs/method.md section 2)."""

  def __init__(self, config):
    self.n, self.m = config.policy.num_ops, config.policy.magnitude
    self.op_ids = op_subset.indices(op_subset.names(config))

  def augment(self, tau, images, step_key, sample_keys, searching):
    for i in range(self.n):
      keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, 10 + i))(sample_keys)
      op = _draw_ops(keys, self.op_ids)
      sign = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 1)))(keys)
      images = ops.apply(images, op, jnp.where(sign, self.m, -self.m))
    return images, {}


@base.POLICIES.register('trivialaugment')
class TrivialAugment(NoPolicy):
  """TrivialAugment: one op per sample, uniform over config.policy.ops, m ~ U[-1, 1].

  AutoContrast, Equalize and Identity ignore it (full strength, docs/method.md section 2)."""

  def __init__(self, config):
    self.op_ids = op_subset.indices(op_subset.names(config))

  def augment(self, tau, images, step_key, sample_keys, searching):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 20))(sample_keys)
    op = _draw_ops(keys, self.op_ids)
    m = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1), (), minval=-1.0,
                                              maxval=1.0))(keys)
    return ops.apply(images, op, m), {}


def create(config):
  policy = base.POLICIES.get(config.policy.name)
  op_subset.names(config)  # a wrong op name fails whichever policy is on
  return policy(config)
