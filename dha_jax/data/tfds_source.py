"""TensorFlow Datasets: any TFDS name (cifar10, cifar100, imagenet2012, oxford_flowers102,
fashion_mnist, ...).

Small sets are decoded once into host memory (config.dataset.in_memory=True) and then
behave like every other source. Large ones (ImageNet) stream through tf.data: epoch e is
read with shuffle seed (seed, e) and a resumed run skips the batches already consumed, so
the position is again a function of the step alone.
"""

import numpy as np

from dha_jax import data
from dha_jax.data import base

MANUAL = {
    'imagenet2012': ('ImageNet needs a manual download: put ILSVRC2012_img_train.tar and '
                     'ILSVRC2012_img_val.tar into <data_dir>/downloads/manual/ and run '
                     '`tfds build imagenet2012 --data_dir=<data_dir>` once.'),
}


def _tfds():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')  # tf.data only; keep the accelerator for JAX
  return tf, tfds


def _open(cfg, split, shuffle_seed=None):
  tf, tfds = _tfds()
  kwargs = dict(split=split, as_supervised=True, data_dir=cfg.data_dir or None)
  if shuffle_seed is not None:
    kwargs.update(shuffle_files=True,
                  read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
  try:
    ds, info = tfds.load(cfg.name, with_info=True, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, (tfds.core.registered.DatasetNotFoundError, AssertionError,
                      FileNotFoundError)) or 'not found' in str(e).lower() or (
                          'download' in str(e).lower()):
      hint = MANUAL.get(cfg.name, f'run `tfds build {cfg.name} --data_dir=<dir>` on a '
                        'machine with internet, then point config.dataset.data_dir there.')
      raise FileNotFoundError(f'TFDS dataset {cfg.name!r} (split {split!r}) is not '
                              f'available in data_dir={cfg.data_dir or "~/tensorflow_datasets"}'
                              f': {e}\n{hint}') from e
    raise
  size = cfg.load_size

  def prep(image, label):
    if size:
      shape = tf.shape(image)[:2]
      scale = size / tf.cast(tf.reduce_min(shape), tf.float32)
      new = tf.maximum(size, tf.cast(tf.round(tf.cast(shape, tf.float32) * scale), tf.int32))
      image = tf.image.resize(image, new, antialias=True)
      top, left = (new[0] - size) // 2, (new[1] - size) // 2
      image = image[top:top + size, left:left + size]
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image, tf.cast(label, tf.int32)

  return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE), info


def _to_numpy(cfg, split):
  _, tfds = _tfds()
  ds, info = _open(cfg, split)
  images, labels = [], []
  for x, y in tfds.as_numpy(ds.batch(1024)):
    images.append(x)
    labels.append(y)
  if not images:
    raise ValueError(f'TFDS {cfg.name!r} split {split!r} is empty')
  return base.Split(np.concatenate(images), np.concatenate(labels)), info


@data.SOURCES.register('tfds')
def load(cfg, seed):
  if not cfg.name:
    raise ValueError('config.dataset.name must name a TFDS dataset for source=tfds')
  if not cfg.in_memory:
    return StreamingDataset(cfg, seed)
  train, info = _to_numpy(cfg, 'train')
  test, _ = _to_numpy(cfg, cfg.test_split)
  train, val = base.hold_out(train, cfg.val_size, seed)
  return base.Dataset(cfg.name, train, val, test, info.features['label'].num_classes)


class StreamingDataset:
  """Same interface as base.Dataset, reading through tf.data instead of host memory."""

  def __init__(self, cfg, seed):
    if cfg.train_size <= 0 or cfg.val_size <= 0:
      raise ValueError('streaming TFDS needs config.dataset.train_size (examples in the '
                       'train split) and config.dataset.val_size > 0')
    self.cfg, self.seed, self.name = cfg, seed, cfg.name
    ds, info = _open(cfg, cfg.test_split)
    self.num_classes = info.features['label'].num_classes
    image = next(iter(ds.take(1)))[0]
    self.image_shape = tuple(image.shape)
    self.splits = {'train': f'train[{cfg.val_size}:]', 'val': f'train[:{cfg.val_size}]',
                   'test': cfg.test_split}
    self.sizes = {'train': cfg.train_size - cfg.val_size, 'val': cfg.val_size}

  def num_examples(self, split):
    if split not in self.sizes:
      _, tfds = _tfds()
      self.sizes[split] = sum(1 for _ in tfds.as_numpy(_open(self.cfg, self.splits[split])[0]))
    return self.sizes[split]

  def _process_split(self, split, process_index, process_count):
    _, tfds = _tfds()
    return tfds.even_splits(self.splits[split], n=process_count)[process_index]

  def train_iterator(self, split, global_batch, seed, start_step=0, process_index=0,
                     process_count=1):
    local = base.check_batch(global_batch, process_count)
    steps_per_epoch = self.num_examples(split) // global_batch
    sub = self._process_split(split, process_index, process_count)
    step = start_step
    while True:
      tf, tfds = _tfds()
      epoch, pos = divmod(step, steps_per_epoch)
      ds, _ = _open(self.cfg, sub, shuffle_seed=seed * 100003 + epoch)
      ds = ds.shuffle(16 * local, seed=seed * 100003 + epoch).batch(local, drop_remainder=True)
      # prefetch last: it only overlaps the next batches with this one (same batches, same
      # order) and, after take, prepares nothing past the end of the epoch
      ds = ds.skip(pos).take(steps_per_epoch - pos).prefetch(tf.data.AUTOTUNE)
      for x, y in tfds.as_numpy(ds):
        step += 1
        yield {'image': x, 'label': y}

  def eval_iterator(self, split, global_batch, process_index=0, process_count=1,
                    limit=None):
    tf, tfds = _tfds()
    local = base.check_batch(global_batch, process_count, 'config.eval_batch_size')
    ds, _ = _open(self.cfg, self._process_split(split, process_index, process_count))
    if limit:
      ds = ds.take(limit // process_count)
    for x, y in tfds.as_numpy(ds.batch(local).prefetch(tf.data.AUTOTUNE)):
      n = len(y)
      pad = local - n
      yield {'image': np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]),
             'label': np.concatenate([y, np.zeros(pad, y.dtype)]),
             'mask': (np.arange(local) < n).astype(np.float32)}
