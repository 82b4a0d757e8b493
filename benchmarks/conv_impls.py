"""Forward+backward timings of the conv/pool formulations in dha_jax.layers.conv.

  python -m benchmarks.conv_impls [--quick] [--only=SUBSTRING] [--variants]

Each row: jit(grad(sum(op(x, w) * r))) w.r.t. x and w, min and median of the
repeats after a warm-up call, batch 128 NHWC float32.  On a shared machine the
min is the figure to compare.  '--variants' adds the formulations that were tried
and not kept (to re-check the CPU default on other machines).
"""
# pylint: disable=protected-access

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from dha_jax.layers import conv

flags.DEFINE_bool('quick', False, '3 repeats instead of 10')
flags.DEFINE_bool('variants', False, 'also time rejected variants')
flags.DEFINE_string('only', '', 'run cases whose name contains this')
FLAGS = flags.FLAGS

N = 128


def _conv(impl, **kw):
  return lambda x, w: conv.conv2d(x, w, impl=impl, **kw)


def _variant(fn, strides=1, padding='SAME', dilation=1, groups=1):
  """A private formulation applied through the same geometry as conv2d."""
  return lambda x, w: fn(x, w, conv._geom(x, w.shape[:2], strides, padding, dilation,
                                          groups))


def _im2col_sum(x, w, g):
  """Sum of k*k matmuls of shifted slices (no concatenated patch matrix)."""
  taps = conv._taps(conv._pad(x, g.pads), g, x.shape[1:3])
  return sum(jnp.dot(t, wt) for t, wt in zip(taps, w.reshape(-1, *w.shape[2:])))


def _im2col_onepass(x, w, g):
  """im2col concatenating all k*k taps at once (vs conv._patches' two passes)."""
  taps = conv._taps(conv._pad(x, g.pads), g, x.shape[1:3])
  return jnp.dot(jnp.concatenate(taps, -1), w.reshape(-1, w.shape[-1]))


