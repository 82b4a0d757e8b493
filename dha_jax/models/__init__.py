"""Fixed networks (the baseline mode). Search spaces live in dha_jax/nas/."""

from dha_jax.core import registry

# name -> from_config(cfg, num_classes, bn_axis_name), registered where each is defined
# (@MODELS.register('name')); every module of this package is imported below.
MODELS = registry.Registry('config.model.name')


def create(cfg, num_classes: int, bn_axis_name='data'):
  """Builds the fixed network named by config.model.name."""
  return MODELS.get(cfg.name)(cfg, num_classes, bn_axis_name)


def param_count(name: str, num_classes: int, image_size: int, model_cfg) -> int:
  """Trainable parameters (convolutions, BN scales and biases, dense; not the BN running
  statistics), as torchvision and the papers count them, of network `name` with
  `model_cfg`'s fields (a config.model), from jax.eval_shape of its init: nothing is
  compiled or allocated, so the 200-layer networks cost a trace."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from dha_jax.layers import conv  # pylint: disable=g-import-not-at-top
  cfg = model_cfg.copy_and_resolve_references()
  cfg.name = name
  model = create(cfg, num_classes, bn_axis_name=None)
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shapes = conv.eval_shape(lambda k, u: model.init(k, u, train=False),
                           jax.random.PRNGKey(0), x)
  return sum(int(a.size) for a in jax.tree_util.tree_leaves(shapes['params']))


registry.import_modules(__name__, __path__)
