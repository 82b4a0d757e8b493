"""Data sources behind one interface: `load(config.dataset, seed)` returns a dataset with
disjoint train / val / test splits of uint8 images and int32 labels."""

import dataclasses

from dha_jax.data import base, digits, folder, idx, planted, synthetic, tfds_source

SOURCES = {
    'digits': digits.load,
    'idx': idx.load,
    'folder': folder.load,
    'tfds': tfds_source.load,
    'synthetic': synthetic.load,
}


def load(cfg, seed: int):
  if cfg.source not in SOURCES:
    raise ValueError(f'config.dataset.source={cfg.source!r} is unknown; '
                     f'choose one of {sorted(SOURCES)}')
  ds = SOURCES[cfg.source](cfg, seed)
  if cfg.get('train_subset', 0):
    if not isinstance(ds, base.Dataset):
      raise ValueError('config.dataset.train_subset needs an in-memory dataset; with '
                       'source=tfds set config.dataset.in_memory=True')
    ds = dataclasses.replace(ds, train=base.stratified_subset(ds.train, cfg.train_subset,
                                                                seed))
  return planted.apply(ds, cfg)
