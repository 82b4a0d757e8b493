"""The ProxylessNAS-style MobileNet choice space (DHA's second NAS space), and a small one.

Every choice layer is an MBConv (MobileNetV2's inverted residual): 1x1 expand to e x C_in
-> BN -> ReLU6 -> k x k depthwise (the layer's stride) -> BN -> ReLU6 -> 1x1 project ->
BN (linear bottleneck), plus the input when stride 1 and C_in = C_out. Candidates (K = 7):
  0-5  MBConv with k in (3, 5, 7) x e in (3, 6): 'k3_e3', 'k3_e6', ..., 'k7_e6';
  6    'skip' (identity): ProxylessNAS's zero op, which with the residual is the identity,
       so the searched depth varies. Allowed only where the identity fits: every block
       but the first of a stage (stride 1, same channels). In a stage's first block
       candidate 6 is a variable-free zeros placeholder of the layer's output shape,
       forbidden by choice_space.Space.allowed, so DSNAS never samples it.

'mobilenet' (224 px), ProxylessNAS's search space: stem 3x3/2 conv to 32 + BN + ReLU6 and a
fixed MBConv e1 k3 to 16 (no expand conv), then choice stages of (24, 40, 80, 96, 192,
320) channels, (4, 4, 4, 4, 4, 1) layers, first-block strides (2, 2, 2, 1, 2, 1); then
1x1 conv to 1280 + BN + ReLU6, global average pool, linear (dropout left out).
21 choice layers, 6^6 x 7^15 paths.

'mobilenet_small' (8-32 px; e.g. 28 px Fashion-MNIST, 32 px CIFAR): the stem keeps the
resolution (stride 1) and is narrower (16, fixed MBConv to 8); stages of (16, 24, 40, 80)
channels, (2, 2, 3, 1) layers, strides (1, 2, 2, 1), so 32 px ends at 8 px as 224 px ends
at 7 px; head 1x1 conv to 256. 8 choice layers, 4 of them with skip.

`costs` is the analytic cost model (multiply-adds and parameters per candidate, as
choice_space.count_costs measures them from the modules; tests check both agree), and
`mobilenet_v2_costs` evaluates it on MobileNetV2 1.0 to check it against a known network.
"""

import dataclasses
import functools
import math
from typing import Optional, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dha_jax.layers import conv
from dha_jax.models import common
from dha_jax.nas import choice_space

CHOICES = ('k3_e3', 'k3_e6', 'k5_e3', 'k5_e6', 'k7_e3', 'k7_e6', 'skip')
KERNELS = (3, 3, 5, 5, 7, 7)
EXPANSIONS = (3, 6, 3, 6, 3, 6)
SKIP = 6