def _im2col_s2d(x, w, g):
  """Stride 2 via space-to-depth: the 4 pixel phases become contiguous channel
  blocks, so the taps are unit-stride slices of a half-size image."""
  (lo_h, hi_h), (lo_w, hi_w) = g.pads
  xp = conv._pad(x, ((lo_h, hi_h + (x.shape[1] + lo_h + hi_h) % 2),
                     (lo_w, hi_w + (x.shape[2] + lo_w + hi_w) % 2)))
  n, hp, wp, c = xp.shape
  ph = xp.reshape(n, hp // 2, 2, wp // 2, 2, c)
  oh, ow = g.out_hw(x.shape[1:3])
  kh, kw = g.window
  taps = [ph[:, i // 2:i // 2 + oh, i % 2, j // 2:j // 2 + ow, j % 2]
          for i in range(kh) for j in range(kw)]
  return jnp.dot(jnp.concatenate(taps, -1), w.reshape(-1, w.shape[-1]))


def _pool_taps(x, is_max):
  """3x3/1 SAME pool as max / sum of all 9 taps, whole batch at once."""
  g = conv._geom(x, 3, 1, 'SAME', 1)
  taps = conv._taps(conv._pad(x, g.pads, -jnp.inf if is_max else 0.), g, x.shape[1:3])
  return functools.reduce(jnp.maximum, taps) if is_max else sum(taps)


def _chunked(fn, chunk=None, remat=True):
  """fn applied `chunk` images at a time, with or without rematerialisation."""
  def run(x, w, g):
    if remat:
      return conv._chunked(fn, x, w, g, chunk)
    y = lax.map(lambda xc: fn(xc, w, g), x.reshape((-1, chunk) + x.shape[1:]))
    return y.reshape((-1,) + y.shape[2:])
  return run


def _highest(fn):
  def run(*a):
    with jax.default_matmul_precision('highest'):
      return fn(*a)
  return run


def cases(variants):
  """(name, x shape, w shape, {impl: fn(x, w)})."""
  out = []
  for name, xs, ws, kw in [
      ('3x3 32->32 28x28', (N, 28, 28, 32), (3, 3, 32, 32), {}),
      ('3x3 64->64 s2 28x28', (N, 28, 28, 64), (3, 3, 64, 64), {'strides': 2}),
  ]:
    impls = {i: _conv(i, **kw) for i in ('xla', 'im2col', 'mixed')}
    if variants:
      impls['im2col unchunked'] = _variant(conv._im2col, **kw)
      impls['im2col chunk4 no-remat'] = _variant(_chunked(conv._im2col, 4, False), **kw)
      for c in (1, 2, 8, 16):
        impls[f'im2col chunk{c}'] = _variant(_chunked(conv._im2col, c), **kw)
      impls['im2col one-pass concat'] = _variant(_chunked(_im2col_onepass), **kw)
      impls['sum-of-matmuls'] = _variant(_chunked(_im2col_sum), **kw)
      if kw:
        impls['space-to-depth'] = _variant(_chunked(_im2col_s2d), **kw)
      impls['mixed precision=highest'] = _highest(_conv('mixed', **kw))
    out.append((name, xs, ws, impls))
  for name, k, d, s in [('dw 3x3', 3, 1, 1), ('dw 3x3 s2', 3, 1, 2), ('dw 5x5', 5, 1, 1),
                        ('dw 7x7', 7, 1, 1), ('dw 5x5 dil2', 5, 2, 1)]:
    kw = dict(strides=s, dilation=d, groups=64)
    impls = {i: _conv(i, **kw) for i in ('xla', 'im2col')}
    if variants:
      impls['shift unchunked'] = _variant(conv._depthwise, **kw)
      for c in (4, 16):
        impls[f'shift chunk{c}'] = _variant(_chunked(conv._depthwise, c), **kw)
    out.append((name + ' 64ch 28x28', (N, 28, 28, 64), (k, k, 1, 64), impls))
  impls = {i: _conv(i) for i in ('xla', 'im2col')}
  if variants:
    impls['matmul unchunked'] = _variant(conv._im2col)
    impls['matmul chunk8'] = _variant(_chunked(conv._im2col, 8))
  out.append(('1x1 64->128 28x28', (N, 28, 28, 64), (1, 1, 64, 128), impls))
  for name, fn, win, st, pad in [('max_pool 3x3', conv.max_pool, 3, 1, 'SAME'),
                                 ('avg_pool 3x3', conv.avg_pool, 3, 1, 'SAME'),
                                 ('max_pool 2x2/2', conv.max_pool, 2, 2, 'VALID')]:
    impls = {i: (lambda f, i, a: lambda x, w: f(x, *a, impl=i) * w)(fn, i, (win, st, pad))
             for i in ('xla', 'im2col')}
    if variants and win == 3:
      impls['k*k taps unchunked'] = lambda x, w, m=fn is conv.max_pool: _pool_taps(x, m) * w
    out.append((name + ' 64ch 28x28', (N, 28, 28, 64), (64,), impls))
  return out


def time_grad(fn, x, w, repeats):
  r = jnp.asarray(np.random.RandomState(1).randn(*jax.eval_shape(fn, x, w).shape), x.dtype)
  step = jax.jit(jax.grad(lambda x, w, r: jnp.sum(fn(x, w) * r), argnums=(0, 1)))
  jax.block_until_ready(step(x, w, r))
  ts = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(step(x, w, r))
    ts.append(time.perf_counter() - t)
  return 1e3 * min(ts), 1e3 * float(np.median(ts))


def main(argv):
  del argv
  repeats = 3 if FLAGS.quick else 10
  rng = np.random.RandomState(0)
  print(f'backend={jax.default_backend()} devices={jax.device_count()} '
        f'auto={conv._resolve("auto")}  (ms per fwd+bwd, {repeats} repeats)')
  print(f'{"case":30s} {"impl":26s} {"min":>8s} {"median":>8s}')
  for name, xs, ws, impls in cases(FLAGS.variants):
    if FLAGS.only not in name:
      continue
    x = jnp.asarray(rng.randn(*xs), jnp.float32)
    w = jnp.asarray(rng.randn(*ws) / np.sqrt(np.prod(ws[:-1])), jnp.float32)
    for impl, fn in impls.items():
      print(f'{name:30s} {impl:26s} {"%8.1f %8.1f" % time_grad(fn, x, w, repeats)}', flush=True)


if __name__ == '__main__':
  app.run(main)
