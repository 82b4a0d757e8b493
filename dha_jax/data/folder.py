"""Image-folder datasets: <root>/train/<class>/<image> and <root>/test/<class>/<image>.

The layout of Sport8, MIT67 and most users' own data. Class names are the sorted
sub-folder names of train/; test/ must use the same names. Everything is decoded once
into host memory at `config.dataset.load_size` (shorter side resized, centre crop).
"""

import os

import numpy as np
from PIL import Image

from dha_jax import data
from dha_jax.data import base

EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
  """Resizes the shorter side to `size` (bilinear) and crops the centre square."""
  w, h = img.size
  scale = size / min(w, h)
  nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
  img = img.resize((nw, nh), Image.BILINEAR)
  left, top = (nw - size) // 2, (nh - size) // 2
  return img.crop((left, top, left + size, top + size))


def read_image(path: str, size: int, channels: int = 3) -> np.ndarray:
  try:
    with Image.open(path) as img:
      img = img.convert('RGB' if channels == 3 else 'L')
      if size:
        img = resize_center_crop(img, size)
      arr = np.asarray(img, np.uint8)
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f'cannot read image {path}: {e}. Remove or replace the file.') from e
  return arr if arr.ndim == 3 else arr[..., None]


def _classes(root):
  d = os.path.join(root, 'train')
  if not os.path.isdir(d):
    raise FileNotFoundError(
        f'{d} does not exist. config.dataset.data_dir must hold train/<class>/<image> and '
        'test/<class>/<image> (e.g. Sport8: split the 8 event folders 70/30 into train/ '
        'and test/).')
  names = sorted(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n)))
  if not names:
    raise ValueError(f'{d} has no class sub-folders')
  return names


def _read_split(root, split, classes, size):
  images, labels, shape = [], [], None
  for label, name in enumerate(classes):
    d = os.path.join(root, split, name)
    if not os.path.isdir(d):
      raise FileNotFoundError(f'{d} is missing: {split}/ must have the same class folders '
                              'as train/')
    for fname in sorted(os.listdir(d)):
      if not fname.lower().endswith(EXTENSIONS):
        continue
      path = os.path.join(d, fname)
      img = read_image(path, size)
      if shape is not None and img.shape != shape:
        raise ValueError(f'{path} is {img.shape[1]}x{img.shape[0]}, other images are '
                         f'{shape[1]}x{shape[0]}: set config.dataset.load_size to resize all')
      shape = img.shape
      images.append(img)
      labels.append(label)
  if not images:
    raise ValueError(f'no images ({", ".join(EXTENSIONS)}) under {os.path.join(root, split)}')
  return base.Split(np.stack(images), np.asarray(labels))


@data.SOURCES.register('folder')
def load(cfg, seed):
  root = cfg.data_dir
  if not root:
    raise ValueError('config.dataset.data_dir must be set for source=folder')
  classes = _classes(root)
  train = _read_split(root, 'train', classes, cfg.load_size)
  train, val = base.hold_out(train, cfg.val_size, seed)
  test = _read_split(root, 'test', classes, cfg.load_size)
  return base.Dataset(os.path.basename(os.path.normpath(root)), train, val, test,
                      len(classes))
