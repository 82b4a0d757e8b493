"""Affine warps with PIL's conventions, batched with one matrix per image.

A matrix here is 2x3 ``[[a, b, c], [d, e, f]]`` exactly as PIL's
``Image.transform(size, AFFINE, (a, b, c, d, e, f))`` reads it: it maps an
OUTPUT point (x, y) to the INPUT point (a x + b y + c, d x + e y + f), in
continuous coordinates where pixel (i, j) has its centre at (j + 0.5, i + 0.5).
The builders below take magnitudes m [N] in [-1, 1] and return [N, 2, 3].
"""

import jax.numpy as jnp

ROTATE_DEGREES = 30.0  # Rotate angle at |m| = 1 (RandAugment range).
SHEAR = 0.3  # Shear coefficient at |m| = 1.
TRANSLATE = 0.45  # Translation at |m| = 1, as a fraction of width / height.
FILL = 0.5  # Gray written where the sample point falls outside the image.


def _matrix(a, b, c, d, e, f):
  """Stacks per-image coefficients (each [N]) into [N, 2, 3] matrices."""
  return jnp.stack([jnp.stack([a, b, c], -1), jnp.stack([d, e, f], -1)], -2)


def identity(m):
  """Identity matrices, one per magnitude (the warp then copies exactly)."""
  zero, one = jnp.zeros_like(m), jnp.ones_like(m)
  return _matrix(one, zero, zero, zero, one, zero)


def rotate(m, height, width):
  """PIL ``Image.rotate(30 m)``: counter-clockwise about (W/2, H/2)."""
  angle = -jnp.deg2rad(ROTATE_DEGREES * m)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  cx, cy = width / 2.0, height / 2.0
  # Rotation about the centre: x_in = R (x_out - centre) + centre.
  c = cx - cos * cx - sin * cy
  f = cy + sin * cx - cos * cy
  return _matrix(cos, sin, c, -sin, cos, f)


def shear_x(m):
  """PIL AFFINE (1, 0.3 m, 0, 0, 1, 0)."""
  zero, one = jnp.zeros_like(m), jnp.ones_like(m)
  return _matrix(one, SHEAR * m, zero, zero, one, zero)


def shear_y(m):
  """PIL AFFINE (1, 0, 0, 0.3 m, 1, 0)."""
  zero, one = jnp.zeros_like(m), jnp.ones_like(m)
  return _matrix(one, zero, zero, SHEAR * m, one, zero)


def translate_x(m, width):
  """PIL AFFINE (1, 0, 0.45 m W, 0, 1, 0): content moves left for m > 0."""
  zero, one = jnp.zeros_like(m), jnp.ones_like(m)
  return _matrix(one, zero, TRANSLATE * width * m, zero, one, zero)


def translate_y(m, height):
  """PIL AFFINE (1, 0, 0, 0, 1, 0.45 m H): content moves up for m > 0."""
  zero, one = jnp.zeros_like(m), jnp.ones_like(m)
  return _matrix(one, zero, zero, zero, one, TRANSLATE * height * m)


def _bilinear_corners(x, y, height, width):
  """Row-major indices of the 4 edge-clamped neighbours of index point
  (x, y), and the fractional offsets, as PIL's bilinear filter picks them."""
  x0, y0 = jnp.floor(x), jnp.floor(y)
  dx, dy = x - x0, y - y0
  x0, y0 = x0.astype(jnp.int32), y0.astype(jnp.int32)
  xa, xb = jnp.clip(x0, 0, width - 1), jnp.clip(x0 + 1, 0, width - 1)
  ya = jnp.clip(y0, 0, height - 1) * width
  yb = jnp.clip(y0 + 1, 0, height - 1) * width
  return (ya + xa, ya + xb, yb + xa, yb + xb), dx[..., None], dy[..., None]


def warp(images, matrices):
  """Bilinear pull-warp of a batch [N, H, W, C] by [N, 2, 3] PIL matrices.
  PIL fills every output pixel whose sample point lies outside
  [0, W) x [0, H) and, inside, interpolates edge-clamped neighbours as
  ``a + (b - a) d`` (so an identity matrix returns the image exactly).
  dm-pix's flat_nd_linear_interpolate does the same clamped interpolation
  but channel by channel with N-d index bookkeeping, about 3x slower on
  CPU than these four row gathers.
  """
  n, height, width, c = images.shape
  rows = jnp.arange(height, dtype=jnp.float32)[:, None] + 0.5
  cols = jnp.arange(width, dtype=jnp.float32)[None, :] + 0.5
  coef = matrices[:, :, :, None, None]
  x_in = coef[:, 0, 0] * cols + coef[:, 0, 1] * rows + coef[:, 0, 2]
  y_in = coef[:, 1, 0] * cols + coef[:, 1, 1] * rows + coef[:, 1, 2]
  inside = (x_in >= 0) & (x_in < width) & (y_in >= 0) & (y_in < height)
  # Continuous coordinates -> array indices (pixel centres at integers).
  corners, dx, dy = _bilinear_corners(x_in - 0.5, y_in - 0.5, height, width)
  # One flat gather per neighbour, each fetching a pixel's C channels.
  pixels = images.reshape(n * height * width, c)
  image_start = (jnp.arange(n) * (height * width))[:, None, None]
  v00, v01, v10, v11 = (pixels[image_start + k] for k in corners)
  top = v00 + (v01 - v00) * dx
  bottom = v10 + (v11 - v10) * dx
  return jnp.where(inside[..., None], top + (bottom - top) * dy, FILL)
