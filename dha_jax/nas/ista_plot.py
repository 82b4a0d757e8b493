"""How an ISTA search froze, as a picture: each node's ||x_new - x_last|| per epoch (the
number the freeze threshold is compared with) against the threshold. Read from the run's
metrics rows, so it also draws a finished run:

  import json; from dha_jax.nas import ista, ista_plot
  rows = [json.loads(l) for l in open('<workdir>/metrics.jsonl')]
  fig = ista_plot.freezing_figure(ista.moves_per_epoch(rows), threshold=0.1)
"""

import matplotlib
import matplotlib.ticker

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position


def freezing_figure(moves, threshold, freeze_from_epoch=2, cells=('normal', 'reduce')):
  """One panel per cell type, one line per node; a frozen node's line ends with a filled
  marker at the movement that froze it (later epochs record 0 and are not drawn)."""
  epochs = np.array(sorted(moves))
  m = np.stack([moves[k] for k in epochs])  # [E, 2, 4]
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for t, (ax, cell) in enumerate(zip(axes, cells)):
    for i in range(m.shape[2]):
      v = m[:, t, i]
      live = v > 0
      line, = ax.plot(epochs[live], v[live], 'o-', ms=3, label=f'n{i + 2}')
      froze = np.flatnonzero(live & (v <= threshold) & (epochs >= freeze_from_epoch))
      if froze.size:
        ax.plot(epochs[froze[0]], v[froze[0]], 's', ms=8, color=line.get_color())
    ax.axhline(threshold, ls='--', color='k', lw=1, label=f'threshold {threshold:g}')
    ax.set_yscale('log')
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel('end of epoch')
    ax.set_title(f'{cell} cell')
  axes[0].set_ylabel('||x_new - x_last||')
  axes[1].legend(fontsize=8)
  fig.suptitle(f'ISTA code movement per epoch (freezing from epoch {freeze_from_epoch}; '
               'square = frozen)')
  fig.tight_layout()
  return fig
