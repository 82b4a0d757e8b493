"""One genotype of a choice space, trained alone: no alpha, never searching (the 'random'
control and 'sequential's second half on DSNAS's spaces; docs/method.md 3c).

Its config is DSNAS's (config.nas.strategy 'dsnas' with `genotype` or `random_genotype`
set: dsnas.DSNAS builds this class then), so those runs' configs and checkpoints are the
ones they always were; the search part is base.NO_SEARCH's.
"""

import jax
import numpy as np

from dha_jax.nas import base, choice_space, dsnas, random_control


@base.STRATEGIES.register('choice_fixed')
class ChoiceFixed(dsnas.ChoiceStrategy):
  """The static network of config.nas.genotype (or one drawn with config.seed)."""

  def __init__(self, config, num_classes, image_shape):
    super().__init__(config, num_classes, image_shape)
    n, L, K = self.cfg, self.space.num_layers, self.space.num_choices
    self.genotype = tuple(int(g) for g in n.genotype) or None
    if self.genotype and (len(self.genotype) != L or max(self.genotype) >= K):
      raise ValueError(f'config.nas.genotype needs {L} indices in [0, {K})')
    if self.genotype and not all(self.mask[l, g] for l, g in enumerate(self.genotype)):
      bad = [l for l, g in enumerate(self.genotype) if not self.mask[l, g]]
      raise ValueError(f'config.nas.genotype: layers {bad} take a candidate their layer '
                       f'does not allow (e.g. skip in the first block of a stage)')
    if n.random_genotype:  # the random control: drawn with the run's seed, within budget
      if self.genotype:
        raise ValueError('config.nas.random_genotype=True and config.nas.genotype are '
                         'exclusive: set one of them')
      self.genotype = self._draw(int(config.seed))
    if not self.genotype:
      raise ValueError('config.nas.genotype is empty: give one index per layer, or set '
                       'config.nas.random_genotype=True')
    self.net = choice_space.ChoiceNet(self.space, num_classes, self.genotype)

  def _draw(self, seed):
    """A genotype uniform over each layer's allowed candidates, within config.nas.budget."""
    gen = np.random.default_rng([seed, 5])
    cost = {'flops': 0, 'params': 1}[self.cfg.resource]
    options = [np.flatnonzero(m) for m in self.mask]
    return random_control.draw_within_budget(
        lambda: tuple(int(o[i]) for o, i in zip(options, gen.integers(
            [len(o) for o in options]))),
        lambda g: self.costs.of(list(g))[cost], float(self.cfg.budget), 'config.nas.budget')

  def program_key(self):
    """The genotype (drawn from config.seed for the random control): fixed in the program."""
    return self.genotype

  def init(self, rng, dummy):
    k_net, _ = jax.random.split(rng)
    v = self._init_variables(k_net, dummy)
    return v['params'], v.get('batch_stats', {}), {}, {}

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    variables = {'params': net, 'batch_stats': batch_stats}
    if train:
      logits, new = self.net.apply(variables, images, train=True, mutable=['batch_stats'])
      return logits, new['batch_stats'], {}
    return self.net.apply(variables, images, train=False), batch_stats, {}

  def genotype_of(self, arch, nas_state):
    return list(self.genotype)
