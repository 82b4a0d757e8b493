"""The 14 RandAugment-style operations of DHA, batched, in pure JAX.

Every op follows PIL (the reference DHA/RandAugment use) with magnitude
m in [-1, 1]: |m| is the strength (m = 0 is the identity) and the sign a
direction where the op has one. AutoContrast, Equalize and Identity take no
magnitude (docs/method.md section 2): they ignore m and are applied at full
strength, exactly PIL's ``ImageOps.autocontrast`` / ``ImageOps.equalize``
(no blending), as in timm's RandAugment and the reference DHA; so m = 0 is
the identity for every op but these two.

Each image of a batch gets its own op, yet no image pays for all 14. The
ops fall into three groups, each one cheap batch-wide kernel that leaves
the other groups' images untouched:

* geometric: one bilinear warp (other images get the identity matrix);
* enhance: one blend ``degenerate + f (image - degenerate)``;
* table: one 256-entry lookup per image and channel (AutoContrast,
  Equalize, Posterize, Solarize; their tables: pil_tables.py).

Running the three kernels in turn applies every image's op. An op
registers itself in its group (``register``: a Rotate is its matrix, a
Posterize its table), so a new op is one function and one decorator. The
enhance and table ops work on 8-bit levels round(255 x) and reproduce PIL's uint8
results exactly, returned as level * (1/255) (XLA's form of level / 255,
within one float32 ulp of it); the warp differs from PIL only in keeping
its float result rather than truncating to 8 bits.
"""

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.augment import geometry, pil_tables
from dha_jax.core import registry

# The papers' 14 ops, in the order of tau's axes and of every checkpoint's policy.ops:
# config.policy.ops's default, written out so that registering another op changes no
# existing run. They register below in this order, so their indices stay 0-13.
OP_NAMES = (
    'AutoContrast', 'Equalize', 'Rotate', 'Posterize', 'Solarize', 'Color',
    'Contrast', 'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX',
    'TranslateY', 'Identity',
)
KINDS = ('geometric', 'enhance', 'table', 'identity')


class Op(NamedTuple):
  """A registered op: its kernel group and what that kernel needs from it.
  geometric: fn(m, height, width) -> [N, 2, 3] PIL affine matrices;
  enhance: fn(q, gray) -> the image ImageEnhance blends towards (None: black);
  table: fn(m, hist, lo, hi) -> [N, C or 1, 256] new level of each level;
  identity: fn is None."""
  name: str
  kind: str
  fn: Optional[Callable]
  index: int


_OPS = registry.Registry('config.policy.ops')  # name -> Op; an op's index is its position


def register(name, kind, fn=None):
  """Registers op `name` of kernel group `kind` (KINDS): a new op is one function and
  this decorator, `@register('Invert', 'table')`; ops.apply's index of it is
  `index(name)`. Usable as a decorator or a call (identity ops have no function)."""
  if kind not in KINDS:
    raise ValueError(f'op {name!r}: kind {kind!r} is not one of {", ".join(KINDS)}')
  if fn is None and kind != 'identity':
    return lambda f: register(name, kind, f)
  if fn is not None and kind == 'identity':
    raise ValueError(f'op {name!r}: an identity op takes no function')
  _OPS.register(name)(Op(name, kind, fn, len(_OPS)))
  return fn


def unregister(name):
  """Removes a registered op that is not one of the papers' 14 (tests' toy ops): the
  later ops keep no gap, so only the last registered may go."""
  if name in OP_NAMES or registered()[-1] != name:
    raise ValueError(f'op {name!r}: only the last registered op outside OP_NAMES can be '
                     'unregistered')
  _OPS.unregister(name)


def registered() -> tuple:
  """Every registered op's name, in index order (OP_NAMES first)."""
  return tuple(op.name for op in _OPS.in_order())


def index(name) -> int:
  """The int ops.apply takes for op `name`."""
  return _OPS.get(name).index


def _of_kind(kind):
  return [op for op in _OPS.in_order() if op.kind == kind]


# ImageEnhance factor is 1 + 0.9 m. 0.9 is split into two float32 parts so
# the float32 factor rounds like PIL's (double 1 + 0.9 m, cast to float).
_ENHANCE_HI = np.float32(0.9)
_ENHANCE_LO = np.float32(0.9 - float(_ENHANCE_HI))


