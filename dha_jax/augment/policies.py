"""Augmentation policies, applied on device after the standard pre-processing.

Interface of a policy:
  init(rng) -> params['policy'] (tau; {} for a fixed policy)
  augment(tau, images, keys, phase) -> (images, aux)   images float [N,H,W,C] in [0,1]
  loss(tau, aux, per_sample_losses) -> scalar L_DA (0 for a fixed policy)
  optimizer() -> optax transform for tau
  metrics(tau) -> dict of scalars for logging
A new policy is a class plus an entry in POLICIES; the train step does not change.
"""

import jax.numpy as jnp
import optax


class NoPolicy:
  """Only the standard pre-processing (the baseline)."""

  def __init__(self, config):
    del config

  def init(self, rng):
    return {}

  def augment(self, tau, images, keys, phase):
    return images, {}

  def loss(self, tau, aux, losses):
    return jnp.zeros(())

  def optimizer(self):
    return optax.identity()

  def metrics(self, tau):
    return {}


POLICIES = {'none': NoPolicy}


def register(name, cls):
  POLICIES[name] = cls


def create(config):
  name = config.policy.name
  if name not in POLICIES:
    raise ValueError(f'config.policy.name={name!r} is unknown; choose one of {sorted(POLICIES)}')
  return POLICIES[name](config)
