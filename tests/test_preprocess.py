"""Standard pre-processing on device: crop/flip/Cutout and random-resized crop."""

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dha_jax.augment import preprocess


def _cfg(**kw):
  c = dict(kind='crop_flip', crop_padding=2, flip=True, cutout=0, image_size=0,
           rrc_min_scale=0.08)
  c.update(kw)
  return ml_collections.ConfigDict(c)


def _keys(n):
  return jax.random.split(jax.random.PRNGKey(0), n)


def _jitted_train_transform(cfg):
  """One compile (as in the step) instead of eager op-by-op: ~100 compiles, 16-20 s."""
  return jax.jit(lambda x, keys: preprocess.train_transform(x, keys, cfg))


def test_crop_flip_is_a_shifted_or_mirrored_copy():
  """Each output is exactly one crop (offset dy, dx of the 2-pixel zero padding) of the
  image or of its mirror; over 16 samples both mirrored and unmirrored ones occur, and
  shifted ones (an identity transform, or one that never flips, fails)."""
  x = jax.random.uniform(jax.random.PRNGKey(1), (16, 12, 12, 3))
  y = np.asarray(_jitted_train_transform(_cfg())(x, _keys(16)))
  chex.assert_shape(y, x.shape)
  xs = np.asarray(x)
  seen = []
  for i in range(16):
    found = [(flip, dy, dx) for flip, img in ((False, xs[i]), (True, xs[i][:, ::-1]))
             for dy in range(5) for dx in range(5)
             if np.array_equal(np.pad(img, ((2, 2), (2, 2), (0, 0)))[dy:dy + 12, dx:dx + 12],
                               y[i])]
    assert len(found) == 1, (i, found)
    seen.append(found[0])
  assert {flip for flip, _, _ in seen} == {False, True}
  assert any((dy, dx) != (2, 2) for _, dy, dx in seen)


def test_cutout_zeroes_at_most_a_square():
  x = jnp.ones((32, 16, 16, 1))
  y = np.asarray(_jitted_train_transform(_cfg(crop_padding=0, flip=False, cutout=6))(
      x, _keys(32)))
  zeros = (y[..., 0] == 0).sum(axis=(1, 2))
  assert zeros.max() == 36 and zeros.min() >= 6  # 6x6, clipped at the border
  for i in range(32):
    rows, cols = np.nonzero(y[i, ..., 0] == 0)
    assert rows.max() - rows.min() < 6 and cols.max() - cols.min() < 6


def test_rrc_output_size_and_range():
  x = jax.random.uniform(jax.random.PRNGKey(2), (4, 40, 40, 3))
  y = _jitted_train_transform(_cfg(kind='rrc_flip', image_size=32))(x, _keys(4))
  chex.assert_shape(y, (4, 32, 32, 3))
  assert float(y.min()) >= -1e-6 and float(y.max()) <= 1 + 1e-6
  # a constant image stays constant whatever the crop
  c = _jitted_train_transform(_cfg(kind='rrc_flip', image_size=24))(
      jnp.full((2, 40, 40, 1), 0.25), _keys(2))
  np.testing.assert_allclose(np.asarray(c), 0.25, atol=1e-5)


def test_eval_is_centre_crop_and_normalize():
  x = jnp.arange(2 * 6 * 6, dtype=jnp.float32).reshape(2, 6, 6, 1)
  y = preprocess.eval_transform(x, _cfg(image_size=4))
  np.testing.assert_array_equal(np.asarray(y), np.asarray(x[:, 1:5, 1:5]))
  z = preprocess.normalize(jnp.full((1, 2, 2, 3), 0.5), (0.5,), (0.25,))
  np.testing.assert_allclose(np.asarray(z), 0.0)


def test_bad_kind_is_clear():
  with pytest.raises(ValueError, match='config.preprocess.kind'):
    preprocess.train_transform(jnp.zeros((1, 4, 4, 1)), _keys(1), _cfg(kind='nope'))
