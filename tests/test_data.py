"""Data sources: disjoint splits, deterministic resumable iterators, clear errors."""

import gzip
import os

import chex
import numpy as np
import pytest
from PIL import Image

from dha_jax import data
from dha_jax.data import base, idx


def _ids(split):
  return {arr.tobytes() for arr in split.images}


def test_digits_splits_disjoint_and_sized(test_config):
  ds = data.load(test_config.dataset, seed=0)
  assert len(ds.test) == 359 and len(ds.val) == 150
  assert len(ds.train) + len(ds.val) + len(ds.test) == 1797
  chex.assert_shape(ds.train.images, (len(ds.train), 8, 8, 1))
  chex.assert_type([ds.train.images, ds.train.labels], [np.uint8, np.int32])
  # digits has a few duplicate images, so splits are checked as multisets: together they
  # are exactly sklearn's 1797 (image, label) samples, each once, so none is in two splits
  from collections import Counter  # pylint: disable=g-import-not-at-top
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  key = lambda img, y: (np.asarray(img, np.uint8).tobytes(), int(y))
  got = Counter(key(i, y) for split in (ds.train, ds.val, ds.test)
                for i, y in zip(split.images, split.labels))
  raw = load_digits()
  levels = np.round(raw.images * (255 / 16)).astype(np.uint8)[..., None]
  want = Counter(key(i, y) for i, y in zip(levels, raw.target))
  assert got == want and ds.num_classes == 10


