"""Pre-activation wide ResNet for 32 px inputs (Zagoruyko & Komodakis, 2016): WRN-28-10
and WRN-40-2, the CIFAR rows of DiffAutoML's Table 2. Depth 6n + 4: three stages of n
blocks (two 3x3 convs each) at 16k, 32k and 64k channels."""

import flax.linen as nn
import jax.numpy as jnp

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common

SIZES = {'wrn28_10': (28, 10), 'wrn40_2': (40, 2)}  # (depth, widening factor k)


class PreActBlock(nn.Module):
  """BN-ReLU-conv twice; where the shape changes the shortcut is a 1x1 conv of the
  pre-activated input (so the BN-ReLU is shared, as in the paper's code)."""
  features: int
  strides: int
  bn: callable

  @nn.compact
  def __call__(self, x):
    o = nn.relu(self.bn()(x))
    y = conv.Conv(self.features, (3, 3), self.strides)(o)
    y = conv.Conv(self.features, (3, 3))(nn.relu(self.bn()(y)))
    if x.shape[-1] != self.features or self.strides != 1:
      x = conv.Conv(self.features, (1, 1), self.strides)(o)
    return x + y


class WideResNet(nn.Module):
  num_classes: int
  depth: int = 28
  widen: int = 10
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f'config.model.depth={self.depth}: a wide ResNet has depth 6n + 4')
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    x = conv.Conv(16, (3, 3))(x)
    for i in range(3):
      for j in range((self.depth - 4) // 6):
        x = PreActBlock(16 * 2**i * self.widen, 2 if (i and not j) else 1, bn)(x)
    x = nn.relu(bn()(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('wrn28_10', 'wrn40_2')
def from_config(cfg, num_classes, bn_axis_name):
  depth, widen = SIZES[cfg.name]
  return WideResNet(num_classes, cfg.depth or depth, cfg.widen or widen, bn_axis_name,
                    cfg.bn_momentum)
