"""ResNet with bottleneck blocks and the ImageNet stem (He et al., 2016): ResNet-50 and
ResNet-200, the fixed networks of the ImageNet rows of DiffAutoML's Table 2."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common

STAGES = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}
DEPTH = {'resnet50': 50, 'resnet200': 200}
EXPANSION = 4


def stage_sizes(depth: int):
  """The published stages for depth 50/101/152/200; another depth 12n + 2 (a reduced
  network for tests) has n blocks in each of the four stages."""
  if depth in STAGES:
    return STAGES[depth]
  if depth < 14 or (depth - 2) % 12:
    raise ValueError(f'config.model.depth={depth}: a bottleneck ResNet takes 50, 101, 152, '
                     '200 or 12n + 2 (n blocks per stage)')
  return ((depth - 2) // 12,) * 4


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (which strides, as torchvision does), 1x1 expand to 4x features;
  a 1x1 projection shortcut where the shape changes."""
  features: int
  strides: int
  bn: callable

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.bn()(conv.Conv(self.features, (1, 1))(x)))
    y = nn.relu(self.bn()(conv.Conv(self.features, (3, 3), self.strides)(y)))
    # zero-initialised last scale: each block starts as the identity (Goyal et al., 2017)
    y = self.bn(scale_init=nn.initializers.zeros)(conv.Conv(EXPANSION * self.features,
                                                            (1, 1))(y))
    if x.shape != y.shape:
      x = self.bn()(conv.Conv(EXPANSION * self.features, (1, 1), self.strides)(x))
    return nn.relu(x + y)


class BottleneckResNet(nn.Module):
  num_classes: int
  stage_sizes: Sequence[int] = STAGES[50]
  width: int = 64
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    x = nn.relu(bn()(conv.Conv(self.width, (7, 7), 2)(x)))
    x = conv.max_pool(x, window=3, strides=2, padding='SAME')
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = Bottleneck(self.width * 2**i, 2 if (i and not j) else 1, bn)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('resnet50', 'resnet200')
def from_config(cfg, num_classes, bn_axis_name):
  depth = cfg.depth or DEPTH[cfg.name]
  return BottleneckResNet(num_classes, stage_sizes(depth), cfg.widen or 64, bn_axis_name,
                          cfg.bn_momentum)