class MBConv(nn.Module):
  """Inverted residual block; expansion 1 drops the expand conv (MobileNetV2's first)."""
  out_channels: int
  stride: int = 1
  kernel: int = 3
  expansion: int = 6
  bn_axis_name: Optional[str] = None  # choice blocks: per device (see choice_space)
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    c_in, k = x.shape[-1], self.kernel
    mid = c_in * self.expansion
    y = x
    if self.expansion != 1:
      y = nn.relu6(bn()(conv.Conv(mid, (1, 1))(y)))
    y = conv.Conv(mid, (k, k), self.stride, padding=k // 2, feature_group_count=mid)(y)
    y = bn()(conv.Conv(self.out_channels, (1, 1))(nn.relu6(bn()(y))))
    return y + x if self.stride == 1 and c_in == self.out_channels else y


class Skip(nn.Module):
  """The identity candidate (no variables, no cost)."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    return x


class Zeros(nn.Module):
  """Stand-in for skip where it cannot apply: the layer's output shape, never sampled."""
  out_channels: int
  stride: int

  @nn.compact
  def __call__(self, x, train: bool = False):
    s = self.stride
    return jnp.zeros(x[:, ::s, ::s].shape[:-1] + (self.out_channels,), x.dtype)


class Stem(nn.Module):
  """3x3 conv, BN, ReLU6, then the fixed MBConv e1 k3 (BNs synchronised)."""
  channels: int
  stride: int
  first_channels: int
  bn_axis_name: Optional[str] = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv.Conv(self.channels, (3, 3), self.stride, padding=1)(x)
    x = nn.relu6(common.batch_norm(train, self.bn_axis_name, self.bn_momentum)(x))
    return MBConv(self.first_channels, 1, 3, 1, self.bn_axis_name, self.bn_momentum)(x, train)


class Head(nn.Module):
  """1x1 conv, BN, ReLU6, global average pool, classifier."""
  channels: int
  num_classes: int
  bn_axis_name: Optional[str] = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = conv.Conv(self.channels, (1, 1))(x)
    x = nn.relu6(common.batch_norm(train, self.bn_axis_name, self.bn_momentum)(x))
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


@dataclasses.dataclass(frozen=True)
class Layout:
  """Sizes of one network of the space: both the modules and the cost model read it."""
  stem_channels: int
  stem_stride: int
  first_channels: int
  layers: Tuple[choice_space.LayerSpec, ...]
  first_of_stage: Tuple[bool, ...]
  last_channels: int

  @property
  def allowed(self):
    """Skip in every layer but a stage's first (where stride or width change; kept
    out even when neither does, as in ProxylessNAS)."""
    return tuple((True,) * SKIP + (not first,) for first in self.first_of_stage)


DEFAULTS = {
    # name: (stem channels, stem stride, first block channels, stage repeats,
    #        stage channels, stage strides, last channels)
    'mobilenet': (32, 2, 16, (4, 4, 4, 4, 4, 1), (24, 40, 80, 96, 192, 320),
                  (2, 2, 2, 1, 2, 1), 1280),
    'mobilenet_small': (16, 1, 8, (2, 2, 3, 1), (16, 24, 40, 80), (1, 2, 2, 1), 256),
}


def layout(name='mobilenet', stem_channels=0, stage_repeats=(), stage_channels=(),
           last_channels=0, first_channels=0, stage_strides=()) -> Layout:
  """The layout `name` with optional overrides (0 or () = the default)."""
  if name not in DEFAULTS:
    raise ValueError(f'config.nas.space={name!r} is unknown; choose one of {sorted(DEFAULTS)}')
  stem_c, stem_s, first, repeats, channels, strides, last = DEFAULTS[name]
  stem_c, first, last = stem_channels or stem_c, first_channels or first, last_channels or last
  repeats, channels = tuple(stage_repeats or repeats), tuple(stage_channels or channels)
  strides = tuple(stage_strides or strides)
  if len(repeats) != len(channels) or len(channels) > len(strides) or min(repeats) < 1:
    raise ValueError(f'{name}: stage_repeats {repeats} (each >= 1) and stage_channels '
                     f'{channels} must have the same length (at most {len(strides)})')
  layers, first_of_stage, c_in = [], [], first
  for n, c, s in zip(repeats, channels, strides):
    for i in range(n):
      layers.append(choice_space.LayerSpec(c_in, c, s if i == 0 else 1))
      first_of_stage.append(i == 0)
      c_in = c
  return Layout(stem_c, stem_s, first, tuple(layers), tuple(first_of_stage), last)


def _block(spec, k, *, bn_momentum, name=None):
  if k < SKIP:
    return MBConv(spec.out_channels, spec.stride, KERNELS[k], EXPANSIONS[k],
                  bn_momentum=bn_momentum, name=name)
  if spec.stride == 1 and spec.in_channels == spec.out_channels:
    return Skip(name=name)
  return Zeros(spec.out_channels, spec.stride, name=name)


def _stem(bn_axis_name, *, lay, bn_momentum, name=None):
  return Stem(lay.stem_channels, lay.stem_stride, lay.first_channels, bn_axis_name,
              bn_momentum, name=name)


def _head(num_classes, bn_axis_name, *, lay, bn_momentum, name=None):
  return Head(lay.last_channels, num_classes, bn_axis_name, bn_momentum, name=name)


def space(lay: Layout, name='mobilenet', bn_momentum=0.9) -> choice_space.Space:
  return choice_space.Space(
      name=name, choices=CHOICES, layers=lay.layers,
      stem=functools.partial(_stem, lay=lay, bn_momentum=bn_momentum),
      block=functools.partial(_block, bn_momentum=bn_momentum),
      head=functools.partial(_head, lay=lay, bn_momentum=bn_momentum),
      allowed=lay.allowed)


def build(name='mobilenet', stem_channels=0, stage_repeats=(), stage_channels=(),
          last_channels=0, bn_momentum=0.9) -> choice_space.Space:
  return space(layout(name, stem_channels, stage_repeats, stage_channels, last_channels),
               name, bn_momentum)


# ------------------------------------------------------------------ the cost model


def _out(hw, stride):
  return tuple(math.ceil(d / stride) for d in hw)


def mbconv_cost(c_in, c_out, stride, kernel, expansion, hw):
  """(multiply-adds, parameters, output (h, w)) of one MBConv at input size hw; BN scale
  and bias counted as parameters, BN / ReLU6 / the residual add not as multiply-adds."""
  mid = c_in * expansion
  out = _out(hw, stride)
  macs = params = 0
  if expansion != 1:
    macs += hw[0] * hw[1] * c_in * mid
    params += c_in * mid + 2 * mid
  macs += out[0] * out[1] * (kernel * kernel * mid + mid * c_out)
  params += kernel * kernel * mid + 2 * mid + mid * c_out + 2 * c_out
  return macs, params, out


def costs(lay: Layout, image_shape, num_classes) -> choice_space.Costs:
  """Per-candidate multiply-adds and parameters per image, as choice_space.Costs; the
  stem (with the fixed first block) and the head are the fixed part."""
  hw, c_img = tuple(image_shape[:2]), image_shape[2]
  hw = _out(hw, lay.stem_stride)
  fixed_macs = hw[0] * hw[1] * 9 * c_img * lay.stem_channels
  fixed_params = 9 * c_img * lay.stem_channels + 2 * lay.stem_channels
  m, p, hw = mbconv_cost(lay.stem_channels, lay.first_channels, 1, 3, 1, hw)
  fixed_macs, fixed_params = fixed_macs + m, fixed_params + p
  L, K = len(lay.layers), len(CHOICES)
  flops, params = np.zeros((L, K), np.int64), np.zeros((L, K), np.int64)
  for l, spec in enumerate(lay.layers):
    for k in range(SKIP):
      flops[l, k], params[l, k], out = mbconv_cost(spec.in_channels, spec.out_channels,
                                                   spec.stride, KERNELS[k], EXPANSIONS[k], hw)
    hw = out
  c = lay.layers[-1].out_channels if lay.layers else lay.first_channels
  fixed_macs += hw[0] * hw[1] * c * lay.last_channels + lay.last_channels * num_classes
  fixed_params += c * lay.last_channels + 2 * lay.last_channels
  fixed_params += lay.last_channels * num_classes + num_classes
  return choice_space.Costs(flops, params, int(fixed_macs), int(fixed_params))


# MobileNetV2 1.0 (Sandler et al. 2018, Table 2): t, c, n, s after the 32-channel stem.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2_layout() -> Tuple[Layout, Tuple[int, ...]]:
  """MobileNetV2 1.0 as a layout of this space and its genotype (k3_e6 everywhere)."""
  (_, first, _, _), rest = MOBILENET_V2[0], MOBILENET_V2[1:]
  lay = layout('mobilenet', 32, tuple(n for _, _, n, _ in rest),
               tuple(c for _, c, _, _ in rest), 1280, first, tuple(s for *_, s in rest))
  return lay, (CHOICES.index('k3_e6'),) * len(lay.layers)


def mobilenet_v2_costs(image_size=224, num_classes=1000):
  """(multiply-adds, parameters) of MobileNetV2 1.0 by this cost model; published: 300M
  multiply-adds, 3.4M parameters (3,504,872 with BN scale / bias in torchvision)."""
  lay, genotype = mobilenet_v2_layout()
  return costs(lay, (image_size, image_size, 3), num_classes).of(genotype)


choice_space.register_sized(DEFAULTS, build)
