"""A planted shift: the validation and test images moved by a fixed amount that the
training images lack (config.dataset.eval_shift, eval_rotate).

Why: a check of the learned policy where the right answer is known. The held-out images
are translated or rotated, so the augmentation that pays is the matching geometric op
(TranslateX/Y or Rotate), and a tau on the held-out objective should move its mass there
(docs/method.md, "tau's objectives"). Applied once to the uint8 arrays at load time."""

import dataclasses

import numpy as np
from PIL import Image

from dha_jax.augment import geometry
from dha_jax.data import base


# What the augmentation ops write where a warp leaves the image (geometry.FILL, grey), so
# that the planted transform is exactly one the ops can produce: a zero (black) fill
# would be a second difference, between the held-out and every augmented image.
FILL = int(round(255 * geometry.FILL))


def shift(images: np.ndarray, dx: int, dy: int) -> np.ndarray:
  """Moves every image dx pixels right and dy down (negative: left / up), grey-filled."""
  out = np.full_like(images, FILL)
  h, w = images.shape[1:3]
  if abs(dx) >= w or abs(dy) >= h:
    return out
  src_y, dst_y = slice(max(-dy, 0), h - max(dy, 0)), slice(max(dy, 0), h - max(-dy, 0))
  src_x, dst_x = slice(max(-dx, 0), w - max(dx, 0)), slice(max(dx, 0), w - max(-dx, 0))
  out[:, dst_y, dst_x] = images[:, src_y, src_x]
  return out


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
  """Rotates every image counter-clockwise about its centre (bilinear, grey fill), as
  PIL's Image.rotate: the convention of the Rotate op (augment/ops.py)."""
  def one(img):
    pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    fill = FILL if img.shape[-1] == 1 else (FILL,) * img.shape[-1]
    out = np.asarray(pil.rotate(degrees, resample=Image.BILINEAR, fillcolor=fill))
    return out.reshape(img.shape)
  return np.stack([one(img) for img in images]) if len(images) else images


def _moved(split: base.Split, dx, dy, degrees) -> base.Split:
  images = split.images
  if degrees:
    images = rotate(images, degrees)
  if dx or dy:
    images = shift(images, dx, dy)
  return base.Split(images, split.labels)


def apply(ds, cfg):
  """`ds` with its val and test splits moved by config.dataset.eval_shift (dx, dy pixels)
  and eval_rotate (degrees); the training split unchanged."""
  s = tuple(cfg.get('eval_shift', (0, 0)))
  if len(s) != 2 or any(int(v) != v for v in s):
    raise ValueError(f'config.dataset.eval_shift={s}: give two whole numbers of pixels '
                     '(dx, dy), e.g. (3, 0)')
  dx, dy = (int(v) for v in s)
  degrees = float(cfg.get('eval_rotate', 0.0))
  if not (dx or dy or degrees):
    return ds
  if not isinstance(ds, base.Dataset):
    raise ValueError('config.dataset.eval_shift / eval_rotate need an in-memory dataset; '
                     'with source=tfds set config.dataset.in_memory=True')
  return dataclasses.replace(ds, val=_moved(ds.val, dx, dy, degrees),
                             test=_moved(ds.test, dx, dy, degrees))
