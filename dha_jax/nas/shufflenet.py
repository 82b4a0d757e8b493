"""The SPOS / DSNAS ShuffleNetV2 choice-block space, and a small version for 8-32 px inputs.

'shufflenet' (224 px): stem 3x3/2 conv to 16 + BN + ReLU, NO max-pool (the SPOS supernet
goes straight from the 112 px stem into four stride-2 stages and pools 7x7 at the end;
the max-pool belongs to the hand-designed ShuffleNetV2), stages [4, 4, 8, 4] choice layers
with [64, 160, 320, 640] channels, the first block of each stage stride 2, then 1x1 conv
to 1024 + BN + ReLU, global average pool, linear. SPOS's dropout 0.1 before the classifier
is left out. Candidates per layer (K = 4):
  0-2  ShuffleNetV2 block, depthwise kernel 3 / 5 / 7: main branch pw -> dw(k) -> pw;
  3    Xception-style block: main branch 3 x (dw 3x3 -> pw).
A stride-1 block takes the even channels as the pass-through half and the odd ones as the
main branch input (SPOS's channel shuffle + split); a stride-2 (or widening) block feeds the
whole input to both the main branch and a projection branch dw(k) -> pw. The two halves are
concatenated. BatchNorms inside choice blocks are per device (see choice_space.py).
"""

import functools

import flax.linen as nn
import jax.numpy as jnp

from dha_jax.layers import conv
from dha_jax.models import common
from dha_jax.nas import choice_space

CHOICES = ('shuffle3', 'shuffle5', 'shuffle7', 'xception')


class ShuffleChoiceBlock(nn.Module):
  """One SPOS candidate: ShuffleNetV2 unit with a k x k depthwise conv, or Xception unit."""
  in_channels: int
  out_channels: int
  stride: int
  kernel: int = 3
  xception: bool = False
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, None, self.bn_momentum)  # per device: see choice_space

    def dw(y, k, s):
      c = y.shape[-1]
      return bn()(conv.Conv(c, (k, k), s, padding=k // 2, feature_group_count=c)(y))

    def pw(y, c):
      return nn.relu(bn()(conv.Conv(c, (1, 1))(y)))

    project = self.stride > 1 or self.in_channels != self.out_channels
    if project:
      short, y = x, x
      main_out = self.out_channels - self.in_channels
    else:
      short, y = x[..., 0::2], x[..., 1::2]
      main_out = self.out_channels // 2
    mid = self.out_channels // 2
    if self.xception:
      y = pw(dw(pw(dw(pw(dw(y, 3, self.stride), mid), 3, 1), mid), 3, 1), main_out)
    else:
      y = pw(dw(pw(y, mid), self.kernel, self.stride), main_out)
    if project:
      short = pw(dw(short, 3 if self.xception else self.kernel, self.stride), self.in_channels)
    return jnp.concatenate([short, y], axis=-1)


def _conv_bn_relu(x, channels, kernel, stride, padding, train, bn_axis_name, bn_momentum):
  x = conv.Conv(channels, (kernel, kernel), stride, padding=padding)(x)
  return nn.relu(common.batch_norm(train, bn_axis_name, bn_momentum)(x))


class _ConvUnit(nn.Module):
  """Fields of the fixed stem and head around the choice layers."""
  channels: int
  stride: int = 1
  bn_axis_name: str = None
  bn_momentum: float = 0.9


class Stem(_ConvUnit):
  """3x3 conv, BN, ReLU (strided at 224 px)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return _conv_bn_relu(x, self.channels, 3, self.stride, 1, train, self.bn_axis_name,
                         self.bn_momentum)


class Head(_ConvUnit):
  """1x1 conv, BN, ReLU, global average pool, classifier."""
  num_classes: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = _conv_bn_relu(x, self.channels, 1, 1, 'SAME', train, self.bn_axis_name,
                      self.bn_momentum)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def _block(spec, k, *, bn_momentum, name=None):
  return ShuffleChoiceBlock(spec.in_channels, spec.out_channels, spec.stride,
                            kernel=(3, 5, 7, 3)[k], xception=k == 3,
                            bn_momentum=bn_momentum, name=name)


def _stem(bn_axis_name, *, channels, stride, bn_momentum, name=None):
  return Stem(channels, stride, bn_axis_name, bn_momentum, name=name)


def _head(num_classes, bn_axis_name, *, channels, bn_momentum, name=None):
  return Head(channels, 1, bn_axis_name, bn_momentum, num_classes=num_classes, name=name)


DEFAULTS = {
    # name: (stem channels, stem stride, stage repeats, stage channels, stage strides, last)
    'shufflenet': (16, 2, (4, 4, 8, 4), (64, 160, 320, 640), (2, 2, 2, 2), 1024),
    # 8-32 px inputs: no stem downsampling, 3 stages, the first at full resolution.
    'shufflenet_small': (16, 1, (2, 2, 2), (32, 64, 128), (1, 2, 2), 256),
}


def build(name='shufflenet', stem_channels=0, stage_repeats=(), stage_channels=(),
          last_channels=0, bn_momentum=0.9) -> choice_space.Space:
  """The space `name` with optional width / depth overrides (0 or () = the default)."""
  if name not in DEFAULTS:
    raise ValueError(f'config.nas.space={name!r} is unknown; choose one of {sorted(DEFAULTS)}')
  stem_c, stem_s, repeats, channels, strides, last = DEFAULTS[name]
  stem_c, last = stem_channels or stem_c, last_channels or last
  repeats, channels = tuple(stage_repeats or repeats), tuple(stage_channels or channels)
  if len(repeats) != len(channels) or len(channels) > len(strides):
    raise ValueError(f'{name}: stage_repeats {repeats} and stage_channels {channels} must '
                     f'have the same length (at most {len(strides)})')
  layers, c_in = [], stem_c
  for n, c, s in zip(repeats, channels, strides):
    if c % 2 or c <= c_in:
      raise ValueError(f'{name}: stage channels must be even and grow ({c_in} -> {c})')
    for i in range(n):
      layers.append(choice_space.LayerSpec(c_in, c, s if i == 0 else 1))
      c_in = c
  return choice_space.Space(
      name=name, choices=CHOICES, layers=tuple(layers),
      stem=functools.partial(_stem, channels=stem_c, stride=stem_s, bn_momentum=bn_momentum),
      block=functools.partial(_block, bn_momentum=bn_momentum),
      head=functools.partial(_head, channels=last, bn_momentum=bn_momentum))


choice_space.register_sized(DEFAULTS, build)
