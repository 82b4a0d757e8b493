"""Cost of each AutoML component relative to the plain step of the same config, in one run.

  python -m benchmarks.component_cost --config=configs/fashion_mnist.py \
      --variants=policy,policy_val,hpo_train,hpo_val,hpo_lagged,hpo_forward

Each variant is the base config with one component switched on. All steps are compiled
first, then timed ALTERNATELY (plain, variant 1, variant 2, ..., plain, ...) so that
every variant sees the same machine load; medians. Prints one JSON line per variant and
a markdown table.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from benchmarks import step_cost

config_flags.DEFINE_config_file('config', None, 'base config file', lock_config=False)
flags.DEFINE_string('variants', 'policy', 'comma-separated: policy (tau on the papers\' '
                    "objective), policy_val (tau on the held-out one), hpo_train, hpo_val, "
                    'hpo_lagged, hpo_forward (every step: every_steps=1, its worst case)')
flags.DEFINE_integer('steps', 20, 'timed steps per variant')
FLAGS = flags.FLAGS


def variant(base, name):
  c = base.copy_and_resolve_references()
  c.policy.name, c.nas.strategy = 'none', 'none'
  c.hpo.enabled = False
  if name in ('policy', 'policy_val'):
    c.policy.name = 'learned'
    c.policy.objective = 'val' if name == 'policy_val' else 'train'
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
  import numpy as np  # pylint: disable=g-import-not-at-top
  names = ['plain'] + FLAGS.variants.split(',')
  runs = [step_cost.build(variant(FLAGS.config, n))[0] for n in names]
  for run in runs:  # warm-up
    run(), run()
  times = [[] for _ in names]
  for _ in range(FLAGS.steps):
    for run, acc in zip(runs, times):
      acc.append(run())
  ms = [float(np.median(t) * 1e3) for t in times]
  print('| variant | ms/step | ratio to plain |\n|---|---|---|')
  for name, m in zip(names, ms):
    print(json.dumps({'label': name, 'ms_per_step': m, 'ratio': m / ms[0]}))
    print(f'| {name} | {m:.1f} | {m / ms[0]:.3f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
