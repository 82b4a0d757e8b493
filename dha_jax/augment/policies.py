"""Augmentation policies, applied on device after the standard pre-processing.

The contract is dha_jax/augment/base.py's Policy. A new policy is a class plus an entry
in POLICIES; the train step does not change.
"""

import jax
import jax.numpy as jnp

from dha_jax.augment import base, learned, ops


class NoPolicy(base.Policy):
  """Only the standard pre-processing (the baseline)."""

  def augment(self, tau, images, step_key, sample_keys, searching):
    return images, {}


class RandAugment(NoPolicy):
  """RandAugment: N ops drawn uniformly per sample, fixed magnitude M (random sign).

  AutoContrast, Equalize and Identity ignore M (full strength, METHOD.md section 2)."""

  def __init__(self, config):
    self.n, self.m = config.policy.num_ops, config.policy.magnitude

  def augment(self, tau, images, step_key, sample_keys, searching):
    for i in range(self.n):
      keys = jax.vmap(lambda k, i=i: jax.random.fold_in(k, 10 + i))(sample_keys)
      op = jax.vmap(lambda k: jax.random.randint(k, (), 0, len(ops.OP_NAMES)))(keys)
      sign = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 1)))(keys)
      images = ops.apply(images, op, jnp.where(sign, self.m, -self.m))
    return images, {}


class TrivialAugment(NoPolicy):
  """TrivialAugment: one uniformly drawn op per sample, magnitude ~ U[-1, 1].

  AutoContrast, Equalize and Identity ignore it (full strength, METHOD.md section 2)."""

  def augment(self, tau, images, step_key, sample_keys, searching):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, 20))(sample_keys)
    op = jax.vmap(lambda k: jax.random.randint(k, (), 0, len(ops.OP_NAMES)))(keys)
    m = jax.vmap(lambda k: jax.random.uniform(jax.random.fold_in(k, 1), (), minval=-1.0,
                                              maxval=1.0))(keys)
    return ops.apply(images, op, m), {}


POLICIES = {
    'none': NoPolicy,
    'randaugment': RandAugment,
    'trivialaugment': TrivialAugment,
    'learned': learned.LearnedPolicy,
}


def create(config):
  name = config.policy.name
  if name not in POLICIES:
    raise ValueError(f'config.policy.name={name!r} is unknown; choose one of {sorted(POLICIES)}')
  return POLICIES[name](config)