def _op_is(ops, kind):
  """Per-image [N] mask: the image's op is of kernel group ``kind``."""
  return jnp.any(ops[:, None] == jnp.array([op.index for op in _of_kind(kind)]), axis=1)


def _per_image(values, ndim):
  """Reshapes [N] values to broadcast against an ndim-array batch."""
  return values.reshape(values.shape + (1,) * (ndim - 1))


def _pil_blend(base, other, weight):
  """PIL's float32 ``base + weight * (other - base)`` for integer levels.
  XLA on CPU fuses a multiply feeding an add into one fused multiply-add,
  skipping the product's own rounding, which can move PIL's truncated
  result by a level. With the weight split into two halves of 12
  significant bits both partial products are exact, so the only
  roundings left are PIL's: the product's and the sum's.
  """
  bits = jax.lax.bitcast_convert_type(weight, jnp.uint32)
  high = jax.lax.bitcast_convert_type(bits & np.uint32(0xFFFFF000), jnp.float32)
  low = weight - high
  diff = other - base
  return base + (high * diff + low * diff)


# ----------------------------------------------------------------- geometry


def _geometry_matrices(ops, m, height, width):
  """[N, 2, 3] PIL affine matrix of each image (identity if not geometric)."""
  candidates = [(op.index, op.fn(m, height, width)) for op in _of_kind('geometric')]
  matrices = geometry.identity(m)
  for k, matrix in candidates:
    matrices = jnp.where(_per_image(ops == k, 3), matrix, matrices)
  return matrices


# ------------------------------------------------------------------ enhance
# Levels below are float32 arrays holding integers 0..255.


def _luminance(q):
  """PIL's RGB -> L, (19595 R + 38470 G + 7471 B + 2^15) >> 16, keepdims.
  Every partial sum stays below 2^24, so float32 is exact.
  """
  if q.shape[-1] == 1:
    return q
  weighted = q[..., 0:1] * 19595 + q[..., 1:2] * 38470 + q[..., 2:3] * 7471
  return jnp.floor((weighted + 32768) / 65536)


