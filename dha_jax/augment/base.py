"""The augmentation policy contract: what the train step calls on tau's owner.

`augment` is required; the rest has a fixed policy's behaviour (no tau, no loss), which
RandAugment and TrivialAugment keep and the learned policy overrides.
"""

import abc

import jax.numpy as jnp
import optax

from dha_jax.core import registry

# name -> Policy subclass, registered where each is defined (@POLICIES.register('name'))
POLICIES = registry.Registry('config.policy.name')


class Policy(abc.ABC):
  """Base of every policy (registered in POLICIES above)."""

  # None | 'val': 'val' makes the loop feed a held-out batch ('policy_image',
  # 'policy_label') and the step pass `loss` held-out scores instead of training losses.
  objective = None

  def __init__(self, config):
    del config

  @abc.abstractmethod
  def augment(self, tau, images, step_key, sample_keys, searching):
    """-> (images, aux). images float [N,H,W,C] in [0,1]; step_key is the same on every
    device, sample_keys one per sample (from its global index); searching: bool scalar."""

  def init(self, rng):
    """params['policy'] (tau); {} for a fixed policy."""
    del rng
    return {}

  def loss(self, tau, aux, losses):
    """Scalar L_DA from per-sample scores (constants) whose pairs it makes more likely:
    the training losses, or under objective 'val' each sample's first-order decrease of
    the held-out loss (steps.heldout_scores); 0 when fixed."""
    del tau, aux, losses
    return jnp.zeros(())

  def optimizer(self):
    """optax transform for tau."""
    return optax.identity()

  def metrics(self, tau):
    """Scalars (and short strings) logged with the step's metrics."""
    del tau
    return {}

  def summary(self, tau):
    """Entries of result.json (what was learned)."""
    del tau
    return {}
