"""Hyper-parameters eta. With config.hpo.enabled=False they stay at config.lr and
config.weight_decay (times the base schedule); dha_jax/hpo/hypergrad.py learns them.

Interface of an eta handler:
  init() -> hparams pytree (stored in TrainState.hparams, in its optimisation space)
  values(hparams) -> {'learning_rate': ..., 'weight_decay': ...} as the optimizer takes them
  optimizer() -> optax transform for hparams
"""

import jax.numpy as jnp
import optax


class FixedHparams:
  """eta held constant: the baseline and the "no HPO" ablations."""

  def __init__(self, config):
    self.config = config

  def init(self):
    return {'lr': jnp.asarray(self.config.lr, jnp.float32),
            'weight_decay': jnp.asarray(self.config.weight_decay, jnp.float32)}

  def values(self, hparams):
    return {'learning_rate': hparams['lr'], 'weight_decay': hparams['weight_decay']}

  def optimizer(self):
    return optax.identity()

  use_schedule = True
  objective = None


def create(config):
  if not config.hpo.get('enabled', False):
    return FixedHparams(config)
  from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
  return hypergrad.LearnedHparams(config)
