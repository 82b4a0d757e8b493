"""The eta handler contract: how the step updates theta with eta, and eta itself.

Both handlers make theta_{t+1} with the same function (optim.update_theta, the run's
optax step with eta injected); a learned handler also differentiates its objective
through that update. `objective` tells the loop which extra batch, if any, to feed.
"""

import abc
from typing import Any, NamedTuple

import optax

from dha_jax.core import registry

# The eta handlers by name: config.hpo.handler's is used when config.hpo.enabled, 'fixed'
# otherwise. `@HANDLERS.register(name)` on the class (dha_jax/hpo/__init__.py imports
# each module of the package).
HANDLERS = registry.Registry('config.hpo.handler')


class Update(NamedTuple):
  """One step's update of theta (params['net'] and its optimizer state) and of eta."""
  params: Any        # theta_{t+1}
  opt_state: Any     # theta's optimizer state after the step
  hparams: Any       # eta_{t+1} (TrainState.hparams)
  hp_opt_state: Any  # eta's optimizer state (TrainState.opt_state['hparams'])
  metrics: dict      # the eta used ('lr', 'weight_decay') and, when learned, hpo/...


class Handler(abc.ABC):
  """Base of the eta handlers registered in HANDLERS."""

  # None | 'val' | 'train' | 'lagged' | 'forward': the batch L_hpo is taken on ('val',
  # 'train', 'forward': the loop feeds an HPO batch, held-out but for 'train'; 'lagged':
  # the next step's training gradient).
  objective = None
  # multiply the learning rate by the base schedule (False: the learned lr replaces it)
  use_schedule = True

  @abc.abstractmethod
  def init(self):
    """The hparams pytree (TrainState.hparams, in its optimisation space)."""

  @abc.abstractmethod
  def values(self, hparams):
    """{'learning_rate': ..., 'weight_decay': ...} as the optimizer takes them."""

  @abc.abstractmethod
  def update_theta_and_eta(self, tx, opt_state, params, grads, hparams, hp_opt_state,
                           eta_fn, hpo_loss) -> Update:
    """theta's optimizer step with eta_fn(hparams) injected, and eta's own step.

    Every argument is already averaged over devices; hpo_loss(theta) is local to the
    device (None unless objective is 'val' or 'train')."""

  def init_opt_state(self, hparams, net=None):
    """TrainState.opt_state['hparams'] (empty: eta held constant); `net` (theta) for
    state shaped like it."""
    del hparams, net
    return optax.EmptyState()
