"""The eta trajectory of a run as a PNG: learning rate and weight decay against step.

  from dha_jax.hpo import plot
  plot.plot_hparams('<workdir>/metrics.jsonl', '<workdir>/hparams.png')

Solid: the value the optimizer used ('lr', 'weight_decay', or '<name>/<group>' with
per_group). Dotted: the learned value ('hpo/...') when it multiplies a schedule (use_schedule).
Dashed: the bounds, read from the config.json written beside metrics.jsonl.
"""

import json
import os
import re

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

_PANELS = (('lr', 'learning rate', 'lr_bounds'),
           ('weight_decay', 'weight decay', 'wd_bounds'))


def _hpo_config(metrics_path):
  """config.hpo of the run (config.json beside metrics.jsonl), {} when absent or off."""
  path = os.path.join(os.path.dirname(os.path.abspath(metrics_path)), 'config.json')
  try:
    with open(path) as f:
      hpo = json.load(f).get('hpo', {})
  except (OSError, ValueError):
    return {}
  return hpo if hpo.get('enabled') else {}


def _series(rows, pattern):
  """{key: (steps, values)} for every metric key matching pattern."""
  out = {}
  for r in rows:
    for k, v in r.items():
      if re.fullmatch(pattern, k) and isinstance(v, (int, float)):
        s = out.setdefault(k, ([], []))
        s[0].append(r['step'])
        s[1].append(v)
  return out


def plot_hparams(metrics_jsonl_path, out_png, bounds=None):
  """Writes out_png; returns its path, or None when the file holds no eta values.
  bounds: {'lr_bounds': (lo, hi), 'wd_bounds': (lo, hi)} overrides config.json."""
  with open(metrics_jsonl_path) as f:
    rows = [json.loads(l) for l in f if l.strip()]
  rows = [r for r in rows if 'step' in r]
  hpo = _hpo_config(metrics_jsonl_path)
  if bounds is None:
    bounds = {k: hpo[k] for k in ('lr_bounds', 'wd_bounds') if hpo.get(k)}
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  drawn = False
  for ax, (name, title, bound_key) in zip(axes, _PANELS):
    used = _series(rows, rf'{name}(/\w+)?')
    learned = _series(rows, rf'hpo/{name}(/\w+)?')
    if len(used) > 1:  # per group: the bare key repeats the first group
      used.pop(name, None)
    for k, (x, y) in sorted(used.items()):
      line, = ax.plot(x, y, label=k)
      lk = 'hpo/' + k
      if name == 'lr' and hpo.get('use_schedule') and lk in learned:
        ax.plot(*learned[lk], ':', color=line.get_color(), label=lk + ' (learned)')
      drawn = True
    for i, b in enumerate(bounds.get(bound_key, ())):
      ax.axhline(b, color='gray', linestyle='--', linewidth=1, label=None if i else 'bounds')
    ax.set(title=title, xlabel='step', yscale='log')
    if used:
      ax.legend(fontsize=8)
  if not drawn:
    plt.close(fig)
    return None
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  plt.close(fig)
  return out_png
