"""Throughput of the host input pipeline alone for the ImageNet config: images/s.

  python -m benchmarks.input_pipeline [--batch_size=256] [--batches=50] [--small]
      [--nodecode] [--out_dir=benchmarks/results]

Reads through the project's own streaming reader,
`dha_jax.data.tfds_source.StreamingDataset(cfg.dataset, seed).train_iterator('train', ...)`
of configs/imagenet.py (imagenet2012, in_memory False, load_size 256), with tfds.load
faked offline by `tfds.testing.mock_data`. Nothing else runs: no device, no model, no
augmentation on the accelerator side (the rrc_flip crop of preprocess/ is not timed).

JPEG decode. tfds' own mock data does NOT exercise it: with no decoders it yields raw
uint8 arrays of random side 5..50 px, so only resize + crop + shuffle + batch would be
timed (--nodecode measures exactly that). By default the mocked `_as_dataset` instead
serves a pool of --pool JPEGs encoded once with tf.io.encode_jpeg (quality 90, sides 333..500
px like most ImageNet photos, smooth content plus noise so the files are photo-like in
size (mean_jpeg_kb, ~90 kB; ImageNet train averages ~110 kB)) and decodes them per example with
tf.io.decode_jpeg in a parallel map, as TFDS's Image feature does. Not included either
way: TFRecord file reads and tf.Example parsing of the real dataset (small next to
decode), and whatever the real photos cost beyond these synthetic ones.

Timed: --batches batches after --warmup untimed ones (graph building, autotune ramp-up).
Prints one JSON line and writes it to <out_dir>/input_pipeline_b<batch>_l<size>_<date>.json:
images_per_s, cores (os.cpu_count()), images_per_s_per_core, cores_for_8000 (cores at
that per-core rate needed to feed 8,000 images/s), batch, load_size, jpeg_decode, date.
"""

import datetime
import json
import os
import time

from absl import app, flags

FLAGS = flags.FLAGS
TARGET = 8000.0  # images/s the accelerator side should be fed


def _define_flags():
  flags.DEFINE_integer('batch_size', 256, 'images per batch')
  flags.DEFINE_integer('batches', 50, 'timed batches')
  flags.DEFINE_integer('warmup', 2, 'untimed batches first')
  flags.DEFINE_integer('pool', 128, 'distinct JPEGs served in turn (with decode)')
  flags.DEFINE_bool('decode', True, 'serve JPEG bytes and decode them per example '
                    '(--nodecode: tfds mock_data raw arrays, no decode)')
  flags.DEFINE_bool('small', False, 'a run of a few seconds: batch 16, 5 batches, '
                    'load_size 64, pool 16')
  flags.DEFINE_string('out_dir', 'benchmarks/results', 'where the JSON file goes')


def _jpeg_pool(n, seed=0):
  """n JPEG strings (quality 90) of photo-like size: sides 333..500 px, low-frequency
  colour fields plus pixel noise. Returns (encoded bytes list, mean kB, mean h, mean w)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  out, hs, ws = [], [], []
  for _ in range(n):
    h, w = (int(v) for v in rng.integers(333, 501, size=2))
    coarse = rng.uniform(0, 255, size=(1, max(2, h // 24), max(2, w // 24), 3))
    img = tf.image.resize(coarse.astype(np.float32), (h, w), method='bicubic')[0].numpy()
    img += rng.normal(0, 16, size=img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    out.append(tf.io.encode_jpeg(img, quality=90).numpy())
    hs.append(h)
    ws.append(w)
  return out, float(np.mean([len(b) for b in out]) / 1e3), float(np.mean(hs)), float(
      np.mean(ws))


def _jpeg_as_dataset(pool, seed=0):
  """A replacement for FileReaderBuilder._as_dataset: the pool, repeated, JPEG-decoded
  per example in a parallel map ({'image', 'label'}, as imagenet2012's features)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  labels = np.random.default_rng(seed).integers(0, 1000, size=len(pool)).astype(np.int64)

  def as_dataset(self, *args, **kwargs):
    del self, args, kwargs
    ds = tf.data.Dataset.from_tensor_slices((tf.constant(pool), labels)).repeat()
    return ds.map(lambda b, y: {'image': tf.io.decode_jpeg(b, channels=3), 'label': y},
                  num_parallel_calls=tf.data.AUTOTUNE)

  return as_dataset


def run(batch_size=256, batches=50, load_size=None, warmup=2, decode=True, pool=128,
        out_dir='benchmarks/results', seed=0):
  """Times the reader; writes and returns the result dict. load_size None: the config's."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from configs import imagenet  # pylint: disable=g-import-not-at-top
  from dha_jax.data import tfds_source  # pylint: disable=g-import-not-at-top
  cfg = imagenet.get_config().dataset
  if load_size is not None:
    cfg.load_size = load_size
  load_size = cfg.load_size
  extra = {}
  if decode:
    t0 = time.perf_counter()
    jpegs, kb, h, w = _jpeg_pool(pool, seed)
    extra = {'mean_jpeg_kb': round(kb, 1), 'mean_source_hw': [round(h), round(w)],
             'pool': pool, 'pool_encode_s': round(time.perf_counter() - t0, 2)}
    mock = tfds.testing.mock_data(as_dataset_fn=_jpeg_as_dataset(jpegs, seed))
    source = ('tfds.testing.mock_data, _as_dataset replaced: JPEG pool decoded per '
              'example with tf.io.decode_jpeg')
  else:
    mock = tfds.testing.mock_data(num_examples=100000)
    source = ('tfds.testing.mock_data default: raw uint8 arrays of side 5..50 px, '
              'NO JPEG decode')
  with mock:
    ds = tfds_source.StreamingDataset(cfg, seed)
    it = ds.train_iterator('train', batch_size, seed)
    for _ in range(warmup):
      next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
      b = next(it)
      n += len(b['label'])
    dt = time.perf_counter() - t0
  shape = list(b['image'].shape)
  if shape != [batch_size, load_size, load_size, 3]:
    raise AssertionError(f'unexpected batch shape {shape}')
  cores = os.cpu_count()
  ips = n / dt
  out = {'images_per_s': round(ips, 1), 'cores': cores,
         'images_per_s_per_core': round(ips / cores, 1),
         'cores_for_8000': round(TARGET / (ips / cores), 1),
         'batch': batch_size, 'batches': batches, 'warmup': warmup,
         'load_size': load_size, 'jpeg_decode': bool(decode), 'seconds': round(dt, 3),
         'source': source, **extra, 'tensorflow': tf.__version__,
         'date': datetime.datetime.now().isoformat(timespec='seconds')}
  os.makedirs(out_dir, exist_ok=True)
  stamp = datetime.datetime.now().strftime('%Y-%m-%dT%H%M%S')
  path = os.path.join(out_dir, f'input_pipeline_b{batch_size}_l{load_size}_{stamp}.json')
  with open(path, 'w') as f:
    json.dump(out, f, indent=1)
  out['file'] = path
  return out


def main(argv):
  del argv
  if FLAGS.small:
    kw = dict(batch_size=16, batches=5, load_size=64, pool=16, warmup=1)
  else:
    kw = dict(batch_size=FLAGS.batch_size, batches=FLAGS.batches, pool=FLAGS.pool, warmup=FLAGS.warmup)
  print(json.dumps(run(decode=FLAGS.decode, out_dir=FLAGS.out_dir, **kw)))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
