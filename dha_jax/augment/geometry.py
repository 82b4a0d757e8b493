"""Affine warps with PIL's conventions, batched with one matrix per image.

A matrix here is 2x3 ``[[a, b, c], [d, e, f]]`` exactly as PIL's
``Image.transform(size, AFFINE, (a, b, c, d, e, f))`` reads it: it maps an
OUTPUT point (x, y) to the INPUT point (a x + b y + c, d x + e y + f), in
continuous coordinates where pixel (i, j) has its centre at (j + 0.5, i + 0.5).
"""

import dm_pix as pix
import jax
import jax.numpy as jnp

ROTATE_DEGREES = 30.0  # Rotate angle at |m| = 1 (RandAugment range).
SHEAR = 0.3  # Shear coefficient at |m| = 1.
TRANSLATE = 0.45  # Translation at |m| = 1, as a fraction of width / height.
FILL = 0.5  # Gray written where the sample point falls outside the image.


def _matrix(a, b, c, d, e, f):
    """Stacks per-image coefficients (each [N]) into [N, 2, 3] matrices."""
    return jnp.stack([jnp.stack([a, b, c], -1), jnp.stack([d, e, f], -1)], -2)


def identity(m):
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
    zero, one = jnp.zeros_like(m), jnp.ones_like(m)
    return _matrix(one, SHEAR * m, zero, zero, one, zero)


def shear_y(m):
    zero, one = jnp.zeros_like(m), jnp.ones_like(m)
    return _matrix(one, zero, zero, SHEAR * m, one, zero)


def translate_x(m, width):
    zero, one = jnp.zeros_like(m), jnp.ones_like(m)
    return _matrix(one, zero, TRANSLATE * width * m, zero, one, zero)


def translate_y(m, height):
    zero, one = jnp.zeros_like(m), jnp.ones_like(m)
    return _matrix(one, zero, zero, zero, one, TRANSLATE * height * m)


def _warp_one(image, matrix):
    """Bilinear pull-warp of one [H, W, C] image, PIL style.

    PIL fills every output pixel whose sample point lies outside
    [0, W) x [0, H) and, inside, interpolates with edge-clamped neighbours;
    dm-pix's clamped linear interpolation gives exactly the latter.
    """
    height, width, _ = image.shape
    rows, cols = jnp.meshgrid(
        jnp.arange(height, dtype=jnp.float32) + 0.5,
        jnp.arange(width, dtype=jnp.float32) + 0.5,
        indexing="ij",
    )
    x_in = matrix[0, 0] * cols + matrix[0, 1] * rows + matrix[0, 2]
    y_in = matrix[1, 0] * cols + matrix[1, 1] * rows + matrix[1, 2]
    inside = (x_in >= 0) & (x_in < width) & (y_in >= 0) & (y_in < height)
    # Continuous coordinates -> array indices (pixel centres at integers).
    coords = jnp.stack([y_in - 0.5, x_in - 0.5])
    sample = jax.vmap(
        lambda plane: pix.flat_nd_linear_interpolate(plane, coords),
        in_axes=2,
        out_axes=2,
    )(image)
    return jnp.where(inside[..., None], sample, FILL)


def warp(images, matrices):
    """Warps a batch [N, H, W, C] with per-image [N, 2, 3] PIL matrices."""
    return jax.vmap(_warp_one)(images, matrices)
