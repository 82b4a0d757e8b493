"""Fixed networks (the baseline mode). Search spaces live in dha_jax/nas/."""

from dha_jax.models import bottleneck_resnet, conv_mlp, pyramidnet, resnet, small_cnn, wide_resnet

MODELS = {
    'small_cnn': small_cnn.from_config,
    'resnet': resnet.from_config,
    'conv_mlp': conv_mlp.from_config,  # flattened dense head: the calibration regime
    # the fixed-network zoo of DiffAutoML's Table 2 (published depth and width by name)
    'resnet50': bottleneck_resnet.from_config,
    'resnet200': bottleneck_resnet.from_config,
    'wrn28_10': wide_resnet.from_config,
    'wrn40_2': wide_resnet.from_config,
    'pyramidnet272': pyramidnet.from_config,
}


def create(cfg, num_classes: int, bn_axis_name='data'):
  """Builds the fixed network named by config.model.name."""
  if cfg.name not in MODELS:
    raise ValueError(f'config.model.name={cfg.name!r} is unknown; choose one of {sorted(MODELS)}')
  return MODELS[cfg.name](cfg, num_classes, bn_axis_name)


def param_count(name: str, num_classes: int, image_size: int, model_cfg=None) -> int:
  """Trainable parameters (convolutions, BN scales and biases, dense; not the BN running
  statistics), as torchvision and the papers count them, of network `name` with the
  default config.model fields (or `model_cfg`'s), from jax.eval_shape of its init:
  nothing is compiled or allocated, so the 200-layer networks cost a trace."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  from dha_jax.layers import conv  # pylint: disable=g-import-not-at-top
  cfg = (model_cfg or default.get_config().model).copy_and_resolve_references()
  cfg.name = name
  model = create(cfg, num_classes, bn_axis_name=None)
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  shapes = conv.eval_shape(lambda k, u: model.init(k, u, train=False),
                           jax.random.PRNGKey(0), x)
  return sum(int(a.size) for a in jax.tree_util.tree_leaves(shapes['params']))
