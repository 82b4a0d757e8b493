"""Why each arm of a comparison ended where it did, from its runs' own records.

  python -m benchmarks.run_diagnostics --workdir=<compare workdir> [--out=diag.json]

For every <variant>/seed<s> with a result.json: test accuracy, steps, process seconds a
step (train_time_s / steps), the cold compile (compile_s), parameters; the learned lr
multiplier at the end and the share of logged rows with lr on a bound (hpo/at_bound_lr);
tau's entropy as a fraction of the uniform policy's and its top pair; the step the
search ended. Printed as a markdown table (issue #34 item 6's "measured reason").
"""

import glob
import json
import math
import os

from absl import app, flags

from dha_jax.io import metrics_io

FLAGS = flags.FLAGS


def diagnose(run_dir):
  """The numbers of one run (its result.json and metrics.jsonl)."""
  with open(os.path.join(run_dir, 'result.json')) as f:
    result = json.load(f)
  rows = metrics_io.read_rows(run_dir)
  steps = result.get('steps') or 0
  out = {'test_accuracy': result.get('test/accuracy'), 'steps': steps,
         's_per_step': result.get('train_time_s', 0.0) / steps if steps else None,
         'compile_s': result.get('compile_s'), 'params_m': (result.get('num_params') or 0) / 1e6,
         'search_end_step': result.get('search_end_step')}
  multipliers = [r['hpo/lr_multiplier'] for r in rows if 'hpo/lr_multiplier' in r]
  bounds = [r['hpo/at_bound_lr'] for r in rows if 'hpo/at_bound_lr' in r]
  if multipliers:
    out['lr_multiplier_end'] = multipliers[-1]
  if bounds:
    out['lr_on_bound_share'] = sum(b > 0 for b in bounds) / len(bounds)
  policy = [r for r in rows if 'policy/entropy' in r]
  if policy and 'policy' in result:
    pairs = len(result['policy']['probabilities']) * len(result['policy']['probabilities'][0])
    out['tau_entropy_fraction'] = policy[-1]['policy/entropy'] / math.log(pairs)
    out['tau_top_pair'] = f"{policy[-1]['policy/top1_pair']} {policy[-1]['policy/top1_prob']:.3f}"
  return out


def collect(workdir):
  """{variant: {seed: diagnose(...)}} for every finished run under a compare workdir."""
  table = {}
  for path in sorted(glob.glob(os.path.join(workdir, '*', 'seed*', 'result.json'))):
    run_dir = os.path.dirname(path)
    variant, seed = run_dir.split(os.sep)[-2], run_dir.split(os.sep)[-1][len('seed'):]
    table.setdefault(variant, {})[seed] = diagnose(run_dir)
  return table


def markdown(table):
  cols = ('test_accuracy', 'steps', 's_per_step', 'compile_s', 'params_m', 'search_end_step',
          'lr_multiplier_end', 'lr_on_bound_share', 'tau_entropy_fraction', 'tau_top_pair')
  lines = ['| variant | seed | ' + ' | '.join(cols) + ' |', '|' + '---|' * (len(cols) + 2)]
  fmt = lambda v: '—' if v is None else (f'{v:.4g}' if isinstance(v, float) else str(v))
  for variant, seeds in table.items():
    for seed, d in seeds.items():
      lines.append(f'| {variant} | {seed} | ' + ' | '.join(fmt(d.get(c)) for c in cols) + ' |')
  return '\n'.join(lines)


def main(argv):
  del argv
  table = collect(FLAGS.workdir)
  print(markdown(table))
  if FLAGS.out:
    with open(FLAGS.out, 'w') as f:
      json.dump(table, f, indent=1)


if __name__ == '__main__':
  flags.DEFINE_string('workdir', None, 'A dha_jax.compare workdir.', required=True)
  flags.DEFINE_string('out', '', 'Also write the table as JSON here.')
  app.run(main)
