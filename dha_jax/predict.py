"""Command line: the top classes of image files under an exported model.

  python -m dha_jax.predict --model=<workdir>/model img1.png img2.jpg [--top=3]

Each file is read as the training data loader read it (grey or RGB to the model's
channels, shorter side resized to the model's input side, centre crop), then
`export.load_model(...).predict` gives the logits. An image of another size or channel
count is converted that way with a warning on stderr; an unreadable file is one error
line (exit status 2), as is a missing or foreign model folder.
"""

import sys

import numpy as np
from absl import app, flags

from dha_jax.core import cli

FLAGS = flags.FLAGS
flags.DEFINE_string('model', None, 'The model/ folder of a finished run.')
flags.DEFINE_integer('top', 3, 'How many classes to print per image.')
flags.mark_flags_as_required(['model'])


def top_classes(logits, k):
  """[(class, probability)] * k per row, most probable first."""
  z = logits - logits.max(-1, keepdims=True)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  order = np.argsort(-p, -1)[:, :k]
  return [[(int(c), float(p[i, c])) for c in row] for i, row in enumerate(order)]


def read(path, side, channels):
  """The image as the model takes it (uint8 [side, side, channels]); a warning on stderr
  when the file had another size or channel count."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from dha_jax.data import folder  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as img:
      size, bands = img.size, len(img.getbands())
  except (OSError, ValueError) as e:
    raise ValueError(f'cannot read image {path}: {cli.one_line(e)}') from e
  if size != (side, side) or bands != channels:
    print(f'warning: {path} is {size[0]}x{size[1]} with {bands} channel(s); the model takes '
          f'{side}x{side}x{channels}: converted, shorter side resized and centre-cropped',
          file=sys.stderr)
  return folder.read_image(path, side, channels)


@cli.reported
def main(argv):
  files = argv[1:]
  if not files:
    raise app.UsageError('give one or more image files after the flags')
  from dha_jax.io import export  # pylint: disable=g-import-not-at-top
  model = export.load_model(FLAGS.model)
  h, w, c = model.input_shape
  if h != w:
    raise ValueError(f'the model takes {h}x{w} inputs; this tool reads square crops only')
  images = np.stack([read(f, h, c) for f in files])
  for f, row in zip(files, top_classes(model.predict(images), FLAGS.top)):
    print(f + ': ' + ', '.join(f'class {k} ({p:.3f})' for k, p in row))
  sys.stdout.flush()
  return 0


if __name__ == '__main__':
  app.run(main)
