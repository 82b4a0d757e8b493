"""The comparison's report from its runs' results: the per-variant summary (means,
t-intervals, paired differences), the markdown table, lr_grid's choices, the test set's
noise floor and comparison.png. Pure functions of the results (dha_jax/compare.py runs
the runs and writes the files)."""

from dha_jax.comparison import stats

# Scalars of result.json kept per seed in comparison.json.
KEPT = ('test/accuracy', 'test/top5', 'steps', 'wall_time_s', 'train_time_s', 'num_params')


def _genotype(r):
  a = r.get('architecture', {})
  g = a.get('genotype_str') or a.get('genotype_names') or '(fixed network)'
  return ' '.join(g) if isinstance(g, list) else str(g).replace('\n', ' / ')


def _mean(results, key):
  xs = [r[key] for r in results if r.get(key) is not None]
  return sum(xs) / len(xs) if xs else None


def summarize(results, variants, seeds, reference):
  """{variant: summary} from {variant: {seed: result}}: the accuracy's mean, t-interval
  and per-seed values, the paired difference against `reference`, the other means."""
  ref = {s: r['test/accuracy'] for s, r in results.get(reference, {}).items()}
  out = {}
  for v in variants:
    runs = results.get(v, {})
    done = [runs[s] for s in seeds if s in runs]
    acc = {s: runs[s]['test/accuracy'] for s in seeds if s in runs}
    mean, half, n = stats.mean_interval(acc.values())
    row = {'mean': mean, 'half_width': half, 'n': n, 'accuracy': acc,
           'missing': [s for s in seeds if s not in runs]}
    if any('test/top5' in r for r in done):
      row['top5_mean'], row['top5_half_width'], _ = stats.mean_interval(
          [r['test/top5'] for r in done if 'test/top5' in r])
    for k in ('steps', 'wall_time_s', 'train_time_s', 'num_params', 'search_steps',
              'test_examples'):
      row[k] = _mean(done, k)
    row['per_seed'] = {s: {k: runs[s][k] for k in KEPT + ('search_steps', 'lr_grid',
                                                         'lr_grid_factor') if k in runs[s]}
                       for s in acc}
    row['genotype'] = {s: _genotype(runs[s]) for s in acc}
    if reference and v != reference:
      d_mean, d_half, d_n, diffs = stats.paired_difference(acc, ref)
      row['difference'] = {'mean': d_mean, 'half_width': d_half, 'n': d_n, 'per_seed': diffs,
                           'excludes_zero': stats.excludes_zero(d_mean, d_half)}
    out[v] = row
  return out


def _pm(mean, half, scale=100.0, unit='%', signed=False):
  """'89.58 ± 0.42%' ('89.58%' without an interval; '' without a value)."""
  if mean is None:
    return ''
  m = f'{scale * mean:+.2f}' if signed else f'{scale * mean:.2f}'
  return m + (f' ± {scale * half:.2f}' if half is not None else '') + unit


def _num(x, fmt, scale=1.0):
  return '' if x is None else format(x * scale, fmt)


def table(summary, seeds, reference=''):
  """Markdown: one row per variant, '—' cells where no seed finished."""
  top5 = any('top5_mean' in r for r in summary.values())
  head = ['variant', 'test top-1 (95% CI)'] + (['test top-5 (95% CI)'] if top5 else [])
  head += ['seeds']
  if reference:
    head += [f'Δ vs {reference} (pp, paired 95% CI)']
  head += ['steps', 'wall time (min)', 'train time (min)', 'parameters (M)']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for v, r in summary.items():
    if not r['n']:
      cells = [v] + ['—'] * (len(head) - 1)
      cells[head.index('seeds')] = f'0/{len(seeds)}'
      lines.append('| ' + ' | '.join(cells) + ' |')
      continue
    cells = [v, _pm(r['mean'], r['half_width'])]
    if top5:
      cells.append(_pm(r.get('top5_mean'), r.get('top5_half_width')))
    cells.append(f"{r['n']}/{len(seeds)}")
    if reference:
      d = r.get('difference')
      if d is None:
        cells.append('(reference)')
      elif not d['n']:
        cells.append('—')
      else:
        cells.append(_pm(d['mean'], d['half_width'], unit='', signed=True) +
                     (' *' if d['excludes_zero'] else ''))
    steps = _num(r['steps'], '.0f')
    if r.get('search_steps') is not None:
      steps = f"{r['search_steps']:.0f} + {r['steps'] - r['search_steps']:.0f}"
    cells += [steps, _num(r['wall_time_s'], '.1f', 1 / 60),
              _num(r['train_time_s'], '.1f', 1 / 60), _num(r['num_params'], '.3f', 1e-6)]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def genotypes(summary):
  """Markdown list of each searched variant's derived architecture per seed."""
  lines = []
  for v, r in summary.items():
    for s, g in r['genotype'].items():
      if g != '(fixed network)':
        lines.append(f'- {v}, seed {s}: {g}')
  return '\n'.join(lines) + '\n' if lines else ''


