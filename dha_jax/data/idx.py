"""MNIST-format IDX files (MNIST, Fashion-MNIST, KMNIST ...) from a directory.

Debian's package `dataset-fashion-mnist` installs the real Fashion-MNIST at
/usr/share/datasets/fashion-mnist (train-images-idx3-ubyte.gz, ...).
"""

import gzip
import os

import numpy as np

from dha_jax import data
from dha_jax.data import base

FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}
HOW_TO_GET = ('Fashion-MNIST: `apt-get install dataset-fashion-mnist` (Debian) installs it at '
              '/usr/share/datasets/fashion-mnist; or download the four IDX .gz files of '
              'MNIST/Fashion-MNIST into one directory and set config.dataset.data_dir to it.')


def _find(data_dir, stem):
  for name in (stem, stem + '.gz'):
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      return path
  raise FileNotFoundError(f'{stem}[.gz] not found in config.dataset.data_dir={data_dir!r}. '
                          + HOW_TO_GET)


def read_idx(path):
  """Parses one IDX file (magic: 2 zero bytes, dtype code, ndim; big-endian dims)."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rb') as f:
    data = f.read()
  if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f'{path} is not an unsigned-byte IDX file (bad magic {data[:4]!r})')
  ndim = data[3]
  if len(data) < 4 + 4 * ndim:
    raise ValueError(f'{path} is truncated: its header ends after {len(data)} bytes '
                     f'({ndim} dimensions need {4 + 4 * ndim}). Download the file again.')
  dims = np.frombuffer(data, '>u4', count=ndim, offset=4).astype(int)
  body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
  if body.size != int(np.prod(dims)):
    raise ValueError(f'{path} is truncated: header says {tuple(int(d) for d in dims)}, '
                     f'found {body.size} bytes of data. Download the file again.')
  return body.reshape(dims)


def _split(data_dir, name):
  images = read_idx(_find(data_dir, FILES[name][0]))
  labels = read_idx(_find(data_dir, FILES[name][1]))
  return base.Split(images[..., None] if images.ndim == 3 else images, labels)


@data.SOURCES.register('idx')
def load(cfg, seed):
  data_dir = cfg.data_dir or '/usr/share/datasets/fashion-mnist'
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f'config.dataset.data_dir={data_dir!r} does not exist. '
                            + HOW_TO_GET)
  train, val = base.hold_out(_split(data_dir, 'train'), cfg.val_size, seed)
  test = _split(data_dir, 'test')
  num_classes = int(max(train.labels.max(), test.labels.max())) + 1
  return base.Dataset(os.path.basename(os.path.normpath(data_dir)), train, val, test,
                      num_classes)
