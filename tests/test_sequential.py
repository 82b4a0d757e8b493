"""The 'sequential' variant per search strategy (DiffAutoML Table 2's "DARTS + DA&HPO",
"DSNAS + DA&HPO"): the second run trains the genotype the first derived, from scratch,
with the strategy's fixed counterpart and tau and eta learned.

The genotype goes over in the flag dha_jax.compare passes, parsed as dha_jax.main parses
it. Both halves run in this process (one device, 4 steps each, tests/sequential_config.py);
DARTS's pair is opt-in (DHA_SLOW_TESTS=1): ~2 CPU-minutes, most of it the supernet step's
compile, and its second half is ISTA's (darts_fixed with DA+HPO), so the default suite
checks its hand-over without training. The runner itself (subprocesses, workdirs, budget
split) is tests/test_compare.py's.
"""

import json
import os

import jax
import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections import config_flags

from dha_jax import nas
from dha_jax.comparison import experiments
from dha_jax.io import metrics_io
from dha_jax.nas import darts
from dha_jax.training import train

import exported
import slow

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'sequential_config.py')


def _parse(*args):
  """The config of `python -m dha_jax.main --config=CONFIG:<variant> <overrides>`."""
  argv = ['main', *args]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, '', flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


def _without_search_weights(genotype):
  if isinstance(genotype, list):
    return genotype
  return {k: v for k, v in genotype.items() if k not in darts.SEARCH_ONLY}


def test_darts_hands_its_genotype_to_darts_fixed_without_training():
  """The default suite's check of DARTS's hand-over (its two runs are opt-in, below): the
  genotype DARTS derives from its initial alpha, through the flag, is the one the
  sequential config's darts_fixed builds, with DA+HPO on."""
  assert experiments.searchable() == ['darts', 'dsnas', 'ista']  # each tested here
  search = nas.create(_parse(f'--config={CONFIG}:nas/darts'), 10, (8, 8, 1))
  _, _, arch, nas_state = search.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 1)))
  derived = search.summary(arch, nas_state)['architecture']['genotype']
  assert 'normal_weights' in derived  # the softmax of the chosen ops
  config = _parse(f'--config={CONFIG}:sequential/darts',
                  experiments.genotype_flag('darts', derived))
  assert config.policy.name == 'learned' and config.hpo.enabled
  fixed = nas.create(config, 10, (8, 8, 1))
  assert type(fixed) is nas.STRATEGIES['darts_fixed']
  assert fixed.summary({}, {})['architecture']['genotype'] == _without_search_weights(derived)


SLOW = slow.opt_in('the DARTS supernet step: ~2 CPU-minutes',
                   'the DARTS genotype hand-over test above')


@pytest.mark.parametrize('strategy', ['dsnas', 'ista', pytest.param('darts', marks=SLOW)])
def test_sequential_trains_the_searched_genotype_with_da_hpo(strategy, tmp_path):
  devices = jax.devices()[:1]
  first = train.train_and_evaluate(_parse(f'--config={CONFIG}:nas/{strategy}'),
                                   str(tmp_path / 'search'), devices)
  searched = first['architecture']['genotype']
  assert searched and 'policy' not in first  # NAS alone: no tau
  # the searched model, exported without its search state, is the run's
  exported.assert_reproduces_the_run(_parse(f'--config={CONFIG}:nas/{strategy}'),
                                     str(tmp_path / 'search'), first)
  config = _parse(f'--config={CONFIG}:sequential/{strategy}', experiments.genotype_flag(
      strategy, first['architecture']['genotype']))
  fixed = nas.STRATEGIES[strategy].fixed_counterpart
  assert fixed and config.nas.strategy == fixed == experiments.fixed_counterpart(strategy)
  assert config.policy.name == 'learned' and config.hpo.enabled  # DA+HPO
  wd = str(tmp_path / 'train')
  second = train.train_and_evaluate(config, wd, devices)
  # the very genotype (a cell without the search's edge weights), trained as the child
  expected = _without_search_weights(searched)
  assert second['architecture']['genotype'] == expected
  assert second['num_params'] == second['architecture']['params']
  exported.assert_reproduces_the_run(config, wd, second)
  with open(os.path.join(wd, 'config.json')) as f:
    saved = json.load(f)
  genotype = saved['nas']['genotype']
  assert (list(genotype) if strategy == 'dsnas' else json.loads(genotype)) == expected
  assert saved['nas']['strategy'] == fixed
  # from scratch and never searching, with tau and eta learned throughout
  assert second['search_end_step'] is None and len(second['policy']['ops']) == 14
  rows = [r for r in metrics_io.read_rows(wd) if 'phase' in r]
  assert rows and {r['phase'] for r in rows} == {'tune'}
  assert all('hpo/grad_lr' in r and 'policy/entropy' in r for r in rows)


def test_retrain_fields_shape_only_the_second_half(test_config):
  """search[strategy]['retrain']: the network sequential trains where the paper retrains
  another than it searched (DARTS on CIFAR-10: 20 cells at C = 36 after 8 at C = 16)."""
  search = {'darts': {'channels': 4, 'layers': 3, 'retrain': {'channels': 36, 'layers': 20}}}
  sizes = {}
  for v in ('nas', 'random', 'sequential'):
    c = experiments.apply(test_config.copy_and_resolve_references(), f'{v}/darts', search)
    sizes[v] = (c.nas.strategy, c.nas.channels, c.nas.layers)
  assert sizes == {'nas': ('darts', 4, 3), 'random': ('darts_fixed', 4, 3),
                   'sequential': ('darts_fixed', 36, 20)}
  from configs import cifar10  # pylint: disable=g-import-not-at-top
  c = cifar10.get_config('sequential/darts')
  assert (c.nas.strategy, c.nas.channels, c.nas.layers) == ('darts_fixed', 36, 20)
  assert (c.policy.name, c.hpo.enabled) == ('learned', True)
  search['darts']['retrain'] = {'chanels': 36}
  with pytest.raises(ValueError, match=r"search\['darts'\]\['retrain'\]\.chanels is unknown; "
                     'did you mean channels'):
    experiments.apply(test_config, 'sequential/darts', search)
