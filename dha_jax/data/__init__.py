"""Data sources behind one interface: `load(config.dataset, seed)` returns a dataset with
disjoint train / val / test splits of uint8 images and int32 labels."""

from dha_jax.data import digits, folder, idx, tfds_source

SOURCES = {
    'digits': digits.load,
    'idx': idx.load,
    'folder': folder.load,
    'tfds': tfds_source.load,
}


def load(cfg, seed: int):
  if cfg.source not in SOURCES:
    raise ValueError(f'config.dataset.source={cfg.source!r} is unknown; '
                     f'choose one of {sorted(SOURCES)}')
  return SOURCES[cfg.source](cfg, seed)
