"""The 'none' strategy: a fixed network from dha_jax/models, no architecture parameters."""

import jax.numpy as jnp
import optax

from dha_jax import models


class FixedNetwork:
  """Runs config.model as it is (the baseline, and the "fixed network" comparisons)."""

  def __init__(self, config, num_classes):
    self.config, self.num_classes = config, num_classes
    self.model = models.create(config.model, num_classes)

  def init(self, rng, dummy):
    variables = self.model.init(rng, dummy, train=False)
    return variables['params'], variables.get('batch_stats', {}), {}, {}

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    del arch, nas_state, rng
    variables = {'params': net, 'batch_stats': batch_stats}
    if train:
      logits, new = self.model.apply(variables, images, train=True, mutable=['batch_stats'])
      return logits, new['batch_stats'], {}
    return self.model.apply(variables, images, train=False), batch_stats, {}

  def arch_loss(self, arch, nas_state, aux):
    return jnp.zeros(())

  def optimizer(self):
    return optax.identity()

  def searching(self, nas_state):
    return jnp.zeros((), bool)

  def mask_update(self, old_arch, new_arch, nas_state):
    return new_arch

  def after_step(self, nas_state, aux):
    return nas_state

  def metrics(self, arch, nas_state):
    return {}

  def end_of_epoch(self, state, epoch):
    return state

  def stop_search(self, state):
    return state

  def summary(self, arch, nas_state):
    return {}

  def pictures(self, arch, nas_state):
    return {}

  def child(self, state):
    """The network itself: (module, variables, genotype=None)."""
    variables = {'params': state.params['net'], 'batch_stats': state.batch_stats}
    return self.child_module(None), variables, None

  def child_module(self, genotype):
    del genotype
    return models.create(self.config.model, self.num_classes, bn_axis_name=None)
