"""dha_jax.io.event_file against independent readers: CRC-32C's published check values,
TensorFlow's TFRecord reader (which verifies both CRCs) and TensorBoard's own loader."""

import os
import struct
import sys

import numpy as np
import pytest

from dha_jax.io import event_file


def test_crc32c_check_values():
  # RFC 3720 B.4 and the usual "123456789" check value of CRC-32C (Castagnoli)
  assert event_file.crc32c(b'123456789') == 0xE3069283
  assert event_file.crc32c(bytes(32)) == 0x8A9136AA
  assert event_file.crc32c(b'\xff' * 32) == 0x62A8AB43
  assert event_file.crc32c(bytes(range(32))) == 0x46DD794E
  assert event_file.crc32c(b'') == 0


def _write_run(logdir):
  w = event_file.EventFileWriter(logdir)
  image = np.zeros((5, 7, 3), np.uint8)
  image[1, 2] = (255, 10, 20)
  for step in (1, 2, 3):
    w.scalars(step, {'train/loss': 1.0 / step, 'lr': 0.1 * step})
  w.images(3, {'policy': image[None], 'gray': np.full((4, 6, 1), 0.5, np.float32)})
  w.close()
  return w.path, image


def test_tensorflow_reads_every_record_with_its_crcs(tmp_path):
  """TFRecordDataset checks the length's and the data's CRC of every record."""
  path, _ = _write_run(str(tmp_path))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  events = [event_pb2.Event.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
  assert events[0].file_version == 'brain.Event:2'
  scalars = [(e.step, v.tag, v.simple_value) for e in events[1:4] for v in e.summary.value]
  assert scalars == [(s, t, pytest.approx(x, rel=1e-6)) for s in (1, 2, 3)
                     for t, x in (('train/loss', 1.0 / s), ('lr', 0.1 * s))]
  # a flipped byte in a record is caught by the CRC
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 0xFF
  bad = str(tmp_path / 'events.out.tfevents.bad')
  open(bad, 'wb').write(bytes(data))
  with pytest.raises(tf.errors.DataLossError):
    list(tf.data.TFRecordDataset(bad))


def test_tensorboard_shows_the_scalars_and_the_images(tmp_path):
  _, image = _write_run(str(tmp_path))
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={'images': 0})
  acc.Reload()
  assert [(s.step, s.value) for s in acc.Scalars('lr')] == [
      (s, pytest.approx(0.1 * s, rel=1e-6)) for s in (1, 2, 3)]
  (policy,), (gray,) = acc.Images('policy'), acc.Images('gray')
  assert (policy.step, policy.height, policy.width) == (3, 5, 7)
  import io  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(policy.encoded_image_string))),
                                image)
  g = np.asarray(Image.open(io.BytesIO(gray.encoded_image_string)))
  assert g.shape == (4, 6) and int(g[0, 0]) == 128  # 0.5 -> 128, one channel


def test_a_run_logs_without_importing_tensorflow(tmp_path):
  """The point of the module: starting a run (dha_jax.main and dha_jax.training.train imported, a
  row of metrics written) does not pay TensorFlow's import."""
  import subprocess  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = ('import sys; from dha_jax import main; from dha_jax.io import metrics_io; '
          'from dha_jax.training import train; '
          f'w = metrics_io.MetricsWriter({str(tmp_path)!r}, 0); w.write(1, {{"a": 1.0}}); '
          'w.close(); assert "tensorflow" not in sys.modules, "tensorflow was imported"')
  out = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True,
                       text=True, check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  (name,) = [n for n in os.listdir(tmp_path) if 'tfevents' in n]
  assert struct.unpack('<Q', open(tmp_path / name, 'rb').read(8))[0] > 0
