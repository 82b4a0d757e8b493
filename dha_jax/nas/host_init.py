"""A network's variables with Flax's default initializers, filled on the host (numpy).

Initialising a supernet on a CPU costs a compile per random draw: eager, one per
parameter shape (the DARTS supernet 25-45 s; 118 compiles, 12.7 s for the suite's 2-layer
DSNAS supernet); jit-compiled as one program, ~50 ms of compile per draw (the DARTS
supernet 5-9 minutes). Here the shapes come from one abstract trace and numpy fills them:
the same distributions as Flax's defaults, not the same numbers.
"""

import contextlib
import threading

import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.core import compile_cache
from dha_jax.layers import conv


def _leaf(path, shape, gen):
  """Flax's defaults for the leaves these networks have: lecun_normal kernels (truncated
  normal at 2 std, fan_in = prod(shape[:-1])), zero biases / means, unit scales / vars."""
  name = path[-1]
  if name == 'kernel':
    z = gen.standard_normal(shape)
    while np.any(np.abs(z) > 2):
      bad = np.abs(z) > 2
      z[bad] = gen.standard_normal(int(bad.sum()))
    return (z * (1.0 / np.sqrt(np.prod(shape[:-1]))) / .87962566103423978).astype(np.float32)
  if name in ('bias', 'mean'):
    return np.zeros(shape, np.float32)
  if name in ('scale', 'var'):
    return np.ones(shape, np.float32)
  raise ValueError(f'no initializer for {"/".join(path)}')


_ABSTRACT = threading.local()


@contextlib.contextmanager
def abstract():
  """Inside, a traced key gives zeros of the variables' shapes: for jax.eval_shape of a
  whole state (train.setup(abstract=True)), where only the shapes are read."""
  _ABSTRACT.on = True
  try:
    yield
  finally:
    _ABSTRACT.on = False


def variables(init, rng, *args, key=None):
  """The variables `init(*args)` (a Flax init at a fixed key) would create, drawn from a
  numpy generator seeded by `rng` (a concrete key). `key`: a repr-able description of
  `init` (e.g. the module), under which its shapes are kept for the next process
  (compile_cache.traced_once; None: traced every time)."""
  trace = lambda: conv.eval_shape(init, *args)
  if key is None:
    shapes = trace()
  else:
    avals = [(a.shape, str(a.dtype)) for a in jax.tree_util.tree_leaves(args)]
    shapes = compile_cache.traced_once('init_shapes', (key, avals), trace)
  if isinstance(rng, jax.core.Tracer):
    if not getattr(_ABSTRACT, 'on', False):
      raise ValueError('host_init.variables draws on the host: call it with a concrete '
                       'key, outside jax.jit (or in host_init.abstract() for shapes only)')
    return jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
  seed = np.asarray(jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key)
                    else rng).astype(np.uint32)
  gen = np.random.default_rng(seed.tolist())
  flat, tree = jax.tree_util.tree_flatten_with_path(shapes)
  leaves = [_leaf(tuple(getattr(k, 'key', k) for k in path), a.shape, gen) for path, a in flat]
  return jax.tree_util.tree_unflatten(tree, [jnp.asarray(v) for v in leaves])
