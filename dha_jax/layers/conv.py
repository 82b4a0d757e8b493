"""2-D convolution and pooling with a per-backend choice of formulation.

XLA's CPU convolution is fast forward but very slow under grad: the kernel
gradient is lowered to a "convolution" whose window is the whole image, which
the CPU runtime runs naively (~500 ms for one 3x3 32->32 conv, batch 128, 28x28,
on 2 cores).  The same numbers done as shifted slices + matmuls, processed a few
images at a time so the gathered patches stay in cache, take ~40 ms.  Grouped
convs via ``feature_group_count`` and ``reduce_window`` pooling are similarly
slow on CPU, while sums of shifted slices are fast.  On GPU/TPU the library
convolution (cuDNN, ...) is the right path, so 'auto' only rewrites on CPU.

Every formulation computes exactly
``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)``.

impl names:
  'xla'    lax.conv_general_dilated / lax.reduce_window everywhere.
  'im2col' pure-JAX slices: batch-chunked, rematerialised im2col + one matmul
           (dense / grouped), sum of shifted multiplies (depthwise), einsum (1x1).
           Differentiable any number of times, forward or reverse.
  'mixed'  dense k>1: XLA's forward and input gradient (both fast on CPU) and
           the chunked im2col kernel gradient, joined by a custom_jvp (so jvp,
           grad and grad-of-grad all work).  Depthwise / 1x1 / pooling as 'im2col'.
  'auto'   (default) 'xla' on gpu/tpu, 'mixed' on cpu.
"""

import contextlib
import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

IMPLS = ('auto', 'xla', 'im2col', 'mixed')
_CPU_DEFAULT = 'mixed'
_DEFAULT = ['auto']
# Batch chunk for im2col: enough images to fill this many bytes of patches (fits
# in cache; measured best at 2-4 MB on a 2-core EPYC, flat between 1 and 8 MB).
_CHUNK_BYTES = 4 << 20

Pair = Tuple[int, int]
Padding = Union[str, int, Sequence[Tuple[int, int]]]


def _check(name):
  if name not in IMPLS:
    raise ValueError(f'unknown conv impl {name!r}; allowed: {", ".join(IMPLS)}')
  return name


def set_default_impl(name: str):
  _DEFAULT[0] = _check(name)


def get_default_impl() -> str:
  return _DEFAULT[0]


@contextlib.contextmanager
def use_impl(name: str):
  """Temporarily change the default impl (affects tracing, so jit inside)."""
  old, _DEFAULT[0] = _DEFAULT[0], _check(name)
  try:
    yield
  finally:
    _DEFAULT[0] = old


def _resolve(impl: Optional[str]) -> str:
  impl = _check(impl or _DEFAULT[0])
  if impl == 'auto':
    return _CPU_DEFAULT if jax.default_backend() == 'cpu' else 'xla'
  return impl


# ----------------------------------------------------------------- geometry


def _pair(v) -> Pair:
  return (v, v) if isinstance(v, int) else tuple(v)


