"""Full DHA end to end (tau, alpha, eta and theta in one run) on 4 devices, the
comparison variants, and that a component switched off costs nothing in the step."""

import json
import os

import jax
import numpy as np
import pytest

from dha_jax.comparison import experiments
from dha_jax.core import parallel
from dha_jax.hpo import hypergrad
from dha_jax.training import steps, train

import exported
import resume_check
from agreement import assert_agree, run_steps

SEARCH = {'dsnas': {'stem_channels': 8, 'stage_repeats': (1, 1), 'stage_channels': (16, 32),
                    'last_channels': 32, 'search_epochs': 2,
                    'max_search_fraction': 0.0,  # ends at search_epochs (cap: test_budget)
                    'optimizer': {'name': 'adam', 'lr': 0.05, 'b1': 0.5, 'b2': 0.999}},
          'ista': {'channels': 4, 'layers': 2, 'auxiliary_weight': 0.0}}


STEPS_PER_EPOCH = 10  # dataset.train_subset = 320 images, batch 32


def dha_config(variant='dha/dsnas'):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.num_epochs, c.recalibration_batches, c.eval_every_epochs = 3, 3, 0
  c.log_every_steps = STEPS_PER_EPOCH // 2  # the resume test stops at a logged step in epoch 2
  c.dataset.train_subset = STEPS_PER_EPOCH * c.batch_size
  return experiments.apply(c, variant, SEARCH, default_strategy='dsnas',
                           policy={'optimizer': {'name': 'sgd', 'lr': 5.0, 'momentum': 0.9,
                                                 'nesterov': True}},
                           hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.5),
                                'optimizer': {'name': 'adam', 'lr': 0.05}})


@pytest.fixture(scope='module')
def full_dha(tmp_path_factory):
  """One full DHA run (tau + DSNAS alpha + eta) on 4 devices (the sharded path); that 1
  device computes the same step is tested per component (test_step, test_hpo,
  test_dsnas) and for full DHA on ISTA below, so the suite does not pay this run twice."""
  config = dha_config()
  workdir = str(tmp_path_factory.mktemp('full_dha'))
  mesh = parallel.make_mesh(jax.devices())
  _, _, init, _, _ = train.setup(config, mesh)
  result = train.train_and_evaluate(config, workdir, jax.devices())
  return config, workdir, init, result


def test_full_dha_moves_every_component_and_exports(full_dha):
  config, workdir, init, result = full_dha
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  final = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())
  mgr.close()
  # tau, alpha and eta all left their initial values
  for group in ('policy', 'arch'):
    moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
                                   final['params'][group], jax.device_get(init.params[group]))
    assert max(jax.tree_util.tree_leaves(moved)) > 1e-4, group
  for k in ('lr', 'weight_decay'):
    assert abs(float(final['hparams'][k]) - float(init.hparams[k])) > 1e-4, k
  # the search ended at search_epochs (every layer fixed) and tuning went on
  steps_per_epoch = result['steps'] // config.num_epochs
  assert result['search_end_step'] == config.nas.search_epochs * steps_per_epoch
  arch = result['architecture']
  assert all(arch['fixed']) and len(arch['genotype_names']) == len(arch['genotype'])
  assert result['num_params'] == arch['params']  # the child's own parameter count
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  assert {r.get('phase') for r in rows} >= {'search', 'tune'}
  assert any('nas/fixed_layers' in r for r in rows)
  for key in ('policy', 'architecture', 'hparams', 'images_processed', 'wall_time_s'):
    assert key in result, key
  exported.assert_reproduces_the_run(config, workdir, result)  # the model alone
  for name in ('policy.png', 'hparams.png', 'arch.png'):
    assert os.path.exists(os.path.join(workdir, name)), name


def ista_dha_config():
  """Full DHA on ISTA with the support-specialised step ('static': half the traced step's
  compile; the two executions compute the same step, test_ista.py), in the small
  registered cell space (the 'darts' space's own step: test_ista.py, test_configs.py)."""
  c = dha_config('dha/ista')
  c.nas.execution = 'static'
  c.nas.cell_space = 'darts_small'
  c.nas.optimizer.lr = 0.05  # the code b moves enough in a few steps to change the support
  return c