def test_digits_read_without_sklearn_equal_sklearns_loader():
  """The file read directly (no scikit-learn import at a run's start) is load_digits()."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from dha_jax.data import digits  # pylint: disable=g-import-not-at-top
  images, labels = digits.raw_digits()
  raw = load_digits()
  np.testing.assert_array_equal(images, raw.images)
  np.testing.assert_array_equal(labels, raw.target)


def test_hold_out_is_disjoint():
  x = np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1)
  train, val = base.hold_out(base.Split(x, np.zeros(100)), 30, seed=1)
  assert len(val) == 30 and len(train) == 70
  assert not _ids(train) & _ids(val)


def test_val_size_too_large_is_clear():
  x = np.zeros((10, 1, 1, 1), np.uint8)
  with pytest.raises(ValueError, match='val_size=10'):
    base.hold_out(base.Split(x, np.zeros(10)), 10, seed=0)


def test_train_iterator_resumes_exactly_and_covers_epoch():
  x = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
  split = base.Split(x, np.arange(50))
  it = base.TrainIterator(split, 10, seed=3)
  first = [next(it)['label'] for _ in range(12)]
  resumed = base.TrainIterator(split, 10, seed=3, start_step=7)
  for s in range(7, 12):
    np.testing.assert_array_equal(next(resumed)['label'], first[s])
  # one epoch = 5 batches visits every example once
  assert sorted(np.concatenate(first[:5]).tolist()) == list(range(50))
  assert not np.array_equal(np.concatenate(first[:5]), np.concatenate(first[5:10]))


def test_processes_get_disjoint_slices_of_the_global_batch():
  x = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  split = base.Split(x, np.arange(40))
  whole = next(base.TrainIterator(split, 8, seed=0))['label']
  parts = [next(base.TrainIterator(split, 8, seed=0, process_index=p, process_count=2))['label']
           for p in range(2)]
  assert sorted(np.concatenate(parts).tolist()) == sorted(whole.tolist())
  with pytest.raises(ValueError, match='not divisible'):
    base.TrainIterator(split, 9, seed=0, process_count=2)


def test_eval_batches_pad_with_zero_mask():
  x = np.zeros((10, 2, 2, 1), np.uint8)
  batches = list(base.eval_batches(base.Split(x, np.arange(10)), 4))
  assert len(batches) == 3
  np.testing.assert_array_equal(batches[-1]['mask'], [1, 1, 0, 0])
  assert sum(b['mask'].sum() for b in batches) == 10


def _write_idx(path, arr):
  header = bytes([0, 0, 8, arr.ndim]) + np.asarray(arr.shape, '>u4').tobytes()
  with gzip.open(path, 'wb') as f:
    f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_source_reads_files(tmp_path, test_config):
  rng = np.random.default_rng(0)
  for name, n in (('train', 60), ('t10k', 20)):
    _write_idx(tmp_path / f'{name}-images-idx3-ubyte.gz', rng.integers(0, 256, (n, 28, 28)))
    _write_idx(tmp_path / f'{name}-labels-idx1-ubyte.gz', rng.integers(0, 10, n))
  cfg = test_config.dataset
  cfg.source, cfg.data_dir, cfg.val_size = 'idx', str(tmp_path), 10
  ds = data.load(cfg, seed=0)
  chex.assert_shape(ds.train.images, (50, 28, 28, 1))
  assert len(ds.val) == 10 and len(ds.test) == 20
  raw = idx.read_idx(str(tmp_path / 't10k-images-idx3-ubyte.gz'))
  np.testing.assert_array_equal(ds.test.images[..., 0], raw)


def test_idx_missing_is_clear(tmp_path, test_config):
  cfg = test_config.dataset
  cfg.source, cfg.data_dir = 'idx', str(tmp_path)
  with pytest.raises(FileNotFoundError, match='dataset-fashion-mnist'):
    data.load(cfg, seed=0)


@pytest.mark.skipif(not os.path.isdir('/usr/share/datasets/fashion-mnist'),
                    reason='real Fashion-MNIST absent (apt-get install dataset-fashion-mnist)')
def test_real_fashion_mnist(test_config):
  cfg = test_config.dataset
  cfg.source, cfg.data_dir, cfg.val_size = 'idx', '', 5000
  ds = data.load(cfg, seed=0)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (55000, 5000, 10000)
  assert ds.num_classes == 10


def _folder(tmp_path, bad=False):
  rng = np.random.default_rng(0)
  for split, n in (('train', 6), ('test', 2)):
    for cls in ('cat', 'dog'):
      d = tmp_path / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), np.uint8)).save(d / f'{i}.png')
  if bad:
    (tmp_path / 'train' / 'dog' / 'broken.jpg').write_bytes(b'not an image')


def test_folder_source(tmp_path, test_config):
  _folder(tmp_path)
  cfg = test_config.dataset
  cfg.source, cfg.data_dir, cfg.val_size, cfg.load_size = 'folder', str(tmp_path), 2, 16
  ds = data.load(cfg, seed=0)
  chex.assert_shape(ds.train.images, (10, 16, 16, 3))
  assert len(ds.test) == 4 and ds.num_classes == 2
  assert sorted(ds.test.labels.tolist()) == [0, 0, 1, 1]


def test_folder_unreadable_image_names_the_file(tmp_path, test_config):
  _folder(tmp_path, bad=True)
  cfg = test_config.dataset
  cfg.source, cfg.data_dir, cfg.load_size = 'folder', str(tmp_path), 16
  with pytest.raises(ValueError, match='broken.jpg'):
    data.load(cfg, seed=0)


def test_tfds_source_with_mock_data(test_config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cfg = test_config.dataset
  cfg.source, cfg.name, cfg.val_size = 'tfds', 'cifar10', 8
  with tfds.testing.mock_data(num_examples=40):
    ds = data.load(cfg, seed=0)
  chex.assert_shape(ds.train.images, (32, 32, 32, 3))
  assert len(ds.val) == 8 and len(ds.test) == 40 and ds.num_classes == 10


def test_tfds_streaming_resumes_exactly(test_config):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  cfg = test_config.dataset
  cfg.source, cfg.name, cfg.val_size = 'tfds', 'cifar10', 8
  cfg.in_memory, cfg.train_size = False, 40
  with tfds.testing.mock_data(num_examples=40):
    ds = data.load(cfg, seed=0)
    it = ds.train_iterator('train', 8, seed=1)
    first = [next(it)['label'] for _ in range(6)]
    resumed = ds.train_iterator('train', 8, seed=1, start_step=3)
    for s in range(3, 6):
      np.testing.assert_array_equal(next(resumed)['label'], first[s])
    batches = list(ds.eval_iterator('val', 6))
  # mock_data ignores split slicing (it serves all 40 examples for any split), so the
  # hold-out is checked on the split strings the real TFDS slicing receives.
  assert ds.splits['train'] == 'train[8:]' and ds.splits['val'] == 'train[:8]'
  assert ds.num_examples('train') == 32
  assert all(b['image'].shape == (6, 32, 32, 3) for b in batches)
  assert batches[-1]['mask'].tolist() == [1, 1, 1, 1, 0, 0]  # 40 = 6*6 + 4


def test_unknown_source_is_clear(test_config):
  test_config.dataset.source = 'nope'
  with pytest.raises(ValueError, match='config.dataset.source'):
    data.load(test_config.dataset, seed=0)


def test_train_subset_is_stratified_deterministic_and_disjoint_from_val():
  # 300 unique images, classes 0/1/2 in proportion 1:2:3; val held out first, as load does.
  x = np.arange(300, dtype=np.uint16).view(np.uint8).reshape(300, 1, 2, 1)
  labels = np.repeat([0, 1, 2], [50, 100, 150])
  train, val = base.hold_out(base.Split(x, labels), 60, seed=3)
  sub = base.stratified_subset(train, 61, seed=3)
  assert len(sub) == 61 and len(set(_ids(sub))) == 61
  assert _ids(sub) <= _ids(train) and not _ids(sub) & _ids(val)
  counts = np.bincount(sub.labels, minlength=3)
  expect = np.bincount(train.labels, minlength=3) * 61 / len(train)
  assert np.all(np.abs(counts - expect) < 1), (counts, expect)  # largest-remainder rounding
  again = base.stratified_subset(train, 61, seed=3)
  np.testing.assert_array_equal(again.images, sub.images)
  other = base.stratified_subset(train, 61, seed=4)
  assert _ids(other) != _ids(sub)
  with pytest.raises(ValueError, match='train_subset=241'):
    base.stratified_subset(train, 241, seed=3)


def test_train_subset_through_load(test_config):
  test_config.dataset.train_subset = 200
  ds = data.load(test_config.dataset, seed=0)
  full = data.load(dict_without_subset(test_config.dataset), seed=0)
  assert len(ds.train) == 200 and len(ds.val) == len(full.val)
  np.testing.assert_array_equal(ds.val.images, full.val.images)  # val unchanged
  counts = np.bincount(ds.train.labels, minlength=10)
  expect = np.bincount(full.train.labels, minlength=10) * 200 / len(full.train)
  assert np.all(np.abs(counts - expect) < 1)


def dict_without_subset(dataset_config):
  c = dataset_config.copy_and_resolve_references()
  c.train_subset = 0
  return c


def test_planted_shift_and_rotation_are_what_the_ops_produce_on_val_and_test_only(
    test_config):
  """config.dataset.eval_shift / eval_rotate move the val and test images, never the
  training ones, by a transform the augmentation ops make exactly: the shift is
  TranslateX/Y at m = -pixels / (0.45 side) (the op moves content left/up for m > 0),
  the rotation Rotate at m = degrees / 30 (PIL's rotate, counter-clockwise, both with
  the ops' grey fill): equal to within one grey level (the ops' float rounding)."""
  from dha_jax.augment import ops  # pylint: disable=g-import-not-at-top
  c = test_config.dataset
  plain = data.load(c, seed=0)
  for field, value, op, magnitude in (
      ('eval_shift', (3, 0), 'TranslateX', -3 / (0.45 * 8)),
      ('eval_shift', (0, -2), 'TranslateY', 2 / (0.45 * 8)),
      ('eval_rotate', 20.0, 'Rotate', 20 / 30)):
    moved_cfg = c.copy_and_resolve_references()
    moved_cfg[field] = value
    moved = data.load(moved_cfg, seed=0)
    np.testing.assert_array_equal(moved.train.images, plain.train.images)
    for split in ('val', 'test'):
      x = plain.split(split).images
      n = len(x)
      want = ops.apply(x.astype(np.float32) / 255, np.full(n, ops.OP_NAMES.index(op)),
                       np.full(n, magnitude, np.float32))
      got = moved.split(split).images.astype(np.float32)
      assert np.abs(got - np.asarray(want) * 255).max() <= 1.0, (field, split)
      assert np.abs(got - x).max() > 100  # it moved
      np.testing.assert_array_equal(moved.split(split).labels, plain.split(split).labels)


def test_planted_shift_that_is_not_two_whole_numbers_is_refused(test_config):
  c = test_config.dataset
  c.eval_shift = (1.5, 0)
  with pytest.raises(ValueError, match=r'config.dataset.eval_shift=\(1.5, 0\)'):
    data.load(c, seed=0)
