"""PIL's point operations as 256-entry lookup tables, batched: AutoContrast, Equalize,
Posterize and Solarize with PIL's integer arithmetic (ops.py's table kernel looks them up).
Tables are [N, C, 256] int32 (or [N, 1, 256]): table[n, c, v] is the new level of v.
"""

import jax.numpy as jnp
import numpy as np

POSTERIZE_BITS = 4  # Bits dropped at |m| = 1 (8 - 4 = 4 kept).
LEVELS = np.arange(256, dtype=np.int32)


def floor_divide(a, b):
  """floor(a / b) for integer-valued a and b > 0, in float32.
  Several times cheaper than XLA's integer division on CPU. XLA may turn
  the division into a multiply by 1 / b, so the estimate is corrected with
  its exact remainder (all products stay integers below 2**24).
  """
  a = jnp.asarray(a, jnp.float32)
  b = jnp.asarray(b, jnp.float32)
  quotient = jnp.floor(a / b)
  remainder = a - quotient * b
  return quotient - (remainder < 0) + (remainder >= b)


def _autocontrast_undershoots():
  """Sorted keys (lo * 256 + hi) * 256 + v where PIL's autocontrast is 1 low.
  PIL computes int(v * s - lo * s) with s = 255 / (hi - lo) in doubles.
  That equals floor((v - lo) 255 / (hi - lo)) except where the quotient is
  an exact integer and rounding lands just below it. float32 cannot
  replay double rounding, so those 12094 cases (at most 17 per (lo, hi))
  are listed here, found by replaying PIL's arithmetic in numpy doubles.
  """
  keys = []
  v = np.arange(256)
  for lo in range(255):
    hi = np.arange(lo + 1, 256)[:, None]
    scale = 255.0 / (hi - lo)
    pil = (v * scale + (-lo * scale)).astype(np.int64)
    exact = ((v - lo) * 255) // (hi - lo)
    his, vs = np.nonzero((pil != exact) & (v >= lo) & (v <= hi))
    keys.append((lo * 256 + his + lo + 1) * 256 + vs)
  return np.sort(np.concatenate(keys)).astype(np.int32)


_UNDERSHOOTS = _autocontrast_undershoots()
_MAX_UNDERSHOOTS_PER_PAIR = 17


def autocontrast(lo, hi):
  """PIL ImageOps.autocontrast: per channel, min..max -> 0..255.
  lo, hi: [N, C, 1] int32 lowest and highest level of each channel.
  """
  span = jnp.maximum(hi - lo, 1)
  table = jnp.clip(floor_divide((LEVELS - lo) * 255, span), 0, 255)
  # Take 1 off at the listed levels of this channel's (lo, hi) pair.
  pair = lo * 256 + hi
  keys = jnp.asarray(_UNDERSHOOTS)
  first = jnp.searchsorted(keys, pair * 256)
  near = first + jnp.arange(_MAX_UNDERSHOOTS_PER_PAIR)
  listed = keys[jnp.minimum(near, keys.shape[0] - 1)]  # [N, C, 17]
  rows = jnp.arange(lo.size).reshape(lo.shape)
  low = jnp.zeros(table.size, jnp.int32).at[rows * 256 + listed % 256].add(
      (listed // 256 == pair).astype(jnp.int32))
  table = table.astype(jnp.int32) - low.reshape(table.shape)
  return jnp.where(hi > lo, table, LEVELS)  # PIL leaves flat channels.


def histogram(levels):
  """[N, C, 256] int32 pixel counts per image and channel."""
  n, _, _, c = levels.shape
  rows = jnp.arange(n * c).reshape(n, 1, 1, c)
  bins = (rows * 256 + levels).reshape(-1)
  return jnp.zeros(n * c * 256, jnp.int32).at[bins].add(1).reshape(n, c, 256)


def equalize(hist, hi):
  """PIL ImageOps.equalize per channel, from its [N, C, 256] histogram and
  [N, C, 1] highest levels.
  step = (pixels - count of the top level) // 255; level v maps to
  (step // 2 + #pixels below v) // step; step 0 (which includes a flat
  channel) keeps the channel unchanged. Levels past 255 are clipped, as
  PIL saturates its lut when applying it.
  """
  pixels = jnp.sum(hist, axis=2, keepdims=True)
  step = (pixels - jnp.take_along_axis(hist, hi, axis=2)) // 255
  below = jnp.cumsum(hist, axis=2) - hist
  table = floor_divide(step // 2 + below, jnp.maximum(step, 1))
  return jnp.where(step > 0, jnp.clip(table, 0, 255).astype(jnp.int32), LEVELS)


def posterize(m):
  """PIL ImageOps.posterize keeping 8 - round(4 |m|) bits."""
  dropped = jnp.round(POSTERIZE_BITS * jnp.abs(m)).astype(jnp.int32)
  dropped = dropped[:, None, None]
  return (LEVELS >> dropped) << dropped


def solarize(m):
  """PIL ImageOps.solarize with threshold 256 (1 - |m|)."""
  threshold = (256.0 * (1.0 - jnp.abs(m)))[:, None, None]
  return jnp.where(LEVELS >= threshold, 255 - LEVELS, LEVELS)
