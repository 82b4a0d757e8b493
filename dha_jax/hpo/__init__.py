"""Hyper-parameters eta. With config.hpo.enabled=False they stay at config.lr and
config.weight_decay (times the base schedule); dha_jax/hpo/hypergrad.py learns them.

Interface of an eta handler:
  init() -> hparams pytree (stored in TrainState.hparams, in its optimisation space)
  values(hparams) -> {'learning_rate': ..., 'weight_decay': ...} as the optimizer takes them
  optimizer() -> optax transform for hparams
  init_opt_state(hparams, net) -> TrainState.opt_state['hparams'] (net = theta, for state
      shaped like it, e.g. the stored tangent of the 'lagged' objective)
  apply_update(tx, opt_state, params, grads, hparams, hp_opt_state, eta_fn, hpo_loss)
      -> (new_params, new_opt_state, new_hparams, new_hp_opt_state, metrics)
      The theta update with eta_fn(hparams) injected into the optimizer; a learned handler
      also differentiates hpo_loss(theta_{t+1}) w.r.t. eta through that update. All
      arguments are already averaged over devices; hpo_loss is local to the device (None
      unless objective is 'val' or 'train').
  objective: None | 'val' | 'train' | 'lagged' (decides whether the loop feeds an HPO batch)
  use_schedule: multiply the learning rate by the base schedule
"""

import jax.numpy as jnp
import optax

from dha_jax.state import set_hyperparams


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

  def init_opt_state(self, hparams, net=None):
    del net
    return self.optimizer().init(hparams)

  def apply_update(self, tx, opt_state, params, grads, hparams, hp_opt_state, eta_fn,
                   hpo_loss):
    del hpo_loss
    eta = eta_fn(hparams)
    updates, new_opt = tx.update(grads, set_hyperparams(opt_state, eta), params)
    metrics = {'lr': eta['learning_rate'], 'weight_decay': eta['weight_decay']}
    return optax.apply_updates(params, updates), new_opt, hparams, hp_opt_state, metrics

  use_schedule = True
  objective = None


def create(config):
  if not config.hpo.get('enabled', False):
    return FixedHparams(config)
  from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
  return hypergrad.LearnedHparams(config)
