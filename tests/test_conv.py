"""dha_jax.layers.conv: every formulation equals lax / flax, forward and gradient."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dha_jax.layers import conv

TOL = dict(rtol=1e-5, atol=1e-5)  # float32, outputs and grads are O(1)
# The equality tests run in float64: a float32 kernel gradient sums ~n*h*w terms of size
# O(10), so two correct summation orders already differ by ~1e-5 (and which order XLA picks
# depends on the host CPU); in float64 a wrong formulation still differs by O(1).
TOL64 = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture
def small_chunks(monkeypatch):
  """2 images per chunk: batch 5 runs 2 lax.map steps + a remainder."""
  monkeypatch.setattr(conv, '_chunked', functools.partial(conv._chunked, chunk=2))


def _rand(seed, shape, scale=1., dtype=jnp.float32):
  """numpy, not jax.random: every new shape would cost a PRNG compile."""
  return jnp.asarray(scale * np.random.RandomState(seed).randn(*shape), dtype)


def _run(fn, *args):
  """jit + run, compiled at LLVM -O0: the suite is compile-bound and -O0 halves it."""
  return jax.jit(fn).lower(*args).compile(
      compiler_options={'xla_backend_optimization_level': 0})(*args)


def _lax_conv(x, w, strides, padding, dilation, groups):
  pads = conv._pads(padding, x.shape[1:3], w.shape[:2], conv._pair(strides),
                    conv._pair(dilation))
  return lax.conv_general_dilated(x, w, conv._pair(strides), pads,
                                  rhs_dilation=conv._pair(dilation),
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=groups)


def _value_and_grads(fn, x, w):
  """(y, d<y, r>/dx, d<y, r>/dw) for a fixed random r: a random linear functional."""
  r = _rand(9, jax.eval_shape(fn, x, w).shape, dtype=x.dtype)
  y, vjp = jax.vjp(fn, x, w)
  return (y,) + vjp(r)


# (kernel, stride, dilation, padding, groups, cin, cout); groups=-1 means depthwise.
DENSE = [(k, s, d, 'SAME', 1, 3, 5) for k in (1, 3, 5, 7) for s in (1, 2) for d in (1, 2)]
DEPTHWISE = [(k, s, d, 'SAME', -1, 4, 4) for k in (3, 5, 7) for s in (1, 2) for d in (1, 2)]
OTHER = [
    (3, 1, 1, 1, 1, 3, 5), (3, 2, 1, 1, 1, 3, 5), (5, 1, 2, 4, -1, 4, 4),
    (3, 2, 1, ((0, 1), (2, 0)), 1, 3, 5), (3, 1, 2, ((2, 2), (1, 3)), -1, 4, 4),
    (3, 1, 1, 'VALID', 1, 3, 5), (7, 2, 1, 'VALID', 1, 3, 5), (1, 2, 1, 1, 1, 3, 5),
    (3, 2, 1, 'SAME', 2, 4, 6),  # grouped, not depthwise
    (1, 1, 1, 'SAME', 2, 4, 6),  # grouped 1x1
    (3, 1, 1, 'SAME', -1, 4, 8),  # depthwise with channel multiplier 2
    (3, 1, 1, 'SAME', 1, 1, 4),  # single input channel (groups=1 == cin)
]


def _impls(cases):
  """'mixed' differs from 'im2col' only for dense/grouped k>1; auto/xla spot-checked."""
  for c in cases:
    yield ('im2col',) + c
    if c[0] > 1 and c[4] != -1:
      yield ('mixed',) + c
  for c in OTHER[:4]:
    yield ('auto',) + c
    yield ('xla',) + c


@pytest.mark.parametrize('impl,k,s,d,padding,groups,cin,cout',
                         list(_impls(DENSE + DEPTHWISE + OTHER)))
def test_conv_matches_lax(impl, k, s, d, padding, groups, cin, cout):
  groups = cin if groups == -1 else groups
  n, hw = 5, (9, 10)  # odd size: stride-2 SAME pads asymmetrically
  with jax.enable_x64(True):
    x = _rand(0, (n,) + hw + (cin,), dtype=jnp.float64)
    w = _rand(1, (k, k, cin // groups, cout), (k * k * cin / groups) ** -.5, jnp.float64)
    args = (s, padding, d, groups)
    got, want = _run(lambda x, w: (  # one compile per test
        _value_and_grads(lambda a, b: conv.conv2d(a, b, *args, impl=impl), x, w),
        _value_and_grads(lambda a, b: _lax_conv(a, b, *args), x, w)), x, w)
  chex.assert_trees_all_equal_shapes(got, want)
  chex.assert_shape(got[0], (n, None, None, cout))
  chex.assert_trees_all_equal_dtypes(got, want)
  assert got[0].dtype == jnp.float64
  chex.assert_trees_all_close(got, want, **TOL64)


CHUNKED = [('im2col', 3, 1, 1, 'SAME', 1, 3, 5), ('mixed', 3, 2, 2, 'SAME', 1, 3, 5),
           ('mixed', 3, 2, 1, 'SAME', 2, 4, 6), ('im2col', 5, 2, 1, 'SAME', -1, 4, 4),
           ('im2col', 3, 1, 2, 'SAME', -1, 4, 8)]


@pytest.mark.parametrize('impl,k,s,d,padding,groups,cin,cout', CHUNKED)
def test_conv_chunked_matches_lax(small_chunks, impl, k, s, d, padding, groups, cin, cout):
  del small_chunks
  test_conv_matches_lax(impl, k, s, d, padding, groups, cin, cout)


def test_mixed_supports_forward_mode_and_second_order():
  """custom_jvp (not custom_vjp): jvp, grad-of-grad and forward-over-reverse work,
  as do gradients w.r.t. one argument (the other's tangent is a symbolic zero)."""
  x, w = _rand(0, (3, 8, 8, 3)), _rand(1, (3, 3, 3, 4), .2)
  tx, tw = _rand(2, x.shape), _rand(3, w.shape)

  def all_modes(x, w, impl):
    f = lambda x, w: jnp.sum(jnp.tanh(conv.conv2d(x, w, 2, impl=impl)))
    g = jax.grad(f, argnums=(0, 1))
    return (jax.jvp(f, (x, w), (tx, tw)),
            jax.grad(f, argnums=0)(x, w), jax.grad(f, argnums=1)(x, w),
            jax.jvp(g, (x, w), (tx, tw)),  # Hessian-vector product
            jax.grad(lambda x, w: jnp.sum(g(x, w)[1] ** 2), argnums=(0, 1))(x, w))

  got, want = _run(lambda x, w: (all_modes(x, w, 'mixed'), all_modes(x, w, 'xla')), x, w)
  chex.assert_trees_all_close(got, want, rtol=1e-4, atol=1e-4)


POOLS = [(3, 1, 'SAME'), (3, 2, 'SAME'), (2, 2, 'VALID'), (3, 2, 'VALID'), (3, 1, 1),
         (3, 2, ((1, 0), (0, 2))), (5, 1, 'SAME')]


def _pools():
  for c in POOLS:
    yield from (('im2col', 'max') + c, ('im2col', 'avg') + c)
  for c in POOLS[:2]:
    yield from (('im2col', 'avg_incl') + c, ('xla', 'max') + c, ('xla', 'avg') + c)


@pytest.mark.parametrize('impl,pool,window,strides,padding', list(_pools()))
def test_pool_matches_flax(impl, pool, window, strides, padding):
  x = _rand(2, (2, 9, 10, 3))  # continuous values: no ties for max's gradient
  flax_pad = conv._pads(padding, x.shape[1:3], (window,) * 2, (strides,) * 2, (1, 1))
  if pool == 'max':
    ours = lambda a: conv.max_pool(a, window, strides, padding, impl=impl)
    ref = lambda a: nn.max_pool(a, (window,) * 2, (strides,) * 2, flax_pad)
  else:
    incl = pool == 'avg_incl'
    ours = lambda a: conv.avg_pool(a, window, strides, padding, incl, impl=impl)
    ref = lambda a: nn.avg_pool(a, (window,) * 2, (strides,) * 2, flax_pad,
                                count_include_pad=incl)
  r = _rand(3, jax.eval_shape(ref, x).shape)
  both = lambda f, a: (f(a), jax.grad(lambda b: jnp.sum(f(b) * r))(a))
  got, want = _run(lambda a: (both(ours, a), both(ref, a)), x)
  chex.assert_trees_all_equal_shapes(got, want)
  chex.assert_trees_all_close(got, want, **TOL)


@pytest.mark.parametrize('kw', [
    dict(features=6, kernel_size=(3, 3), strides=2, padding='SAME', use_bias=True),
    dict(features=4, kernel_size=(5, 5), kernel_dilation=2, feature_group_count=4),
    dict(features=5, kernel_size=(1, 1), padding='VALID', use_bias=True),
])
def test_flax_module_is_drop_in(kw):
  x = _rand(4, (2, 9, 9, 4))
  ours, ref = conv.Conv(**kw), nn.Conv(**dict(dict(use_bias=False), **kw))
  key = jax.random.PRNGKey(5)
  p_ours, p_ref = _run(lambda k: (ours.init(k, x), ref.init(k, x)), key)
  chex.assert_trees_all_equal_shapes(p_ours, p_ref)
  chex.assert_trees_all_close(p_ours, p_ref)  # same default init, same names
  got, want = _run(lambda p: (ours.apply(p, x), ref.apply(p, x)), p_ref)
  chex.assert_trees_all_close(got, want, **TOL)


def test_flax_module_positional_and_impl():
  x = _rand(4, (2, 8, 8, 3))
  m = conv.Conv(4, (3, 3), 2, impl='im2col')
  p = jax.eval_shape(m.init, jax.random.PRNGKey(0), x)
  chex.assert_shape(p['params']['kernel'], (3, 3, 3, 4))
  chex.assert_shape(jax.eval_shape(m.apply, p, x), (2, 4, 4, 4))


def test_impl_names():
  assert conv.get_default_impl() == 'auto'
  with conv.use_impl('xla'):
    assert conv.get_default_impl() == 'xla'
  assert conv.get_default_impl() == 'auto'
  for bad in (lambda: conv.set_default_impl('cudnn'),
              lambda: conv.conv2d(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), impl='fast'),
              lambda: conv.max_pool(jnp.ones((1, 4, 4, 1)), impl='nope')):
    with pytest.raises(ValueError, match="allowed: auto, xla, im2col, mixed"):
      bad()
  with pytest.raises(ValueError):
    with conv.use_impl('bogus'):
      pass
  assert conv.get_default_impl() == 'auto'
  assert conv._resolve('auto') == ('mixed' if jax.default_backend() == 'cpu' else 'xla')
