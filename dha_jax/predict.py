"""Command line: the top classes of image files under an exported model.

  python -m dha_jax.predict --model=<workdir>/model img1.png img2.jpg [--top=3]

Each file is read as the training data loader read it (grey or RGB to the model's
channels, shorter side resized to the model's input side, centre crop), then
`export.load_model(...).predict` gives the logits.
"""

import sys

import numpy as np
from absl import app, flags

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


def main(argv):
  files = argv[1:]
  if not files:
    raise app.UsageError('give one or more image files after the flags')
  from dha_jax import export  # pylint: disable=g-import-not-at-top
  from dha_jax.data import folder  # pylint: disable=g-import-not-at-top
  model = export.load_model(FLAGS.model)
  h, w, c = model.input_shape
  if h != w:
    raise ValueError(f'the model takes {h}x{w} inputs; this tool reads square crops only')
  images = np.stack([folder.read_image(f, h, c) for f in files])
  for f, row in zip(files, top_classes(model.predict(images), FLAGS.top)):
    print(f + ': ' + ', '.join(f'class {k} ({p:.3f})' for k, p in row))
  sys.stdout.flush()
  return 0


if __name__ == '__main__':
  app.run(main)