def test_one_and_four_devices_agree_for_full_dha_on_ista():
  """tau, ISTA's train step and eta in one compiled step: 1 and 4 devices compute the same
  losses, eta and state (test_step.py's tolerances). ISTA's network has no per-device
  randomness while it searches (no drop-path), so it can; DSNAS samples a path per device
  by design (test_dsnas.py checks what holds: alpha identical on every device). ISTA's
  default execution, 'traced' (the support as data), as on GPU/TPU."""
  config = ista_dha_config()
  config.nas.execution = 'traced'
  one, four = run_steps(config, jax.devices()[:1]), run_steps(config, jax.devices())
  assert_agree(one, four, {'train/loss': {'rtol': 1e-5}, 'hpo/lr': {'rtol': 1e-5}},
               ('params', 'hparams', 'batch_stats'))
  s1, h1, _ = one
  assert float(np.abs(s1.params['policy']['tau']).max()) > 1e-4  # tau moved
  assert h1[-1]['hpo/lr'] != h1[0]['hpo/lr']  # eta moved
  init = ista_dha_config()  # alpha (ISTA's code b) moved
  _, _, state0, _, _ = train.setup(init, parallel.make_mesh(jax.devices()[:1]))
  assert float(np.abs(s1.params['arch']['b'] - state0.params['arch']['b']).max()) > 1e-5


def test_full_dha_resumes_exactly_across_the_end_of_the_search(full_dha, tmp_path,
                                                              monkeypatch):
  """Interrupted inside epoch 2 (DSNAS fixes every layer at its end, search_epochs = 2),
  resumed: bit-identical to the uninterrupted run (tests/resume_check.py)."""
  config, ref_dir, _, result = full_dha
  workdir = str(tmp_path / 'interrupted')
  resume_check.run_interrupted(config, workdir, monkeypatch, 3 * STEPS_PER_EPOCH // 2,
                               jax.devices())
  resume_check.assert_same_run(workdir, ref_dir, result['steps'])


def _step_flops(config):
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = next(ds.train_iterator('train', config.batch_size, 0))
  if comps.hpo.objective in ('train', 'val'):
    batch.update(hpo_image=batch['image'], hpo_label=batch['label'])
  cost = train_step.lower(state, parallel.shard_batch(batch, mesh)).compile().cost_analysis()
  return float((cost if isinstance(cost, dict) else cost[0])['flops'])


def test_a_component_switched_off_costs_nothing(test_config):
  base = _step_flops(test_config)
  c = test_config.copy_and_resolve_references()
  c.hpo = hypergrad.default_config()      # every HPO field present, but off
  assert _step_flops(c) == base           # the very same compiled work
  c.hpo.enabled = True                    # one more forward/backward at theta_{t+1}
  assert _step_flops(c) >= 1.8 * base
  c = test_config.copy_and_resolve_references()
  c.policy.name = 'learned'               # the augmentation ops appear in the step
  assert _step_flops(c) > 1.02 * base


@pytest.mark.parametrize('variant, strategy, policy, hpo', [
    ('fixed', 'none', 'none', False), ('randaugment', 'none', 'randaugment', False),
    ('nas/dsnas', 'dsnas', 'none', False), ('da_hpo', 'none', 'learned', True),
    ('dha/dsnas', 'dsnas', 'learned', True), ('dha/ista', 'ista', 'learned', True),
    ('sequential/ista', 'darts_fixed', 'learned', True)])
def test_variants_switch_the_components(variant, strategy, policy, hpo):
  c = dha_config(variant)
  assert (c.nas.strategy, c.policy.name, c.hpo.enabled) == (strategy, policy, hpo)


def test_variant_errors_name_the_choices():
  with pytest.raises(ValueError, match='must be one of'):
    dha_config('dha_plus')
  with pytest.raises(ValueError, match='search settings'):
    dha_config('nas/darts')


def test_genotype_hand_over_flags():
  """The flag that makes a fixed-genotype run train a search's result (the table itself is
  tested in tests/test_compare.py)."""
  result = {'architecture': {'genotype': [0, 3], 'genotype_names': ['a', 'b']}}
  assert experiments.genotype_flag('dsnas', result['architecture']['genotype']) == (
      '--config.nas.genotype=(0,3,)')
  cell = {'architecture': {'genotype': {'normal': [['skip_connect', 0]]}}}
  flag = experiments.genotype_flag('ista', cell['architecture']['genotype'])
  assert json.loads(flag.split('=', 1)[1]) == cell['architecture']['genotype']
