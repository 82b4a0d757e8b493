"""Standard (non-learned) pre-processing, on device, one PRNG key per sample.

Training: 'crop_flip' (pad + random crop + flip (+ Cutout), the 32 px recipe) or
'rrc_flip' (random-resized crop + flip, the 224 px recipe). Evaluation and the HPO batch
are never augmented: only converted, centre-cropped and normalised.

The image operations are dm-pix's where they equal ours (the flip, the padding: the same
StableHLO, tools/hlo_hashes.py); the random draws stay ours, one stream per
sample as before, since dm-pix's random_crop / random_flip draw from other streams (every
run's crops would change). dm-pix has no resized crop, and its centre crop puts an odd
margin's extra pixel on the other side (top = H//2 - size//2, not (H - size)//2), so
those stay here (docs/method.md section 2).
"""

import chex
import dm_pix as pix
import jax
import jax.numpy as jnp


def to_float(images):
  return images.astype(jnp.float32) / 255.0


def normalize(images, mean, std):
  c = images.shape[-1]
  mean = jnp.broadcast_to(jnp.asarray(mean, jnp.float32), (c,))
  std = jnp.broadcast_to(jnp.asarray(std, jnp.float32), (c,))
  return (images - mean) / std


def center_crop(images, size):
  h, w = images.shape[1:3]
  if not size or (size == h and size == w):
    return images
  top, left = (h - size) // 2, (w - size) // 2
  return images[:, top:top + size, left:left + size]


def _crop_flip_one(key, img, padding, flip, cutout):
  k_crop, k_flip, k_cut = jax.random.split(key, 3)
  h, w, c = img.shape
  if padding:
    img = pix.pad_to_size(img, h + 2 * padding, w + 2 * padding)  # zeros, centred
    off = jax.random.randint(k_crop, (2,), 0, 2 * padding + 1)
    img = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
  if flip:
    img = jnp.where(jax.random.bernoulli(k_flip), pix.flip_left_right(img), img)
  if cutout:
    cy, cx = jax.random.randint(k_cut, (2,), 0, jnp.array([h, w]))
    ys, xs = jnp.arange(h)[:, None], jnp.arange(w)[None, :]
    lo, hi = cutout // 2, cutout - cutout // 2  # a cutout x cutout square centred at c
    hole = (ys >= cy - lo) & (ys < cy + hi) & (xs >= cx - lo) & (xs < cx + hi)
    img = jnp.where(hole[..., None], 0.0, img)
  return img


def _rrc_flip_one(key, img, size, min_scale, flip):
  """Random-resized crop (area in [min_scale, 1], log-uniform aspect in [3/4, 4/3])."""
  k_area, k_ratio, k_pos, k_flip = jax.random.split(key, 4)
  h, w, c = img.shape
  area = jax.random.uniform(k_area, (), minval=min_scale, maxval=1.0) * h * w
  ratio = jnp.exp(jax.random.uniform(k_ratio, (), minval=jnp.log(3 / 4), maxval=jnp.log(4 / 3)))
  ch = jnp.clip(jnp.sqrt(area / ratio), 1.0, h)
  cw = jnp.clip(jnp.sqrt(area * ratio), 1.0, w)
  u = jax.random.uniform(k_pos, (2,))
  top, left = u[0] * (h - ch), u[1] * (w - cw)
  scale = jnp.array([size / ch, size / cw])
  out = jax.image.scale_and_translate(img, (size, size, c), (0, 1), scale,
                                      -jnp.array([top, left]) * scale, 'linear',
                                      antialias=False)
  if flip:
    out = jnp.where(jax.random.bernoulli(k_flip), pix.flip_left_right(out), out)
  return out


def train_transform(images, keys, cfg):
  """float [N,H,W,C] in [0,1], one key per sample -> augmented float images."""
  chex.assert_rank(images, 4)
  chex.assert_equal_shape_prefix([images, keys], 1)
  if cfg.kind == 'none':
    if cfg.flip:
      raise ValueError("config.preprocess.flip=True needs kind 'crop_flip' or 'rrc_flip' "
                       "(or set flip=False)")
    return center_crop(images, cfg.image_size)
  if cfg.kind == 'crop_flip':
    return jax.vmap(lambda k, x: _crop_flip_one(k, x, cfg.crop_padding, cfg.flip,
                                                cfg.cutout))(keys, images)
  if cfg.kind == 'rrc_flip':
    size = cfg.image_size or images.shape[1]
    return jax.vmap(lambda k, x: _rrc_flip_one(k, x, size, cfg.rrc_min_scale,
                                               cfg.flip))(keys, images)
  raise ValueError(f"config.preprocess.kind={cfg.kind!r}: use 'none', 'crop_flip' or 'rrc_flip'")


def eval_transform(images, cfg):
  return center_crop(images, cfg.image_size)
