"""A small VGG-style CNN for the tiny sets (digits 8x8, MNIST-size 28x28)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common


class SmallCNN(nn.Module):
  num_classes: int
  widths: Sequence[int] = (32, 64)
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    for i, w in enumerate(self.widths):
      if i:
        x = conv.max_pool(x, window=2, strides=2, padding='VALID')
      for _ in range(2):
        x = nn.relu(bn()(conv.Conv(w, (3, 3))(x)))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('small_cnn')
def from_config(cfg, num_classes, bn_axis_name):
  return SmallCNN(num_classes, tuple(cfg.widths), bn_axis_name, cfg.bn_momentum)