def lr_grid_choices(summary):
  """Markdown list of the factor of config.lr lr_grid chose per seed, on validation."""
  lines = []
  for v, r in summary.items():
    for s, kept in r['per_seed'].items():
      if 'lr_grid' in kept:
        vals = ', '.join(f'x{f}: {100 * a:.2f}%' for f, a in kept['lr_grid'].items())
        lines.append(f"- {v}, seed {s}: lr x{kept['lr_grid_factor']:g} (val accuracy {vals})")
  return '\n'.join(lines) + '\n' if lines else ''


def noise_floor(summary, reference):
  """95% half-width of one test accuracy from the test set's size alone (binomial, at
  the reference's mean, else the first variant's): differences inside it are noise."""
  rows = [r for v, r in summary.items() if r['n'] and r.get('test_examples')]
  if not rows:
    return None
  r = summary[reference] if summary.get(reference, {}).get('test_examples') else rows[0]
  p = r['mean']
  return 1.96 * (p * (1 - p) / r['test_examples']) ** 0.5


def plot(summary, reference, path, num_seeds):
  """Means with their intervals per variant (the reference in red), and the paired
  differences against 0 (filled where the interval excludes it); the grey band is the
  test set's binomial noise floor (noise_floor), around the reference and around 0."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = [v for v, r in summary.items() if r['n']]
  ys = list(range(len(names)))[::-1]
  labels = [v if summary[v]['n'] == num_seeds else f"{v} ({summary[v]['n']}/{num_seeds} seeds)"
            for v in names]
  panels = 2 if reference else 1
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 0.5 * len(names) + 1.8),
                           sharey=True, squeeze=False)
  ax = axes[0, 0]
  for y, v in zip(ys, names):
    r, ref = summary[v], v == reference
    ax.errorbar(100 * r['mean'], y, xerr=100 * (r['half_width'] or 0), fmt='D' if ref else 'o',
                color='tab:red' if ref else 'tab:blue', capsize=4, ms=6)
  floor = noise_floor(summary, reference)
  if reference in names:
    ax.axvline(100 * summary[reference]['mean'], color='tab:red', ls=':', lw=1)
    if floor:
      m = 100 * summary[reference]['mean']
      ax.axvspan(m - 100 * floor, m + 100 * floor, color='0.85', zorder=0,
                 label=f'test-set noise (±{100 * floor:.2f} pp, binomial 95%)')
      ax.legend(fontsize=8, loc='lower left')
  ax.set_yticks(ys, labels)
  ax.margins(y=0.25)
  ax.set_title(f'test accuracy, {num_seeds} seed(s)', fontsize=10)
  ax.set_xlabel('test top-1 (%): mean and 95% t-interval')
  ax.grid(axis='x', alpha=0.3)
  if reference:
    ax = axes[0, 1]
    ax.axvline(0, color='tab:red', lw=1)
    if floor:
      ax.axvspan(-100 * floor, 100 * floor, color='0.85', zorder=0)
    for y, v in zip(ys, names):
      d = summary[v].get('difference')
      if d is None or not d['n']:
        continue
      sig = d['excludes_zero']
      ax.errorbar(100 * d['mean'], y, xerr=100 * (d['half_width'] or 0), fmt='o',
                  color='black' if sig else 'tab:gray', mfc='black' if sig else 'white',
                  capsize=4, ms=6)
    ax.set_title(f'paired difference vs {reference} (filled: the interval excludes 0)',
                 fontsize=10)
    ax.set_xlabel(f'variant - {reference} on the same seed (pp): mean and 95% t-interval')
    ax.grid(axis='x', alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
