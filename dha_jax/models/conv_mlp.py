"""A CNN with a flattened dense head (LeNet-style) for the small-data calibration.

Without global pooling the head sees each position separately, so the network is not
translation invariant and overfits a small training set: the regime where geometric
augmentation (crop, translate, flip) pays, which the global-pool SmallCNN does not show
on Fashion-MNIST subsets (docs/calibration.md)."""

from typing import Sequence

import flax.linen as nn

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common


class ConvMLP(nn.Module):
  num_classes: int
  widths: Sequence[int] = (32, 64)
  hidden: int = 256
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    for w in self.widths:  # conv-BN-ReLU then a 2x2 max-pool, per stage
      x = nn.relu(bn()(conv.Conv(w, (3, 3))(x)))
      x = conv.max_pool(x, window=2, strides=2, padding='VALID')
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.hidden)(x))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('conv_mlp')
def from_config(cfg, num_classes, bn_axis_name):
  return ConvMLP(num_classes, tuple(cfg.widths), int(cfg.hidden), bn_axis_name,
                 cfg.bn_momentum)
