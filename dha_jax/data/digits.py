"""scikit-learn's bundled 8x8 digits: the offline demo set (no download needed)."""

import numpy as np

from dha_jax.data import base


def load(cfg, seed):
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  raw = datasets.load_digits()
  images = np.round(raw.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  everything = base.Split(images, raw.target)
  perm = np.random.default_rng([seed, 3]).permutation(len(everything))
  n_test = int(round(cfg.test_fraction * len(everything)))
  test = everything.take(np.sort(perm[:n_test]))
  train, val = base.hold_out(everything.take(np.sort(perm[n_test:])), cfg.val_size, seed)
  return base.Dataset('digits', train, val, test, num_classes=10)
