"""Architecture strategies. A strategy owns the network forward: it may sample a child
(DSNAS), weight a sparse cell (ISTA) or just run a fixed network ('none').

The contract is dha_jax/nas/base.py's Strategy (required members abstract, the rest with
a fixed network's behaviour); fixed.FixedNetwork is the simplest complete example. A
strategy is registered by name here; the train step never changes for a new one.
"""

from dha_jax.nas import darts, dsnas, fixed, ista
from dha_jax.nas import mobilenet, shufflenet  # noqa: F401  (register their choice spaces)

STRATEGIES = {
    'none': fixed.FixedNetwork,
    'ista': ista.ISTA,
    'darts': darts.DARTS,
    'darts_fixed': darts.DartsFixed,
    'dsnas': dsnas.DSNAS,
}


# config.nas with every field of a strategy and its default (the configs start from it)
DEFAULT_CONFIGS = {
    'dsnas': dsnas.default_config,
    'ista': ista.default_config,
    'darts': darts.darts_config,
    'darts_fixed': darts.fixed_config,
}


def default_config(name):
  if name not in DEFAULT_CONFIGS:
    raise ValueError(f'no search settings for strategy {name!r}; choose one of '
                     f'{sorted(DEFAULT_CONFIGS)}')
  return DEFAULT_CONFIGS[name]()


def create(config, num_classes, image_shape):
  """The strategy config.nas.strategy names, for inputs of shape image_shape (H, W, C)."""
  name = config.nas.strategy
  if name not in STRATEGIES:
    raise ValueError(f'config.nas.strategy={name!r} is unknown; choose one of '
                     f'{sorted(STRATEGIES)}')
  return STRATEGIES[name](config, num_classes, tuple(image_shape))
