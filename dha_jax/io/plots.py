"""Pictures a person would rather look at than read: the policy heat map (and, from the
components, the eta trajectory and architecture maps). Matplotlib, Agg backend."""

import io

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def _to_array(fig):
  buf = io.BytesIO()
  fig.savefig(buf, format='png', dpi=80)
  buf.seek(0)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  return np.asarray(Image.open(buf).convert('RGB'))


def policy_figure(probs, op_names):
  """Heat map of p(first op, second op)."""
  probs = np.asarray(probs)
  fig, ax = plt.subplots(figsize=(7.5, 6.5))
  im = ax.imshow(probs, cmap='viridis')
  ax.set_xticks(range(len(op_names)), op_names, rotation=90, fontsize=8)
  ax.set_yticks(range(len(op_names)), op_names, fontsize=8)
  ax.set_xlabel('second op')
  ax.set_ylabel('first op')
  ax.set_title(f'augmentation policy p(tau)  (uniform = {1 / probs.size:.4f})')
  fig.colorbar(im, ax=ax, fraction=0.046)
  fig.tight_layout()
  return fig


def save_figure(fig, path):
  """Writes `fig` to `path`, closes it and returns it as an RGB array (for TensorBoard)."""
  fig.savefig(path, dpi=100)
  arr = _to_array(fig)
  plt.close(fig)
  return arr

