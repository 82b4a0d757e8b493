"""Cost of each AutoML component relative to the plain step of the same config, in one run.

  python benchmarks/component_cost.py --config=configs/fashion_mnist.py --variants=policy,hpo_train,hpo_val,hpo_lagged

Each variant is the base config with one component switched on; the plain step (all
off) is measured first and again last, and ratios use the mean of the two. Prints one
JSON line per variant and a markdown table.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from benchmarks import step_cost  # pylint: disable=wrong-import-position

config_flags.DEFINE_config_file('config', None, 'base config file', lock_config=False)
flags.DEFINE_string('variants', 'policy', 'comma-separated: policy, hpo_train, hpo_val, '
                    'hpo_lagged')
flags.DEFINE_integer('steps', 20, 'timed steps per variant')
FLAGS = flags.FLAGS


def variant(base, name):
  c = base.copy_and_resolve_references()
  c.policy.name, c.nas.strategy = 'none', 'none'
  c.hpo.enabled = False
  if name == 'policy':
    c.policy.name = 'learned'
  elif name.startswith('hpo_'):
    from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
    import ml_collections  # pylint: disable=g-import-not-at-top
    hp = ml_collections.ConfigDict(hypergrad.default_config())
    hp.enabled, hp.objective = True, name[4:]
    c.hpo = hp
  elif name != 'plain':
    raise ValueError(f'unknown variant {name!r}')
  return c


def main(argv):
  del argv
  rows = []
  plain = [step_cost.measure(variant(FLAGS.config, 'plain'), FLAGS.steps)]
  for name in FLAGS.variants.split(','):
    rows.append((name, step_cost.measure(variant(FLAGS.config, name), FLAGS.steps)))
  plain.append(step_cost.measure(variant(FLAGS.config, 'plain'), FLAGS.steps))
  base = sum(p['ms_per_step'] for p in plain) / 2
  print(json.dumps({'label': 'plain', 'ms_per_step': base,
                    'spread': [p['ms_per_step'] for p in plain]}))
  print('| variant | ms/step | ratio to plain |\n|---|---|---|')
  print(f'| plain | {base:.1f} | 1.00 |')
  for name, r in rows:
    print(json.dumps({'label': name, **r, 'ratio': r['ms_per_step'] / base}))
    print(f'| {name} | {r["ms_per_step"]:.1f} | {r["ms_per_step"] / base:.3f} |')


if __name__ == '__main__':
  app.run(main)
