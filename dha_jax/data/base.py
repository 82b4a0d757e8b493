"""In-memory splits and the deterministic iterators over them.

The training order is a pure function of (seed, step): epoch e uses the permutation drawn
from seed (seed, e), so the iterator position is the step count and survives a restart
exactly, with nothing extra to checkpoint. Each process yields its own slice of every
global batch (multi-host data parallelism).
"""

import dataclasses
from typing import Iterator, Optional

import numpy as np


@dataclasses.dataclass
class Split:
  images: np.ndarray  # uint8 [N, H, W, C]
  labels: np.ndarray  # int32 [N]

  def __post_init__(self):
    if self.images.dtype != np.uint8 or self.images.ndim != 4:
      raise ValueError(f'images must be uint8 [N, H, W, C], got {self.images.dtype} '
                       f'{self.images.shape}')
    self.labels = np.asarray(self.labels, np.int32)
    if len(self.labels) != len(self.images):
      raise ValueError(f'{len(self.images)} images but {len(self.labels)} labels')

  def __len__(self):
    return len(self.labels)

  def take(self, idx):
    return Split(self.images[idx], self.labels[idx])


@dataclasses.dataclass
class Dataset:
  """What every source returns: three disjoint splits and their metadata."""
  name: str
  train: Split
  val: Split
  test: Split
  num_classes: int

  @property
  def image_shape(self):
    return self.train.images.shape[1:]

  def split(self, name: str) -> Split:
    if name not in ('train', 'val', 'test'):
      raise ValueError(f"unknown split {name!r}; use 'train', 'val' or 'test'")
    return getattr(self, name)

  def train_iterator(self, split, global_batch, seed, start_step=0, process_index=0,
                     process_count=1):
    return TrainIterator(self.split(split), global_batch, seed, start_step,
                         process_index, process_count)

  def eval_iterator(self, split, global_batch, process_index=0, process_count=1,
                    limit=None):
    return eval_batches(self.split(split), global_batch, process_index, process_count,
                        limit)

  def num_examples(self, split):
    return len(self.split(split))


def hold_out(train: Split, val_size: int, seed: int, what: str = 'train'):
  """Splits `val_size` examples off `train` (disjoint), by a seeded permutation."""
  if not 0 <= val_size < len(train):
    raise ValueError(f'config.dataset.val_size={val_size} must be in [0, {len(train)}) '
                     f'(the {what} split has {len(train)} examples)')
  perm = np.random.default_rng([seed, 7]).permutation(len(train))
  return train.take(np.sort(perm[val_size:])), train.take(np.sort(perm[:val_size]))


def stratified_subset(train: Split, size: int, seed: int) -> Split:
  """`size` examples of `train`, each class in proportion to its count (largest
  remainders round), drawn by a seeded permutation: the same subset for every variant of
  a seed. Taken from the training split only, so it stays disjoint from val."""
  if not 0 < size <= len(train):
    raise ValueError(f'config.dataset.train_subset={size} must be in [1, {len(train)}] (the '
                     f'training split after the val hold-out has {len(train)} examples; 0 = '
                     'all of it)')
  classes, counts = np.unique(train.labels, return_counts=True)
  quota = counts * size / len(train)
  take = np.floor(quota).astype(int)
  order = np.argsort(-(quota - take), kind='stable')  # largest remainders get one more
  take[order[:size - take.sum()]] += 1
  rng = np.random.default_rng([seed, 11])
  idx = [rng.permutation(np.flatnonzero(train.labels == c))[:k]
         for c, k in zip(classes, take)]
  return train.take(np.sort(np.concatenate(idx)))


def check_batch(global_batch: int, process_count: int, what: str = 'config.batch_size'):
  if global_batch % process_count:
    raise ValueError(f'{what}={global_batch} is not divisible by the {process_count} '
                     'processes; choose a multiple of it')
  return global_batch // process_count


class TrainIterator:
  """Infinite shuffled batches of a split; batch s is a pure function of (seed, s)."""

  def __init__(self, split: Split, global_batch: int, seed: int, start_step: int = 0,
               process_index: int = 0, process_count: int = 1):
    if global_batch > len(split):
      raise ValueError(f'batch size {global_batch} is larger than the split '
                       f'({len(split)} examples)')
    self.split, self.global_batch, self.seed = split, global_batch, seed
    self.local = check_batch(global_batch, process_count)
    self.offset = process_index * self.local
    self.steps_per_epoch = len(split) // global_batch
    self.step = start_step
    self._perm_epoch, self._perm = -1, None

  def _indices(self, step):
    epoch, pos = divmod(step, self.steps_per_epoch)
    if epoch != self._perm_epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
      self._perm_epoch = epoch
    start = pos * self.global_batch  # sorted as one global batch, then this process's
    batch = np.sort(self._perm[start:start + self.global_batch])  # slice: the same
    return batch[self.offset:self.offset + self.local]  # devices see the same examples

  def __iter__(self) -> Iterator:
    return self

  def __next__(self):
    idx = self._indices(self.step)
    self.step += 1
    return {'image': self.split.images[idx], 'label': self.split.labels[idx]}


def eval_batches(split: Split, global_batch: int, process_index: int = 0,
                 process_count: int = 1, limit: Optional[int] = None):
  """One pass over a split in fixed-shape batches; padding rows carry mask 0."""
  local = check_batch(global_batch, process_count, 'config.eval_batch_size')
  n = len(split) if limit is None else min(limit, len(split))
  for start in range(0, n, global_batch):
    idx = np.arange(start + process_index * local, start + (process_index + 1) * local)
    mask = idx < n
    idx = np.where(mask, idx, 0)
    yield {'image': split.images[idx], 'label': split.labels[idx],
           'mask': mask.astype(np.float32)}
