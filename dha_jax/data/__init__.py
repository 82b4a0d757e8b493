"""Data sources behind one interface: `load(config.dataset, seed)` returns a dataset with
disjoint train / val / test splits of uint8 images and int32 labels."""

import dataclasses

from dha_jax.core import registry
from dha_jax.data import base, planted

# name -> load(cfg, seed), registered where each is defined (@SOURCES.register('name'));
# every module of this package is imported below.
SOURCES = registry.Registry('config.dataset.source')


def load(cfg, seed: int):
  ds = SOURCES.get(cfg.source)(cfg, seed)
  if cfg.get('train_subset', 0):
    if not isinstance(ds, base.Dataset):
      raise ValueError('config.dataset.train_subset needs an in-memory dataset; with '
                       'source=tfds set config.dataset.in_memory=True')
    ds = dataclasses.replace(ds, train=base.stratified_subset(ds.train, cfg.train_subset,
                                                                seed))
  return planted.apply(ds, cfg)


registry.import_modules(__name__, __path__)
