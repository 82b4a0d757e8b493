"""The 7 candidate operations of the DARTS cell space (no 'none'), and the cell's
pre-processing layers.

Every op maps [N, H, W, C] to [N, H/s, W/s, C]. Convolutions and pools go through
dha_jax/layers/conv (the fast CPU formulation), BatchNorms through models/common (so BN
recalibration can override their momentum). `affine` switches BN scale/bias (DARTS
searches with affine=False; the one-stage ISTA network trains on, so it defaults to True).
`pool_bn` adds a non-affine BN after the pools (DARTS' search-time MixedOp does, so pooled
and convolved outputs have comparable scale in the weighted sum).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dha_jax.layers import conv
from dha_jax.models import common

OPS = ('max_pool_3x3', 'avg_pool_3x3', 'skip_connect', 'sep_conv_3x3', 'sep_conv_5x5',
       'dil_conv_3x3', 'dil_conv_5x5')
NUM_OPS = len(OPS)


def _bn(train, axis_name, momentum, affine):
  return common.batch_norm(train, axis_name, momentum, use_scale=affine, use_bias=affine)


class ReLUConvBN(nn.Module):
  """ReLU -> k x k conv -> BN: the cell's pre-processing of a previous state."""
  channels: int
  kernel: int = 1
  stride: int = 1
  affine: bool = True
  bn_axis_name: str = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train=False):
    x = conv.Conv(self.channels, (self.kernel, self.kernel), self.stride,
                  padding=self.kernel // 2)(nn.relu(x))
    return _bn(train, self.bn_axis_name, self.bn_momentum, self.affine)(x)


class FactorizedReduce(nn.Module):
  """ReLU -> two 1x1 stride-2 convs (the second shifted by one pixel), concatenated -> BN.
  Odd inputs: the shifted half is zero-padded at the bottom/right so both halves agree."""
  channels: int
  affine: bool = True
  bn_axis_name: str = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(x)
    half = self.channels // 2
    a = conv.Conv(half, (1, 1), 2, padding=0, name='conv_1')(x)
    shifted = x[:, 1:, 1:, :]
    h, w = x.shape[1], x.shape[2]
    shifted = jnp.pad(shifted, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
    b = conv.Conv(self.channels - half, (1, 1), 2, padding=0, name='conv_2')(shifted)
    return _bn(train, self.bn_axis_name, self.bn_momentum, self.affine)(
        jnp.concatenate([a, b], -1))


class _DepthwiseOp(nn.Module):
  """Fields of the depthwise-separable ops (SepConv, DilConv)."""
  channels: int
  kernel: int
  stride: int
  affine: bool = True
  bn_axis_name: str = None
  bn_momentum: float = 0.9


class SepConv(_DepthwiseOp):
  """(ReLU -> depthwise k x k -> pointwise -> BN) twice; only the first is strided."""

  @nn.compact
  def __call__(self, x, train=False):
    c, k = self.channels, self.kernel
    for s in (self.stride, 1):
      x = conv.Conv(c, (k, k), s, padding=k // 2, feature_group_count=c)(nn.relu(x))
      x = conv.Conv(c, (1, 1))(x)
      x = _bn(train, self.bn_axis_name, self.bn_momentum, self.affine)(x)
    return x


class DilConv(_DepthwiseOp):
  """ReLU -> depthwise k x k with dilation 2 -> pointwise -> BN."""

  @nn.compact
  def __call__(self, x, train=False):
    c, k = self.channels, self.kernel
    x = conv.Conv(c, (k, k), self.stride, padding=k - 1, kernel_dilation=2,
                  feature_group_count=c)(nn.relu(x))
    x = conv.Conv(c, (1, 1))(x)
    return _bn(train, self.bn_axis_name, self.bn_momentum, self.affine)(x)


class Pool(nn.Module):
  """3x3 max or average pool (average excludes padding, as DARTS), optional BN after."""
  kind: str
  stride: int
  pool_bn: bool = False
  bn_axis_name: str = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train=False):
    if self.kind == 'max':
      x = conv.max_pool(x, 3, self.stride, padding=1)
    else:
      x = conv.avg_pool(x, 3, self.stride, padding=1, count_include_pad=False)
    if self.pool_bn:
      x = _bn(train, self.bn_axis_name, self.bn_momentum, False)(x)
    return x


class Identity(nn.Module):

  @nn.compact
  def __call__(self, x, train=False):
    del train
    return x


def is_identity(op: str, stride: int) -> bool:
  """Drop-path skips identities (as DARTS): they carry no parameters to regularise."""
  return op == 'skip_connect' and stride == 1


def make_op(op: str, channels: int, stride: int, *, affine=True, pool_bn=False,
            bn_axis_name=None, bn_momentum=0.9, name=None) -> nn.Module:
  """The Flax module of candidate `op` (a name from OPS)."""
  bn = dict(bn_axis_name=bn_axis_name, bn_momentum=bn_momentum)
  if op in ('max_pool_3x3', 'avg_pool_3x3'):
    return Pool(op[:3], stride, pool_bn, name=name, **bn)
  if op == 'skip_connect':
    return (Identity(name=name) if stride == 1 else
            FactorizedReduce(channels, affine, name=name, **bn))
  if op.startswith('sep_conv_'):
    return SepConv(channels, int(op[-1]), stride, affine, name=name, **bn)
  if op.startswith('dil_conv_'):
    return DilConv(channels, int(op[-1]), stride, affine, name=name, **bn)
  raise ValueError(f'unknown DARTS op {op!r}; the ops are {OPS}')


def drop_path(x, rate, key):
  """Drops whole samples with probability `rate` (may be traced; 0 = identity) and
  rescales the kept ones by 1/(1-rate), as DARTS' drop_path."""
  keep = 1.0 - rate
  mask = jax.random.bernoulli(key, keep, (x.shape[0], 1, 1, 1))
  return jnp.where(mask, x / keep, 0.0).astype(x.dtype)
