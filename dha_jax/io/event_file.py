"""TensorBoard event files without TensorFlow: scalars and images as TensorBoard reads them.

TensorBoard's usual writers (tf.summary, clu's) import TensorFlow, ~7 s at every start of a
run on a CPU. The format is small: TFRecord framing (length, masked CRC-32C of the
length, the record, its masked CRC-32C) around serialised Event protos, for which the
tensorboard package ships the classes. Scalars are written as `simple_value`, images as
PNG-encoded `Summary.Image`: the forms TensorBoard migrates to its scalar and image
dashboards itself.
"""

import io
import os
import socket
import struct
import time

import numpy as np


def _crc32c_table():
  table = []
  for n in range(256):
    c = n
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # the Castagnoli polynomial, reflected
    table.append(c)
  return tuple(table)


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  c = 0xFFFFFFFF
  for b in data:
    c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
  return c ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's mask: rotated right by 15 bits, plus a constant."""
  c = crc32c(data)
  return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
  """One TFRecord: the framing around `data`."""
  length = struct.pack('<Q', len(data))
  return (length + struct.pack('<I', masked_crc32c(length)) + data +
          struct.pack('<I', masked_crc32c(data)))


def _png(image) -> tuple:
  """(height, width, channels, PNG bytes) of an [H, W, C] uint8 or [0, 1] float array."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  a = np.asarray(image)
  if a.dtype != np.uint8:
    a = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  if a.ndim == 2:
    a = a[..., None]
  buf = io.BytesIO()
  Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(buf, format='PNG')
  return a.shape[0], a.shape[1], a.shape[2], buf.getvalue()


class EventFileWriter:
  """<logdir>/events.out.tfevents.<time>.<host>.<pid>: one file per writer, flushed after
  every write, so what a killed run logged is readable."""

  def __init__(self, logdir):
    from tensorboard.compat.proto import event_pb2, summary_pb2  # pylint: disable=g-import-not-at-top
    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    os.makedirs(logdir, exist_ok=True)
    name = f'events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}'
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, 'ab')
    self._write(self._event(wall_time=time.time(), file_version='brain.Event:2'))

  def _write(self, event):
    self._file.write(record(event.SerializeToString()))
    self._file.flush()

  def _values(self, step, values):
    self._write(self._event(wall_time=time.time(), step=int(step),
                            summary=self._summary(value=values)))

  def scalars(self, step, scalars: dict):
    self._values(step, [self._summary.Value(tag=k, simple_value=float(v))
                        for k, v in scalars.items()])

  def images(self, step, images: dict):
    """{tag: [H, W, C] or [1, H, W, C] image}; C in {1, 3, 4}."""
    values = []
    for tag, image in images.items():
      a = np.asarray(image)
      h, w, c, png = _png(a[0] if a.ndim == 4 else a)
      values.append(self._summary.Value(tag=tag, image=self._summary.Image(
          height=h, width=w, colorspace=c, encoded_image_string=png)))
    self._values(step, values)

  def close(self):
    if not self._file.closed:
      self._file.close()
