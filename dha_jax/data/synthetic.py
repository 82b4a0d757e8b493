"""Random images of a given shape: a device can be measured, and a config smoke-tested,
with no dataset on the machine (benchmarks/device_check.py). Nothing here can be learned:
labels are independent of the pixels."""

import numpy as np

from dha_jax import data
from dha_jax.data import base


@data.SOURCES.register('synthetic')
def load(cfg, seed):
  s = cfg.synthetic
  shape = tuple(int(v) for v in s.shape)
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f'config.dataset.synthetic.shape={tuple(s.shape)} must be (H, W, C) '
                     'with every side >= 1')
  if s.num_classes < 2 or s.size < 1:
    raise ValueError(f'config.dataset.synthetic needs num_classes >= 2 and size >= 1, got '
                     f'num_classes={s.num_classes}, size={s.size}')
  rng = np.random.default_rng([seed, 13])
  n_test = max(1, s.size // 4)

  def split(n):
    return base.Split(rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
                      rng.integers(0, s.num_classes, n))

  train, val = base.hold_out(split(s.size + cfg.val_size), cfg.val_size, seed)
  return base.Dataset('synthetic', train, val, split(n_test), int(s.num_classes))
