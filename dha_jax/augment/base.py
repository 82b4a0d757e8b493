"""The augmentation policy contract: what the train step calls on tau's owner.

`augment` is required; the rest has a fixed policy's behaviour (no tau, no loss), which
RandAugment and TrivialAugment keep and the learned policy overrides.
"""

import abc

import jax.numpy as jnp
import ml_collections
import optax

from dha_jax.augment import ops
from dha_jax.core import registry

# name -> Policy subclass, registered where each is defined (@POLICIES.register('name'))
POLICIES = registry.Registry('config.policy.name')


def default_config():
  """config.policy: every field a policy reads, with its default (configs/default.py)."""
  pol = ml_collections.ConfigDict()
  pol.name = 'none'          # 'none' (standard only) | 'randaugment' | 'trivialaugment' | 'learned'
  pol.num_ops = 2            # randaugment: N ops per image
  pol.magnitude = 0.5        # randaugment: fixed |m| in [0, 1]
  # randaugment / trivialaugment / learned: the ops drawn from, by name, all 14 by default
  # (tau is K x K for K of them; dha_jax/augment/op_subset.py). DiffAutoML Table 3's
  # geometric-only study: --config.policy.ops=ShearX,ShearY,TranslateX,TranslateY
  pol.ops = ops.OP_NAMES      # the 14, in dha_jax/augment/ops.py's order
  pol.estimator = 'importance'  # learned: 'importance' (value-1 factor p/stopgrad(p),
  #                               batch-mean baseline; docs/method.md 2) | 'reference' (the
  #                               literal L_DA = -mean p*loss)
  pol.objective = 'train'    # learned: 'train' (the papers' L_DA: raise pairs of high
  #                            training loss) | 'val' (held-out: first-order
  #                            d L_val(theta_{t+1}) / d tau through each sample's weight in
  #                            the step; a val batch and a JVP a step)
  pol.entropy_weight = 0.0   # learned: lambda of the safeguard L_DA - lambda H(p) (0 = off)
  pol.temperature = 2.0      # learned: q = softmax((log p + gumbel)/T), one draw per step
  pol.gumbel = True          # learned: perturb the sampling distribution (False: sample p)
  pol.magnitude_search = 0.5  # learned: M while alpha is searched, m ~ U[0, M]
  pol.magnitude_tune = 0.5    # learned: M after the search phase
  pol.optimizer = ml_collections.ConfigDict(
      {'name': 'sgd', 'lr': 0.02, 'momentum': 0.9, 'nesterov': True, 'weight_decay': 5e-4})
  return pol


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
