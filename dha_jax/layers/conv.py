"""2-D convolution and pooling with a per-backend choice of formulation.

XLA's CPU convolution is fast forward but very slow under grad: the kernel
gradient becomes a "convolution" whose window is the whole image, which the CPU
runtime runs naively (~450 ms for one 3x3 32->32 conv, batch 128, 28x28, on 2
cores).  The same kernel gradient as shifted slices + matmuls, a few images at a
time so the gathered patches stay in cache, takes ~40 ms.  Depthwise convs via
``feature_group_count`` (15-20x) and max pooling via ``reduce_window`` (3-4x)
are also slow on CPU, while sums / maxima of shifted slices are fast.  On GPU/TPU
the library convolution (cuDNN, ...) is right, so 'auto' only rewrites on CPU.

Every formulation computes (up to float rounding)
``lax.conv_general_dilated(x, kernel, strides, padding, rhs_dilation=dilation,
dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)``.

impl names:
  'xla'    lax.conv_general_dilated / lax.reduce_window everywhere.
  'im2col' pure-JAX slices, batch-chunked and rematerialised: im2col + one matmul
           (dense / grouped), sum of shifted multiplies (depthwise), matmul (1x1),
           max / sum of shifted slices (pooling).
  'mixed'  as 'im2col', except dense (groups=1) k>1 convs use XLA's forward,
           XLA's input gradient at stride 1, and the chunked im2col kernel
           gradient, joined by a custom_jvp so jvp, grad and grad-of-grad work.
  'auto'   (default) 'mixed' on cpu, 'xla' on gpu/tpu.
"""

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dha_jax.layers import precision, trace_default

IMPLS = ('auto', 'xla', 'im2col', 'mixed')
_CPU_DEFAULT = 'mixed'
# Batch chunks hold about this many bytes of input + output (+ im2col patches). Below
# it an op runs on the whole batch: no loop, whose per-chunk cost dominates small
# tensors. Measured 2026-12-07 on a 2-core EPYC (the Fashion-MNIST config's train step,
# batch 128): 64 MiB against the 3 MiB tuned on single convs (benchmarks/conv_impls.py)
# left the small CNN's step as it was (437 vs 438 ms) and made the 5-cell C=8 ISTA
# search step 1,175 -> 813 ms, its trace + lower 20.3 -> 16.6 s, XLA compile 53.6 ->
# 48.0 s and load from the compilation cache 13.4 -> 9.8 s.
_CHUNK_BYTES = 64 << 20

Pair = Tuple[int, int]
Padding = Union[str, int, Sequence[Tuple[int, int]]]


def _check(name):
  if name not in IMPLS:
    raise ValueError(f'unknown conv impl {name!r}; allowed: {", ".join(IMPLS)}')
  return name


_DEFAULT = trace_default.TraceDefault(_check, 'auto')
# the process-wide impl (read at trace time: use_impl temporarily, jit inside)
set_default_impl, get_default_impl, use_impl = _DEFAULT.set, _DEFAULT.get, _DEFAULT.use


def eval_shape(fn, *args):
  """jax.eval_shape(fn, *args) traced with XLA's own convolution: every formulation gives
  the same shapes, and the CPU ones trace as thousands of slices (a DARTS supernet's
  parameter count: 36 s with 'mixed' here, a few with 'xla')."""
  with use_impl('xla'):
    return jax.eval_shape(fn, *args)


