"""Hyper-parameters eta. With config.hpo.enabled=False they stay at config.lr and
config.weight_decay (times the base schedule); with it, config.hpo.handler's handler
moves them (dha_jax/hpo/hypergrad.py's 'hypergrad' learns them by hypergradient). The
handler contract is dha_jax/hpo/base.py's Handler; a handler registers itself with
`@base.HANDLERS.register(name)`, and every module of this package is imported here.
"""

import jax.numpy as jnp

from dha_jax.core import optim, registry
from dha_jax.hpo import base

HANDLERS = base.HANDLERS


@base.HANDLERS.register('fixed')
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
  """config.hpo.handler's handler when config.hpo.enabled, else 'fixed'."""
  learned = config.hpo.get('handler', 'hypergrad')
  return HANDLERS.get(learned if config.hpo.get('enabled', False) else 'fixed')(config)


registry.import_modules(__name__, __path__, skip=('plot',))
