"""scikit-learn's bundled 8x8 digits: the offline demo set (no download needed)."""

import importlib.util
import os

import numpy as np

from dha_jax import data
from dha_jax.data import base


def raw_digits():
  """(images [1797, 8, 8] in 0..16, labels): read from scikit-learn's bundled file without
  importing scikit-learn (~2 s at every start of a run), else through its loader."""
  spec = importlib.util.find_spec('sklearn')
  for root in getattr(spec, 'submodule_search_locations', None) or []:
    path = os.path.join(root, 'datasets', 'data', 'digits.csv.gz')
    if os.path.exists(path):
      table = np.loadtxt(path, delimiter=',')
      return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  raw = datasets.load_digits()
  return raw.images, raw.target


@data.SOURCES.register('digits')
def load(cfg, seed):
  pixels, labels = raw_digits()
  images = np.round(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]
  everything = base.Split(images, labels)
  perm = np.random.default_rng([seed, 3]).permutation(len(everything))
  n_test = int(round(cfg.test_fraction * len(everything)))
  test = everything.take(np.sort(perm[:n_test]))
  train, val = base.hold_out(everything.take(np.sort(perm[n_test:])), cfg.val_size, seed)
  return base.Dataset('digits', train, val, test, num_classes=10)