def _pads(padding: Padding, in_hw, window, strides, dilation) -> Tuple[Pair, Pair]:
  """Explicit ((lo, hi), (lo, hi)); 'SAME' exactly as lax (lo = total // 2)."""
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  if isinstance(padding, str):
    out = []
    for n, k, s, d in zip(in_hw, window, strides, dilation):
      if padding.upper() == 'VALID':
        out.append((0, 0))
      elif padding.upper() == 'SAME':
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        out.append((total // 2, total - total // 2))
      else:
        raise ValueError(f'padding must be SAME, VALID, an int or pairs, got {padding!r}')
    return tuple(out)
  return tuple(tuple(int(v) for v in p) for p in padding)


class _Geom(NamedTuple):
  """Static description of one sliding-window op (hashable for custom_vjp)."""
  window: Pair
  strides: Pair
  dilation: Pair
  pads: Tuple[Pair, Pair]
  groups: int = 1

  def out_hw(self, in_hw):
    return tuple((n + lo + hi - (k - 1) * d - 1) // s + 1 for n, (lo, hi), k, d, s in
                 zip(in_hw, self.pads, self.window, self.dilation, self.strides))


def _geom(x, window, strides, padding, dilation, groups=1) -> _Geom:
  window, strides, dilation = _pair(window), _pair(strides), _pair(dilation)
  return _Geom(window, strides, dilation,
               _pads(padding, x.shape[1:3], window, strides, dilation), groups)


def _pad(x, pads, value=0.):
  cfg = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in pads] + [(0, 0, 0)]
  return lax.pad(x, jnp.asarray(value, x.dtype), cfg)


def _taps(xp, g: _Geom, in_hw):
  """The kh*kw shifted (strided, dilated) views of padded x, in HWIO tap order."""
  (oh, ow), (sh, sw), (dh, dw) = g.out_hw(in_hw), g.strides, g.dilation
  n, c = xp.shape[0], xp.shape[-1]
  return [lax.slice(xp, (0, i * dh, j * dw, 0),
                    (n, i * dh + (oh - 1) * sh + 1, j * dw + (ow - 1) * sw + 1, c),
                    (1, sh, sw, 1))
          for i in range(g.window[0]) for j in range(g.window[1])]


# ------------------------------------------------------------- formulations


def _xla(x, w, g: _Geom):
  return lax.conv_general_dilated(x, w, g.strides, g.pads, rhs_dilation=g.dilation,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=g.groups)


def _im2col(x, w, g: _Geom):
  """Gather the taps on the channel axis and contract them in one matmul."""
  taps = _taps(_pad(x, g.pads), g, x.shape[1:3])
  kh, kw, cg, cout = w.shape
  if g.groups == 1:
    return jnp.dot(jnp.concatenate(taps, -1), w.reshape(kh * kw * cg, cout))
  p = jnp.stack(taps, 3)
  p = p.reshape(p.shape[:4] + (g.groups, cg))
  y = jnp.einsum('nhwkgc,kcgo->nhwgo', p, w.reshape(kh * kw, cg, g.groups, -1))
  return y.reshape(y.shape[:3] + (cout,))


def _pointwise(x, w, g: _Geom):
  """1x1 conv: pad, subsample, one matmul (block-diagonal einsum for groups)."""
  x = _taps(_pad(x, g.pads), g, x.shape[1:3])[0]
  if g.groups == 1:
    return jnp.dot(x, w[0, 0])
  xg = x.reshape(x.shape[:3] + (g.groups, -1))
  y = jnp.einsum('nhwgc,cgo->nhwgo', xg, w[0, 0].reshape(w.shape[2], g.groups, -1))
  return y.reshape(y.shape[:3] + (w.shape[-1],))


def _depthwise(x, w, g: _Geom):
  """groups == Cin: sum over taps of shifted slice * per-channel weight."""
  cin, cout = x.shape[-1], w.shape[-1]
  if cout != cin:  # channel multiplier: output o reads input o // m
    x = jnp.repeat(x, cout // cin, axis=-1)
  taps = _taps(_pad(x, g.pads), g, x.shape[1:3])
  ws = w.reshape(-1, cout)
  y = taps[0] * ws[0]
  for t, wt in zip(taps[1:], ws[1:]):
    y = y + t * wt
  return y


def _chunked(fn, x, w, g: _Geom, chunk=None):
  """fn(x, w, g) applied a few images at a time (lax.map), each chunk under
  jax.checkpoint: the backward pass regathers a chunk's taps instead of storing
  all of them, so they are built and consumed while still in cache (memory
  traffic, not FLOPs, dominates these ops on CPU)."""
  if chunk is None:
    oh, ow = g.out_hw(x.shape[1:3])
    taps = oh * ow * g.window[0] * g.window[1] * max(x.shape[-1], w.shape[-1])
    chunk = max(1, _CHUNK_BYTES // (taps * x.dtype.itemsize))
  if chunk >= x.shape[0]:
    return fn(x, w, g)
  body = jax.checkpoint(functools.partial(fn, g=g))
  m = x.shape[0] // chunk * chunk
  y = lax.map(lambda xc: body(xc, w), x[:m].reshape((-1, chunk) + x.shape[1:]))
  y = y.reshape((m,) + y.shape[2:])
  return y if m == x.shape[0] else jnp.concatenate([y, body(x[m:], w)])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _mixed(x, w, g: _Geom):
  return _xla(x, w, g)


@_mixed.defjvp
def _mixed_jvp(g, primals, tangents):
  """Output and x-tangent via XLA; the kernel-tangent term via chunked im2col, so
  its transpose (the kernel gradient) is a scan of small patch^T @ dy matmuls
  instead of XLA's whole-image-window weight-gradient convolution."""
  (x, w), (dx, dw) = primals, tangents
  return _xla(x, w, g), _xla(dx, w, g) + _chunked(_im2col, x, dw, g)


# --------------------------------------------------------------- public ops


def conv2d(x, kernel, strides=1, padding: Padding = 'SAME', dilation=1, groups=1,
           impl: Optional[str] = None):
  """NHWC x HWIO conv, equal to lax.conv_general_dilated (see module doc)."""
  g = _geom(x, kernel.shape[:2], strides, padding, dilation, groups)
  impl = _resolve(impl)
  cin, cout = x.shape[-1], kernel.shape[-1]
  if kernel.shape[2] * groups != cin or cout % groups:
    raise ValueError(f'kernel {kernel.shape} does not fit {cin} input channels '
                     f'in {groups} groups')
  if impl == 'xla':
    return _xla(x, kernel, g)
  if g.window == (1, 1):
    return _pointwise(x, kernel, g)
  if groups == cin and groups > 1:
    return _chunked(_depthwise, x, kernel, g)
  if impl == 'mixed':
    return _mixed(x, kernel, g)
  return _chunked(_im2col, x, kernel, g)


def _pool_geom(x, window, strides, padding):
  return _geom(x, window, strides, padding, 1)


def max_pool(x, window=3, strides=1, padding: Padding = 'SAME',
             impl: Optional[str] = None):
  """NHWC max pool equal to flax.linen.max_pool (padding never wins: -inf)."""
  g = _pool_geom(x, window, strides, padding)
  if _resolve(impl) == 'xla':
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + g.window + (1,),
                             (1,) + g.strides + (1,), ((0, 0),) + g.pads + ((0, 0),))
  taps = _taps(_pad(x, g.pads, -jnp.inf), g, x.shape[1:3])
  return functools.reduce(jnp.maximum, taps)


def avg_pool(x, window=3, strides=1, padding: Padding = 'SAME',
             count_include_pad: bool = False, impl: Optional[str] = None):
  """NHWC average pool equal to flax.linen.avg_pool.

  count_include_pad=False (DARTS) divides by the number of real (unpadded)
  elements in each window, a constant computed at trace time.
  """
  g = _pool_geom(x, window, strides, padding)
  if _resolve(impl) == 'xla':
    dims, strd = (1,) + g.window + (1,), (1,) + g.strides + (1,)
    total = lax.reduce_window(x, 0., lax.add, dims, strd, ((0, 0),) + g.pads + ((0, 0),))
  else:
    total = sum(_taps(_pad(x, g.pads), g, x.shape[1:3]))
  if count_include_pad:
    return total / (g.window[0] * g.window[1])
  ones = np.pad(np.ones(x.shape[1:3], np.float32), g.pads)[None, ..., None]
  count = sum(_taps(ones, g, x.shape[1:3]))
  return total / count.astype(x.dtype)


# ------------------------------------------------------------- Flax module


class Conv(nn.Module):
  """Drop-in for flax.linen.Conv (2-D, NHWC; same 'kernel'/'bias' params) that
  routes through conv2d.  Note use_bias defaults to False here (BN follows)."""
  features: int
  kernel_size: Union[int, Sequence[int]] = (3, 3)
  strides: Union[int, Sequence[int]] = 1
  padding: Padding = 'SAME'
  kernel_dilation: Union[int, Sequence[int]] = 1
  feature_group_count: int = 1
  use_bias: bool = False
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros_init()
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  impl: Optional[str] = None

  @nn.compact
  def __call__(self, x):
    kh, kw = _pair(self.kernel_size)
    shape = (kh, kw, x.shape[-1] // self.feature_group_count, self.features)
    kernel = self.param('kernel', self.kernel_init, shape, self.param_dtype)
    bias = (self.param('bias', self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias else None)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, self.strides, self.padding, self.kernel_dilation,
               self.feature_group_count, self.impl)
    return y if bias is None else y + bias
