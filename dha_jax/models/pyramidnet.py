"""Additive PyramidNet with bottleneck blocks and ShakeDrop (Han et al., 2017; Yamada et
al., 2018) for 32 px inputs: PyramidNet-272 (alpha = 200), the strongest CIFAR-10 row of
DiffAutoML's Table 2. Depth 9n + 2: three stages of n blocks; the bottleneck width grows
by alpha / 3n per block (not per stage), from 16."""

from typing import ClassVar, Tuple

import flax.linen as nn
import jax.numpy as jnp

from dha_jax import models
from dha_jax.layers import conv
from dha_jax.models import common, shakedrop

SIZES = {'pyramidnet272': (272, 200)}  # (depth, widening factor alpha)
EXPANSION = 4


def shortcut(x, channels: int, strides: int):
  """Identity (2x2 average pooled where the block strides), zero-padded to the wider
  output: the paper's shortcut, with no parameters."""
  if strides != 1:
    x = conv.avg_pool(x, window=2, strides=strides, padding='SAME')
  return jnp.pad(x, ((0, 0),) * 3 + ((0, channels - x.shape[-1]),))


class PyramidBottleneck(nn.Module):
  """BN, 1x1-BN-ReLU, 3x3 (strided)-BN-ReLU, 1x1 to 4x features, BN; ShakeDrop on that
  branch; no ReLU after the sum (the paper's block)."""
  features: int
  strides: int
  keep_prob: float
  bn: callable

  @nn.compact
  def __call__(self, x, train: bool):
    y = self.bn()(x)
    y = nn.relu(self.bn()(conv.Conv(self.features, (1, 1))(y)))
    y = nn.relu(self.bn()(conv.Conv(self.features, (3, 3), self.strides)(y)))
    y = self.bn()(conv.Conv(EXPANSION * self.features, (1, 1))(y))
    y = shakedrop.ShakeDrop(self.keep_prob)(y, train)
    return shortcut(x, y.shape[-1], self.strides) + y


def block_widths(depth: int, alpha: int):
  """Bottleneck channels of blocks 1..3n: round(16 + alpha k / 3n)."""
  if depth < 11 or (depth - 2) % 9:
    raise ValueError(f'config.model.depth={depth}: a bottleneck PyramidNet has depth 9n + 2')
  total = 3 * ((depth - 2) // 9)
  return tuple(int(round(16 + alpha * k / total)) for k in range(1, total + 1))


class PyramidNet(nn.Module):
  num_classes: int
  depth: int = 272
  alpha: int = 200
  final_keep: float = 0.5  # ShakeDrop's p_L; p_l = 1 - (1 - p_L) l / L over blocks l
  bn_axis_name: str = 'data'
  bn_momentum: float = 0.9
  rng_streams: ClassVar[Tuple[str, ...]] = (shakedrop.STREAM,)  # FixedNetwork feeds these

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    x = bn()(conv.Conv(16, (3, 3))(x))
    widths = block_widths(self.depth, self.alpha)
    per_stage = len(widths) // 3
    for l, w in enumerate(widths):
      keep = 1.0 - (1.0 - self.final_keep) * (l + 1) / len(widths)
      strides = 2 if l and not l % per_stage else 1
      x = PyramidBottleneck(w, strides, keep, bn)(x, train)
    x = nn.relu(bn()(x))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


@models.MODELS.register('pyramidnet272')
def from_config(cfg, num_classes, bn_axis_name):
  depth, alpha = SIZES[cfg.name]
  return PyramidNet(num_classes, cfg.depth or depth, cfg.widen or alpha,
                    bn_axis_name=bn_axis_name, bn_momentum=cfg.bn_momentum)
