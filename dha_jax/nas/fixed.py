"""The 'none' strategy: a fixed network from dha_jax/models, no architecture parameters."""

from dha_jax import models
from dha_jax.nas import base


@base.STRATEGIES.register('none')
class FixedNetwork(base.Strategy):
  """Runs config.model as it is (the baseline, and the "fixed network" comparisons);
  every other member is base.Strategy's: no alpha, nothing searched."""

  def __init__(self, config, num_classes, image_shape):
    del image_shape
    self.config, self.num_classes = config, num_classes
    self.model = models.create(config.model, num_classes)

  def init(self, rng, dummy):
    # lazy_init runs the initializers only, not the forward pass (the same values):
    # eager init of a large network on CPU is bound by the forward's op-by-op compiles
    variables = self.model.lazy_init(rng, dummy, train=False)
    return variables['params'], variables.get('batch_stats', {}), {}, {}

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    del arch, nas_state
    variables = {'params': net, 'batch_stats': batch_stats}
    if train:  # a model with random layers (ShakeDrop) names its rng streams: the step's key
      rngs = {name: rng for name in getattr(self.model, 'rng_streams', ())}
      logits, new = self.model.apply(variables, images, train=True, mutable=['batch_stats'],
                                     rngs=rngs)
      return logits, new['batch_stats'], {}
    return self.model.apply(variables, images, train=False), batch_stats, {}

  def child(self, state):
    """The network itself: (module, variables, genotype=None)."""
    variables = {'params': state.params['net'], 'batch_stats': state.batch_stats}
    return self.child_module(None), variables, None

  def child_module(self, genotype):
    del genotype
    return models.create(self.config.model, self.num_classes, bn_axis_name=None)
