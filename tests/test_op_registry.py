"""A new augmentation op is one function and one decorator (dha_jax/augment/ops.py).

Two toy ops are registered here, without editing the library: Invert (a table op) and
MirrorX (a geometric op, a matrix). Each is checked against an independent result (PIL's
ImageOps.invert, numpy's flip), then drawn by a policy from config.policy.ops. The
papers' 14 keep their indices, and unknown names are refused listing the registered ops.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageOps
from sklearn.datasets import load_sample_images

from configs import test as test_config
from dha_jax.augment import op_subset, ops, policies


@pytest.fixture
def toy_ops():
  """Registers Invert and MirrorX for one test. ops.apply is jitted and reads the
  registry when it traces, so the caches are cleared on both sides of the test."""
  jax.clear_caches()

  @ops.register('Invert', 'table')
  def _invert(m, hist, lo, hi):  # PIL ImageOps.invert: level v -> 255 - v
    del m, hist, lo, hi
    return 255 - jnp.arange(256, dtype=jnp.int32)[None, None]

  @ops.register('MirrorX', 'geometric')
  def _mirror_x(m, height, width):  # output x reads input W - x
    del height
    one, zero = jnp.ones_like(m), jnp.zeros_like(m)
    rows = [jnp.stack([-one, zero, width * one], -1), jnp.stack([zero, one, zero], -1)]
    return jnp.stack(rows, -2)

  try:
    yield
  finally:
    ops.unregister('MirrorX')
    ops.unregister('Invert')
    jax.clear_caches()


def _photos(mode):
  images = [Image.fromarray(a).resize((40, 30), Image.BILINEAR).convert(mode)
            for a in load_sample_images().images]
  return images, np.stack([np.asarray(im, np.float32).reshape(30, 40, -1)
                           for im in images]) / 255.0


@pytest.mark.parametrize('mode', ['RGB', 'L'])
def test_registered_ops_equal_pil_and_numpy_and_leave_the_14_in_place(toy_ops, mode):
  assert ops.registered() == ops.OP_NAMES + ('Invert', 'MirrorX')
  assert [ops.index(n) for n in ops.OP_NAMES] == list(range(14))
  images, x = _photos(mode)
  n = len(images)
  for name, expected in (
      ('Invert', np.stack([np.asarray(ImageOps.invert(im), np.float32).reshape(x.shape[1:])
                           for im in images]) / 255.0),
      ('MirrorX', x[:, :, ::-1])):
    out = np.asarray(ops.apply(x, np.full(n, ops.index(name), np.int32),
                               np.full(n, 0.7, np.float32)))
    # table ops return level * (1/255): within one float32 ulp of PIL's level / 255; a
    # warp whose sample points fall on pixel centres copies them (to rounding)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6, err_msg=name)
  # the other groups' kernels leave a toy op's image alone, and the 14 still work
  out = np.asarray(ops.apply(x, np.full(n, ops.index('Identity'), np.int32),
                             np.zeros(n, np.float32)))
  np.testing.assert_allclose(out, x, rtol=0, atol=1e-7)


def test_a_policy_draws_registered_ops_by_name(toy_ops):
  """TrivialAugment over config.policy.ops = (Invert, MirrorX): every image is exactly
  one of the two transforms of itself, and both are drawn."""
  c = test_config.get_config()
  c.policy.name, c.policy.ops = 'trivialaugment', ('Invert,MirrorX',)
  assert op_subset.names(c) == ('Invert', 'MirrorX')
  np.testing.assert_array_equal(op_subset.indices(op_subset.names(c)), [14, 15])
  policy = policies.create(c)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.float32) / 255.0
  keys = jax.random.split(jax.random.PRNGKey(3), 64)
  out, _ = policy.augment(None, jnp.asarray(x), jax.random.PRNGKey(0), keys, False)
  out = np.asarray(out)
  inverted = np.isclose(out, 1.0 - x, atol=1e-6).all(axis=(1, 2, 3))
  mirrored = np.isclose(out, x[:, :, ::-1], atol=1e-6).all(axis=(1, 2, 3))
  assert (inverted | mirrored).all()
  assert inverted.sum() >= 16 and mirrored.sum() >= 16  # 64 fair draws: ~32 each


def test_unknown_op_names_list_the_registered_ones(toy_ops):
  c = test_config.get_config()
  c.policy.ops = ('Invrt',)
  with pytest.raises(ValueError, match=r"'Invrt' is not an op \(did you mean Invert\?\)"
                     r".*AutoContrast.*Identity, Invert, MirrorX"):
    op_subset.names(c)
  with pytest.raises(ValueError, match='already registered'):
    ops.register('Invert', 'table')(lambda *a: None)
  with pytest.raises(ValueError, match="kind 'colour' is not one of"):
    ops.register('Sepia', 'colour')
  with pytest.raises(ValueError, match='only the last registered'):
    ops.unregister('Rotate')


def test_a_batch_of_the_wrong_shape_is_refused_when_traced():
  """ops.apply checks its arguments before tracing the kernels (chex, no runtime cost)."""
  x = np.zeros((2, 8, 8, 1), np.float32)
  with pytest.raises(ValueError, match='images of 2 channels; the ops are defined on '
                     r'grayscale \(1\) and RGB \(3\)'):
    ops.apply(np.zeros((2, 8, 8, 2), np.float32), np.zeros(2, np.int32), np.zeros(2))
  with pytest.raises(AssertionError, match='shape'):
    ops.apply(x, np.zeros(3, np.int32), np.zeros(2, np.float32))
  with pytest.raises(AssertionError, match='rank'):
    ops.apply(x[0], np.zeros(2, np.int32), np.zeros(2, np.float32))
