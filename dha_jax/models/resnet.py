"""ResNet with basic blocks: CIFAR stem for 32 px inputs, ImageNet stem for 224 px."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common


class BasicBlock(nn.Module):
  features: int
  strides: int
  bn: callable

  @nn.compact
  def __call__(self, x):
    y = nn.relu(self.bn()(conv.Conv(self.features, (3, 3), self.strides)(x)))
    y = self.bn(scale_init=nn.initializers.zeros)(conv.Conv(self.features, (3, 3))(y))
    if x.shape != y.shape:
      x = self.bn()(conv.Conv(self.features, (1, 1), self.strides)(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  num_classes: int
  stage_sizes: Sequence[int] = (2, 2, 2)
  width: int = 16
  stem: str = 'cifar'
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    if self.stem == 'imagenet':
      x = nn.relu(bn()(conv.Conv(self.width, (7, 7), 2)(x)))
      x = conv.max_pool(x, window=3, strides=2, padding='SAME')
    elif self.stem == 'cifar':
      x = nn.relu(bn()(conv.Conv(self.width, (3, 3))(x)))
    else:
      raise ValueError(f"config.model.stem={self.stem!r}: use 'cifar' or 'imagenet'")
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = BasicBlock(self.width * 2**i, 2 if (i and not j) else 1, bn)(x)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('resnet')
def from_config(cfg, num_classes, bn_axis_name):
  return ResNet(num_classes, tuple(cfg.stage_sizes), cfg.width, cfg.stem, bn_axis_name,
                cfg.bn_momentum)