def _resolve(impl: Optional[str]) -> str:
  impl = _check(impl or get_default_impl())
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
    if padding.upper() not in ('SAME', 'VALID'):
      raise ValueError(f'padding must be SAME, VALID, an int or pairs, got {padding!r}')
    out = []
    for n, k, s, d in zip(in_hw, window, strides, dilation):
      total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
      out.append((total // 2, total - total // 2) if padding.upper() == 'SAME' else (0, 0))
    return tuple(out)
  return tuple(tuple(int(v) for v in p) for p in padding)


class _Geom(NamedTuple):
  """Static description of one sliding-window op (hashable: a custom_jvp arg)."""
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


def _shifts(xp, axis, n_out, k, stride, dilation):
  """The k strided views xp[.., i*dilation + stride*o, ..] (o < n_out) along axis."""
  out = []
  for i in range(k):
    start, limit, step = [0] * 4, list(xp.shape), [1] * 4
    start[axis], step[axis] = i * dilation, stride
    limit[axis] = i * dilation + (n_out - 1) * stride + 1
    out.append(lax.slice(xp, start, limit, step))
  return out


def _taps(xp, g: _Geom, in_hw):
  """The kh*kw shifted views of padded x, in HWIO tap order."""
  (oh, ow) = g.out_hw(in_hw)
  rows = _shifts(xp, 1, oh, g.window[0], g.strides[0], g.dilation[0])
  return [t for r in rows for t in _shifts(r, 2, ow, g.window[1], g.strides[1], g.dilation[1])]


def _separable(xp, g: _Geom, in_hw, combine):
  """combine(kw column shifts), then combine(kh row shifts) of that: kh+kw slices
  instead of kh*kw.  For im2col (combine = concat) it compiles ~2.5x faster than
  k*k slices (7x7 + grads: 3.4 s -> 1.3 s); for pools it also halves the work."""
  (oh, ow) = g.out_hw(in_hw)
  cols = combine(_shifts(xp, 2, ow, g.window[1], g.strides[1], g.dilation[1]))
  return combine(_shifts(cols, 1, oh, g.window[0], g.strides[0], g.dilation[0]))


def _concat(ts):
  return jnp.concatenate(ts, -1)


# ------------------------------------------------------------- formulations


def _xla(x, w, g: _Geom):
  return lax.conv_general_dilated(x, w, g.strides, g.pads, rhs_dilation=g.dilation,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=g.groups)


def _im2col(x, w, g: _Geom):
  """Patches [.., kh*kw*Cin] (HWIO order) contracted in one matmul; for groups a
  block-diagonal einsum."""
  p = _separable(_pad(x, g.pads), g, x.shape[1:3], _concat)
  kh, kw, cg, cout = w.shape
  if g.groups == 1:
    return jnp.dot(p, w.reshape(kh * kw * cg, cout))
  p = p.reshape(p.shape[:3] + (kh * kw, g.groups, cg))
  y = jnp.einsum('nhwkgc,kcgo->nhwgo', p, w.reshape(kh * kw, cg, g.groups, -1))
  return y.reshape(y.shape[:3] + (cout,))


def _depthwise(x, w, g: _Geom):
  """groups == Cin: sum over taps of shifted slice * per-channel weight (XLA
  fuses it into one loop; a separable form was 4x slower)."""
  cin, cout = x.shape[-1], w.shape[-1]
  if cout != cin:  # channel multiplier: output o reads input o // m
    x = jnp.repeat(x, cout // cin, axis=-1)
  taps = _taps(_pad(x, g.pads), g, x.shape[1:3])
  return sum(t * wt for t, wt in zip(taps, w.reshape(-1, cout)))


def _max_pool(x, w, g: _Geom):
  """Separable max of shifted slices (2x2/2 too: 5x faster than reshape + max)."""
  del w
  return _separable(_pad(x, g.pads, -jnp.inf), g, x.shape[1:3],
                    lambda ts: functools.reduce(jnp.maximum, ts))


def _sum_pool(x, w, g: _Geom):
  del w
  return _separable(_pad(x, g.pads), g, x.shape[1:3], sum)


def _chunked(fn, x, w, g: _Geom, chunk=None):
  """fn(x, w, g) a few images at a time (lax.map), each chunk under
  jax.checkpoint: the backward pass regathers a chunk's taps instead of storing
  all of them, so they are built and consumed while still in cache (memory
  traffic, not FLOPs, dominates these ops on CPU: 2-4x faster than unchunked)."""
  n = x.shape[0]
  if chunk is None:
    (oh, ow), c_out = g.out_hw(x.shape[1:3]), (x.shape[-1] if w is None else w.shape[-1])
    per_image = x.shape[1] * x.shape[2] * x.shape[-1] + oh * ow * c_out
    if fn is _im2col:
      per_image += oh * ow * g.window[0] * g.window[1] * x.shape[-1]
    chunk = max(1, _CHUNK_BYTES // (per_image * x.dtype.itemsize))
    divisor = max(d for d in range(1, min(chunk, n) + 1) if n % d == 0)
    chunk = divisor if 2 * divisor > chunk else chunk  # avoid a remainder if cheap
  if chunk >= n:
    return fn(x, w, g)
  body = jax.checkpoint(functools.partial(fn, g=g))
  m = n // chunk * chunk
  y = lax.map(lambda xc: body(xc, w), x[:m].reshape((-1, chunk) + x.shape[1:]))
  y = y.reshape((m,) + y.shape[2:])
  return y if m == n else jnp.concatenate([y, body(x[m:], w)])


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _mixed(x, w, g: _Geom):
  return _xla(x, w, g)


def _mixed_jvp(g, primals, tangents):
  """The kernel-tangent term as chunked im2col: its transpose (the kernel
  gradient) is then a scan of small patches^T @ dy matmuls, not XLA's slow
  whole-image-window weight-gradient conv.  XLA's input gradient is fast at
  stride 1 only (strided: an lhs-dilated conv, ~20% slower than im2col).
  Symbolic-zero tangents (e.g. the network input) cost nothing."""
  (x, w), (dx, dw) = primals, tangents
  zero = lambda t: isinstance(t, jax.custom_derivatives.SymbolicZero)
  dx_term = (_xla if g.strides == (1, 1) else functools.partial(_chunked, _im2col))
  terms = []
  if not zero(dx):
    terms.append(dx_term(dx, w, g))
  if not zero(dw):
    terms.append(_chunked(_im2col, x, dw, g))
  y = _xla(x, w, g)
  return y, (sum(terms[1:], terms[0]) if terms else jnp.zeros_like(y))


_mixed.defjvp(_mixed_jvp, symbolic_zeros=True)


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
  if groups == cin and groups > 1 and g.window != (1, 1):
    return _chunked(_depthwise, x, kernel, g)
  if impl == 'mixed' and g.window != (1, 1) and groups == 1:
    return _mixed(x, kernel, g)
  return _chunked(_im2col, x, kernel, g)  # 1x1: patches == x, a plain matmul


def max_pool(x, window=3, strides=1, padding: Padding = 'SAME',
             impl: Optional[str] = None):
  """NHWC max pool equal to flax.linen.max_pool (padding is -inf: never wins)."""
  g = _geom(x, window, strides, padding, 1)
  if _resolve(impl) == 'xla':
    return lax.reduce_window(x, -jnp.inf, lax.max, (1,) + g.window + (1,),
                             (1,) + g.strides + (1,), ((0, 0),) + g.pads + ((0, 0),))
  return _chunked(_max_pool, x, None, g)


def avg_pool(x, window=3, strides=1, padding: Padding = 'SAME',
             count_include_pad: bool = False, impl: Optional[str] = None):
  """NHWC average pool equal to flax.linen.avg_pool.

  count_include_pad=False (DARTS) divides by the number of real (unpadded)
  elements in each window: a constant computed at trace time.
  """
  g = _geom(x, window, strides, padding, 1)
  if _resolve(impl) == 'xla':
    total = lax.reduce_window(x, 0., lax.add, (1,) + g.window + (1,),
                              (1,) + g.strides + (1,), ((0, 0),) + g.pads + ((0, 0),))
  else:
    total = _chunked(_sum_pool, x, None, g)
  if count_include_pad:
    return total / (g.window[0] * g.window[1])
  ones = np.pad(np.ones(x.shape[1:3], np.float32), g.pads)
  count = np.lib.stride_tricks.sliding_window_view(ones, g.window).sum((-2, -1))
  count = count[::g.strides[0], ::g.strides[1]][None, ..., None]
  return total / count.astype(x.dtype)


# ------------------------------------------------------------- Flax module


class Conv(nn.Module):
  """Drop-in for flax.linen.Conv (2-D NHWC; same 'kernel' / 'bias' params and
  default init) that routes through conv2d.  use_bias defaults to False here; dtype None
  means the run's compute dtype (dha_jax/layers/precision.py), params stay float32."""
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
    x, kernel, bias = nn.dtypes.promote_dtype(
        x, kernel, bias, dtype=self.dtype or precision.compute_dtype())
    y = conv2d(x, kernel, self.strides, self.padding, self.kernel_dilation,
               self.feature_group_count, self.impl)
    return y if bias is None else y + bias
