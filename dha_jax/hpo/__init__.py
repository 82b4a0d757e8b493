"""Hyper-parameters eta. With config.hpo.enabled=False they stay at config.lr and
config.weight_decay (times the base schedule); dha_jax/hpo/hypergrad.py learns them.
The handler contract is dha_jax/hpo/base.py's Handler.
"""

import jax.numpy as jnp

from dha_jax import optim
from dha_jax.hpo import base


class FixedHparams(base.Handler):
  """eta held constant: the baseline and the "no HPO" ablations."""

  def __init__(self, config):
    self.config = config

  def init(self):
    return {'lr': jnp.asarray(self.config.lr, jnp.float32),
            'weight_decay': jnp.asarray(self.config.weight_decay, jnp.float32)}

  def values(self, hparams):
    return {'learning_rate': hparams['lr'], 'weight_decay': hparams['weight_decay']}

  def update_theta_and_eta(self, tx, opt_state, params, grads, hparams, hp_opt_state,
                           eta_fn, hpo_loss):
    del hpo_loss
    eta = eta_fn(hparams)
    new_params, new_opt = optim.update_theta(tx, opt_state, params, grads, eta)
    metrics = {'lr': eta['learning_rate'], 'weight_decay': eta['weight_decay']}
    return base.Update(new_params, new_opt, hparams, hp_opt_state, metrics)


def create(config):
  if not config.hpo.get('enabled', False):
    return FixedHparams(config)
  from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
  return hypergrad.LearnedHparams(config)
