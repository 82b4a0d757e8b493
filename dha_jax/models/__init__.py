"""Fixed networks (the baseline mode). Search spaces live in dha_jax/nas/."""

from dha_jax.models import resnet, small_cnn

MODELS = {
    'small_cnn': small_cnn.from_config,
    'resnet': resnet.from_config,
}


def create(cfg, num_classes: int, bn_axis_name='data'):
  """Builds the fixed network named by config.model.name."""
  if cfg.name not in MODELS:
    raise ValueError(f'config.model.name={cfg.name!r} is unknown; choose one of {sorted(MODELS)}')
  return MODELS[cfg.name](cfg, num_classes, bn_axis_name)
