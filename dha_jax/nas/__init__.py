"""Architecture strategies. A strategy owns the network forward: it may sample a child
(DSNAS), weight a sparse cell (ISTA) or just run a fixed network ('none').

The contract is dha_jax/nas/base.py's Strategy, with its opt-in parts (Search,
SparseExecution, FixedGenotype); fixed.FixedNetwork is the simplest complete example. A
strategy registers itself with `@base.STRATEGIES.register(name)` on its class; every
module of this package is imported here, so a new file is all a new strategy needs.
"""

from dha_jax.core import registry
from dha_jax.nas import base

STRATEGIES = base.STRATEGIES
registry.import_modules(__name__, __path__, skip=('ista_plot',))


def default_config(name):
  """config.nas with every field of strategy `name` and its default."""
  n = STRATEGIES.get(name).default_config()
  if n is None:
    raise ValueError(f'no search settings for strategy {name!r}; choose one of '
                     f'{sorted(k for k in STRATEGIES if STRATEGIES.get(k).default_config())}')
  return n


def create(config, num_classes, image_shape):
  """The strategy config.nas.strategy names, for inputs of shape image_shape (H, W, C)."""
  return STRATEGIES.get(config.nas.strategy)(config, num_classes, tuple(image_shape))