def _mean_level(gray):
  """PIL's int(mean + 0.5) of an L image, per image, as [N, 1, 1, 1].
  Sums in int32 and rounds half up with integer arithmetic (PIL's double
  division is exact enough to round the same way).
  """
  pixels = gray.shape[1] * gray.shape[2]
  total = jnp.sum(gray.astype(jnp.int32), axis=(1, 2, 3), keepdims=True)
  return ((2 * total + pixels) // (2 * pixels)).astype(jnp.float32)


def _smooth(q):
  """PIL's ImageFilter.SMOOTH: 3x3 weights 1, centre 5, divided by 13.
  The interior is rounded half-up (S / 13 never ends in .5, so float32 is
  exact); PIL copies the one-pixel border unchanged.
  """
  _, height, width, _ = q.shape
  total = 4 * q[:, 1:-1, 1:-1]
  for dy in range(3):
    for dx in range(3):
      total = total + q[:, dy:dy + height - 2, dx:dx + width - 2]
  interior = jnp.floor(total / 13 + 0.5)
  interior = jnp.pad(interior, ((0, 0), (1, 1), (1, 1), (0, 0)))
  border = np.ones((height, width, 1), bool)
  border[1:-1, 1:-1] = False
  return jnp.where(border, q, interior)


def _degenerate(q, ops):
  """The image ImageEnhance blends towards, chosen per image (each enhance op's
  function; None is black)."""
  gray = _luminance(q)
  choices = [(op.index, op.fn(q, gray)) for op in _of_kind('enhance')]
  degenerate = jnp.zeros_like(q)  # black, and unused for other ops.
  for k, value in choices:
    if value is not None:
      degenerate = jnp.where(_per_image(ops == k, 4), value, degenerate)
  return degenerate


def _enhance(q, ops, m):
  """PIL Image.blend(degenerate, image, 1 + 0.9 m) on levels.
  PIL evaluates ``d + f (x - d)`` in float32, clips to 0..255 and
  truncates; the same float32 steps give the same levels.
  """
  factor = (1.0 + m * _ENHANCE_HI) + m * _ENHANCE_LO
  degenerate = _degenerate(q, ops)
  blended = _pil_blend(degenerate, q, _per_image(factor, 4))
  return jnp.floor(jnp.clip(blended, 0, 255))


def _table(q, ops, m):
  """[N, C, 256] float32 table of each image's table op (else identity).
  The choice is a one-hot contraction, not a select: XLA fuses whatever
  computes a gather's operand into the gather, so a select-built table
  would be rebuilt for every pixel looked up, while a dot is computed
  once.
  """
  shape = (q.shape[0], q.shape[-1], 256)
  hist = pil_tables.histogram(q.astype(jnp.int32))
  # Lowest and highest level present, [N, C, 1] (cheaper than min / max).
  present = hist > 0
  lo = jnp.argmax(present, axis=2)[..., None]
  hi = 255 - jnp.argmax(present[..., ::-1], axis=2)[..., None]
  table_ops = _of_kind('table')
  candidates = jnp.stack([jnp.broadcast_to(pil_tables.LEVELS, shape)] +  # every non-table op
                         [jnp.broadcast_to(op.fn(m, hist, lo, hi), shape) for op in table_ops],
                         axis=1).astype(jnp.float32)
  kind = jnp.zeros_like(ops)
  for k, op in enumerate(table_ops, start=1):
    kind = jnp.where(ops == op.index, k, kind)
  choice = jax.nn.one_hot(kind, candidates.shape[1], dtype=jnp.float32)
  return jnp.einsum('nk,nkcl->ncl', choice, candidates)


def _look_up(q, table):
  """out[n, h, w, c] = table[n, c, q[n, h, w, c]], as one flat gather."""
  n, _, _, c = q.shape
  rows = jnp.arange(n * c).reshape(n, 1, 1, c)
  return table.reshape(-1)[rows * 256 + q.astype(jnp.int32)]


# ----------------------------------------------- the papers' 14, in OP_NAMES order
# Magnitude-free (docs/method.md section 2): AutoContrast, Equalize and Identity.


@register('AutoContrast', 'table')
def _autocontrast(m, hist, lo, hi):
  del m, hist
  return pil_tables.autocontrast(lo, hi)


@register('Equalize', 'table')
def _equalize(m, hist, lo, hi):
  del m, lo
  return pil_tables.equalize(hist, hi)


@register('Rotate', 'geometric')
def _rotate(m, height, width):
  return geometry.rotate(m, height, width)


@register('Posterize', 'table')
def _posterize(m, hist, lo, hi):
  del hist, lo, hi
  return pil_tables.posterize(m)


@register('Solarize', 'table')
def _solarize(m, hist, lo, hi):
  del hist, lo, hi
  return pil_tables.solarize(m)


@register('Color', 'enhance')
def _color(q, gray):  # towards the L-converted image
  del q
  return gray


@register('Contrast', 'enhance')
def _contrast(q, gray):  # towards the L image's rounded mean
  del q
  return _mean_level(gray)


@register('Brightness', 'enhance')
def _brightness(q, gray):  # towards black
  del q, gray
  return None


@register('Sharpness', 'enhance')
def _sharpness(q, gray):  # towards the SMOOTH-filtered image
  del gray
  return _smooth(q)


@register('ShearX', 'geometric')
def _shear_x(m, height, width):
  del height, width
  return geometry.shear_x(m)


@register('ShearY', 'geometric')
def _shear_y(m, height, width):
  del height, width
  return geometry.shear_y(m)


@register('TranslateX', 'geometric')
def _translate_x(m, height, width):
  del height
  return geometry.translate_x(m, width)


@register('TranslateY', 'geometric')
def _translate_y(m, height, width):
  del width
  return geometry.translate_y(m, height)


register('Identity', 'identity')
assert registered() == OP_NAMES, 'the 14 must register in OP_NAMES order (their indices)'


# ------------------------------------------------------------------ kernels
# A kernel maps (images, levels, ops, m) to images: it applies its group's
# ops and returns every other image untouched (bit for bit), so running the
# three kernels in sequence applies each image's one op.


def _levels(images):
  """8-bit levels round(255 x) of [0, 1] images, as float32 integers."""
  return jnp.floor(jnp.clip(images, 0.0, 1.0) * 255.0 + 0.5)


def _geometric_kernel(images, levels, ops, m):
  del levels
  height, width = images.shape[1:3]
  warped = geometry.warp(images, _geometry_matrices(ops, m, height, width))
  return jnp.clip(warped, 0.0, 1.0)  # a lerp may round 1 ulp outside


def _enhance_kernel(images, levels, ops, m):
  enhanced = _enhance(levels, ops, m) / 255.0
  return jnp.where(_per_image(_op_is(ops, 'enhance'), 4), enhanced, images)


def _table_kernel(images, levels, ops, m):
  looked_up = _look_up(levels, _table(levels, ops, m)) / 255.0
  return jnp.where(_per_image(_op_is(ops, 'table'), 4), looked_up, images)


_KERNELS = (_geometric_kernel, _enhance_kernel, _table_kernel)


def _run(images, ops, m):
  """Applies stage s's op ops[s, k] with magnitude m[s, k] to image k, for
  stages s = 0, 1, ... in order.
  The stages' kernels are steps of one scan, so each step reads its input
  and the 8-bit levels from memory. Chained as plain expressions, XLA
  fuses producers into consumers and recomputes them per use: a warp's
  input per neighbour read, the levels per 3x3 smoothing tap.
  """
  num_kernels = len(_KERNELS)

  def step(state, index):
    images, levels = state
    stage = index // num_kernels
    images = jax.lax.switch(index % num_kernels, _KERNELS, images, levels,
                            ops[stage], m[stage])
    return (images, _levels(images)), None

  steps = jnp.arange(ops.shape[0] * num_kernels)
  (images, _), _ = jax.lax.scan(step, (images, _levels(images)), steps)
  return images


def _as_stages(*columns, dtype):
  return jnp.stack([jnp.asarray(c, dtype) for c in columns])


# ------------------------------------------------------------------- public


def _check(images, *per_image):
  """Shapes at trace time (no cost in the program): an [N, H, W, 1 or 3] batch and one
  op / magnitude per image."""
  chex.assert_rank(images, 4)
  chex.assert_shape(per_image, (images.shape[0],))
  if images.shape[-1] not in (1, 3):
    raise ValueError(f'ops.apply: images of {images.shape[-1]} channels; the ops are '
                     'defined on grayscale (1) and RGB (3) images')


@jax.jit
def apply(images, ops, magnitudes):
  """Applies op ``ops[k]`` with magnitude ``magnitudes[k]`` to image k.
  images: float32 [N, H, W, C] in [0, 1], C in {1, 3}; ops: int [N]
  ops' indices (index(name); others act as Identity); magnitudes: float [N],
  clipped to [-1, 1] (AutoContrast, Equalize and Identity ignore theirs).
  Returns float32 [N, H, W, C] in [0, 1].
  """
  _check(images, ops, magnitudes)
  m = jnp.clip(_as_stages(magnitudes, dtype=jnp.float32), -1.0, 1.0)
  return _run(jnp.asarray(images, jnp.float32),
              _as_stages(ops, dtype=jnp.int32), m)


@jax.jit
def apply_pair(images, op_a, op_b, mag_a, mag_b):
  """Per image k: op_a[k] with mag_a[k], then op_b[k] with mag_b[k].
  Exactly ``apply(apply(images, op_a, mag_a), op_b, mag_b)``: two warps,
  not one composed warp, so a pair means its ops in sequence (as PIL
  applied twice).
  """
  _check(images, op_a, op_b, mag_a, mag_b)
  m = jnp.clip(_as_stages(mag_a, mag_b, dtype=jnp.float32), -1.0, 1.0)
  return _run(jnp.asarray(images, jnp.float32),
              _as_stages(op_a, op_b, dtype=jnp.int32), m)


if __name__ == '__main__':
  # Timing of the training-step call: python -m dha_jax.augment.ops
  import time

  rng = np.random.default_rng(0)
  n = 128
  args = (rng.uniform(0, 1, (n, 32, 32, 3)).astype(np.float32),
          rng.integers(0, len(OP_NAMES), n).astype(np.int32),
          rng.integers(0, len(OP_NAMES), n).astype(np.int32),
          rng.uniform(-1, 1, n).astype(np.float32),
          rng.uniform(-1, 1, n).astype(np.float32))
  args = jax.device_put(args)
  apply_pair(*args).block_until_ready()
  times = []
  for _ in range(200):
    start = time.perf_counter()
    apply_pair(*args).block_until_ready()
    times.append(time.perf_counter() - start)
  print(f'apply_pair, N={n}, 32x32x3: min {1e3 * min(times):.2f} ms, '
        f'median {1e3 * np.median(times):.2f} ms')
