"""Every config loads; the dataset configs compile and run one step on mock data."""

import glob
import importlib
import os

import jax
import numpy as np
import pytest

from dha_jax import parallel, steps, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, 'configs', '*.py'))
                 if not p.endswith('__init__.py'))


def _default_keys(d, prefix=''):
  out = set()
  for k, v in d.items():
    out.add(prefix + k)
    if hasattr(v, 'items') and k not in ('policy', 'hpo', 'nas'):
      out |= _default_keys(v, f'{prefix}{k}.')
  return out


@pytest.mark.parametrize('name', CONFIGS)
def test_config_loads_with_documented_fields(name):
  module = importlib.import_module(f'configs.{name}')
  config = module.get_config()
  assert module.__doc__ and 'python -m dha_jax.main' in module.__doc__ or name == 'default'
  default = importlib.import_module('configs.default').get_config()
  extra = _default_keys(config) - _default_keys(default)
  assert not extra, f'{name} sets fields that configs/default.py does not document: {extra}'


def _one_step(config):
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = next(ds.train_iterator('train', config.batch_size, config.seed))
  state, metrics = train_step(state, parallel.shard_batch(batch, mesh))
  assert np.isfinite(float(metrics['train/loss']))
  assert int(state.step) == 1
  return ds


@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'imagenet'])
def test_dataset_config_runs_a_step_on_mock_data(name):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config()
  config.batch_size, config.eval_batch_size = 8, 8
  config.model.stage_sizes, config.model.width = (1, 1), 8
  if name == 'imagenet':  # reduced resolution, same pipeline (streaming, rrc, 7x7 stem)
    config.dataset.load_size, config.preprocess.image_size = 40, 32
    config.dataset.train_size, config.dataset.val_size = 40, 8
  else:
    config.dataset.val_size = 8
  with tfds.testing.mock_data(num_examples=40):
    ds = _one_step(config)
  assert ds.num_classes == {'cifar10': 10, 'cifar100': 100, 'imagenet': 1000}[name]
