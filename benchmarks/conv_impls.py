"""Forward+backward timings of the conv/pool formulations in dha_jax.layers.conv.

  python benchmarks/conv_impls.py [--quick] [--only SUBSTRING] [--variants]

Each row: jit(grad(sum(op(x, w) * r))) w.r.t. x and w, median of repeats after a
warm-up call, batch 128 NHWC float32.  '--variants' adds the formulations that
were tried and not kept (to re-check the CPU default on other machines).
"""

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dha_jax.layers import conv  # pylint: disable=wrong-import-position

N = 128


def _conv(impl, **kw):
  return lambda x, w: conv.conv2d(x, w, impl=impl, **kw)


def _variant(fn, strides=1, padding='SAME', dilation=1, groups=1):
  """A private formulation applied through the same geometry as conv2d."""
  return lambda x, w: fn(x, w, conv._geom(x, w.shape[:2], strides, padding, dilation, groups))  # pylint: disable=protected-access


def _im2col_sum(x, w, g):
  """Sum of k*k matmuls of shifted slices (no concatenated patch matrix)."""
  taps = conv._taps(conv._pad(x, g.pads), g, x.shape[1:3])  # pylint: disable=protected-access
  return sum(jnp.dot(t, wt) for t, wt in zip(taps, w.reshape(-1, *w.shape[2:])))


def _chunked(fn, chunk, remat=True):
  """fn applied `chunk` images at a time (optionally rematerialised)."""
  def run(x, w, g):
    body = functools.partial(fn, g=g)
    body = jax.checkpoint(body) if remat else body
    y = lax.map(lambda xc: body(xc, w), x.reshape((-1, chunk) + x.shape[1:]))
    return y.reshape((-1,) + y.shape[2:])
  return run


def _highest(fn):
  def run(*a):
    with jax.default_matmul_precision('highest'):
      return fn(*a)
  return run


def cases(variants):
  """(name, x shape, w shape, {impl: fn(x, w)})."""
  p = conv  # pylint: disable=protected-access
  out = []
  for name, xs, ws, kw in [
      ('3x3 32->32 28x28', (N, 28, 28, 32), (3, 3, 32, 32), {}),
      ('3x3 64->64 s2 28x28', (N, 28, 28, 64), (3, 3, 64, 64), {'strides': 2}),
  ]:
    impls = {i: _conv(i, **kw) for i in ('xla', 'im2col', 'mixed')}
    if variants:
      kw2 = kw
      impls['im2col unchunked'] = _variant(p._im2col, **kw2)
      impls['im2col chunk4 no-remat'] = _variant(_chunked(p._im2col, 4, False), **kw2)
      impls['im2col chunk2'] = _variant(_chunked(p._im2col, 2), **kw2)
      impls['im2col chunk8'] = _variant(_chunked(p._im2col, 8), **kw2)
      impls['sum-of-matmuls chunk4'] = _variant(_chunked(_im2col_sum, 4), **kw2)
      impls['mixed precision=highest'] = _highest(_conv('mixed', **kw))
    out.append((name, xs, ws, impls))
  for name, k, d, s in [('dw 3x3', 3, 1, 1), ('dw 3x3 s2', 3, 1, 2), ('dw 5x5', 5, 1, 1),
                        ('dw 7x7', 7, 1, 1), ('dw 5x5 dil2', 5, 2, 1)]:
    kw = dict(strides=s, dilation=d, groups=64)
    impls = {i: _conv(i, **kw) for i in ('xla', 'im2col')}
    if variants:
      impls['shift chunk8 remat'] = _variant(_chunked(p._depthwise, 8), **kw)
    out.append((name + ' 64ch 28x28', (N, 28, 28, 64), (k, k, 1, 64), impls))
  impls = {i: _conv(i) for i in ('xla', 'im2col')}
  if variants:
    impls['einsum chunk8'] = _variant(_chunked(p._pointwise, 8, False))
  out.append(('1x1 64->128 28x28', (N, 28, 28, 64), (1, 1, 64, 128), impls))
  for name, fn in [('max_pool 3x3', conv.max_pool), ('avg_pool 3x3', conv.avg_pool)]:
    impls = {i: (lambda f, i: lambda x, w: f(x, 3, 1, 'SAME', impl=i) * w)(fn, i)
             for i in ('xla', 'im2col')}
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
  return 1e3 * float(np.median(ts))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--quick', action='store_true', help='3 repeats instead of 10')
  ap.add_argument('--variants', action='store_true', help='also time rejected variants')
  ap.add_argument('--only', default='', help='run cases whose name contains this')
  args = ap.parse_args()
  repeats = 3 if args.quick else 10
  rng = np.random.RandomState(0)
  print(f'backend={jax.default_backend()} devices={jax.device_count()} '
        f'auto={conv._resolve("auto")}  (ms, fwd+bwd, median of {repeats})')  # pylint: disable=protected-access
  print(f'{"case":30s} {"impl":26s} {"ms":>8s}')
  for name, xs, ws, impls in cases(args.variants):
    if args.only not in name:
      continue
    x = jnp.asarray(rng.randn(*xs), jnp.float32)
    w = jnp.asarray(rng.randn(*ws) / np.sqrt(np.prod(ws[:-1])), jnp.float32)
    for impl, fn in impls.items():
      print(f'{name:30s} {impl:26s} {time_grad(fn, x, w, repeats):8.1f}', flush=True)


if __name__ == '__main__':
  main()
