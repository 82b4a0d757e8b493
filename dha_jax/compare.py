"""Runs the papers' comparisons on one dataset and writes a markdown table.

  python -m dha_jax.compare --config=configs/fashion_mnist.py --workdir=/tmp/cmp \
      --variants=fixed,randaugment,nas,da_hpo,sequential,dha [--budget_minutes=60] \
      [--search=dsnas] [--override=--config.batch_size=64 ...]

Each variant (dha_jax/experiments.py) runs as `python -m dha_jax.main` in
<workdir>/<variant>; 'sequential' runs the NAS-alone search first (<workdir>/sequential_search)
and then trains the derived genotype from scratch with DA+HPO, the budget split between the
two halves. With --budget_minutes every variant gets the same training time budget
(config.time_budget_s; --budget_clock=process counts CPU seconds instead of wall seconds,
for a machine that other jobs share). A finished variant is not run again (its result.json is read), an
interrupted one resumes. <workdir>/comparison.md and comparison.json hold the table.
"""

import json
import os
import subprocess
import sys

from absl import app, flags

from dha_jax import experiments

FLAGS = flags.FLAGS
flags.DEFINE_string('config', None, 'A dataset config file that takes a variant argument.')
flags.DEFINE_string('workdir', None, 'Folder for the runs and the table.')
flags.DEFINE_list('variants', list(experiments.VARIANTS), 'Which variants, in order.')
flags.DEFINE_string('search', '', "Strategy of the searched variants ('' = the config's).")
flags.DEFINE_float('budget_minutes', 0.0, 'Equal training time budget per variant.')
flags.DEFINE_enum('budget_clock', 'wall', ['wall', 'process'],
                  "What the budget counts: 'wall' seconds, or 'process' CPU seconds of the "
                  'run (fair when other jobs share the machine).')
flags.DEFINE_multi_string('override', [], 'Extra --config.field=value for every run.')
flags.mark_flags_as_required(['config', 'workdir'])


def _run(variant_arg, workdir, budget_s, extra=()):
  """One training run (resumed if interrupted); returns its result.json."""
  path = os.path.join(workdir, 'result.json')
  if not os.path.exists(path):
    cmd = [sys.executable, '-m', 'dha_jax.main', f'--config={FLAGS.config}:{variant_arg}',
           f'--workdir={workdir}', *FLAGS.override, *extra]
    if budget_s:
      cmd += [f'--config.time_budget_s={budget_s}',
              f'--config.time_budget_clock={FLAGS.budget_clock}']
    print('$ ' + ' '.join(cmd), flush=True)
    done = subprocess.run(cmd, check=False)
    if done.returncode or not os.path.exists(path):
      raise RuntimeError(f'{variant_arg} failed (exit {done.returncode}); its output is above '
                         f'and in {workdir}; run the same command again to resume it')
  with open(path) as f:
    return json.load(f)


def genotype_flag(result):
  """--config.nas.genotype value that makes the fixed-genotype strategy train `result`'s
  derived architecture (a tuple for choice spaces, Genotype JSON for cell spaces)."""
  g = result['architecture']['genotype']
  if isinstance(g, list):
    return '--config.nas.genotype=(' + ','.join(str(int(i)) for i in g) + ',)'
  return '--config.nas.genotype=' + json.dumps(g, separators=(',', ':'))


def run_variant(variant, budget_s):
  arg = variant + (f'/{FLAGS.search}' if FLAGS.search else '')
  wd = os.path.join(FLAGS.workdir, variant)
  if variant != 'sequential':
    return _run(arg, wd, budget_s)
  half = budget_s / 2 if budget_s else 0
  first = _run(arg.replace('sequential', 'nas'), wd + '_search', half)
  second = _run(arg, wd, half, [genotype_flag(first)])
  second['wall_time_s'] = first['wall_time_s'] + second['wall_time_s']
  second['images_processed'] = first['images_processed'] + second['images_processed']
  return second


def table(rows):
  """Markdown: variant, test accuracy (top-5 where present), wall time, model size."""
  top5 = any('test/top5' in r for _, r in rows)
  head = '| variant | test top-1 |' + (' test top-5 |' if top5 else '') + \
      ' wall time (min) | steps | parameters (M) | genotype |'
  lines = [head, '|' + '---|' * (head.count('|') - 1)]
  for name, r in rows:
    g = r.get('architecture', {}).get('genotype_str') or r.get('architecture', {}).get(
        'genotype_names') or '(fixed network)'
    g = ' '.join(g) if isinstance(g, list) else str(g).replace('\n', ' / ')
    cells = [name, f"{100 * r['test/accuracy']:.2f}%"]
    if top5:
      cells.append(f"{100 * r['test/top5']:.2f}%" if 'test/top5' in r else '')
    cells += [f"{r['wall_time_s'] / 60:.1f}", str(r.get('steps', '')),
              f"{r['num_params'] / 1e6:.3f}", g]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for v in FLAGS.variants:
    if v not in experiments.VARIANTS:
      raise app.UsageError(f'--variants: {v!r} is not one of {experiments.VARIANTS}')
  os.makedirs(FLAGS.workdir, exist_ok=True)
  budget_s = FLAGS.budget_minutes * 60
  rows = [(v, run_variant(v, budget_s)) for v in FLAGS.variants]
  md = table(rows)
  with open(os.path.join(FLAGS.workdir, 'comparison.md'), 'w') as f:
    f.write(f'{FLAGS.config}, budget {FLAGS.budget_minutes:g} min ({FLAGS.budget_clock}) '
            'per variant\n\n' + md)
  with open(os.path.join(FLAGS.workdir, 'comparison.json'), 'w') as f:
    json.dump(dict(rows), f, indent=2)
  print(md)
  return 0


if __name__ == '__main__':
  app.run(main)
