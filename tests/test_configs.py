"""Every config loads; the dataset configs build and trace their train step on mock data.

Compiling every paper config's step cost ~15 CPU-minutes of the suite (ImageNet DSNAS and
the cell configs ~3-4 each) for what tracing already shows: the config builds the
pipeline, the space and the components, and the step's output has the state's structure,
shapes and dtypes. CIFAR-10's step is compiled and run in the default suite; every other
config's too with DHA_SLOW_TESTS=1.
"""

import glob
import importlib
import os

import jax
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.training import steps, train

import slow

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


def _shapes(tree):
  return jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), tree)


def one_step(config, compiled=slow.ENABLED):
  """One train step of `config`, specialised as the loop does and fed as the loop feeds it
  (with the HPO / held-out batch): compiled and run, or traced only (jax.eval_shape).
  Returns (data, components). Also test_model_zoo's and test_mobilenet_space's."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  # traced only: the state as shapes too (no eager init of the network), unless the step
  # is specialised to the state's values (an ISTA support)
  abstract = not compiled and config.nas.strategy != 'ista'
  ds, comps, state, _, _ = train.setup(config, mesh, abstract=abstract)
  if not abstract:
    state = parallel.replicate(state, mesh)
  cache = train.StepCache(comps, mesh)
  batch = parallel.shard_batch(next(train.Batches(ds, comps, config)), mesh)
  if compiled:
    train_step, _ = cache(state)
    state, metrics = train_step(state, batch)
    assert np.isfinite(float(metrics['train/loss']))
    assert int(state.step) == 1
    return ds, comps
  _, specialized = cache.components(state)
  new, metrics = jax.eval_shape(steps.sharded_train_step(specialized, mesh), state, batch)
  assert _shapes(new) == _shapes(state)  # the same structure, shapes and dtypes
  assert metrics['train/loss'].shape == () and metrics['train/loss'].dtype == np.float32
  return ds, comps


def test_abstract_setup_gives_the_states_shapes_without_initialising(test_config):
  """train.setup(abstract=True): the same tree, shapes and dtypes as the real state."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  test_config.policy.name, test_config.hpo.enabled = 'learned', True
  real = train.setup(test_config, mesh)[2]
  abstract = train.setup(test_config, mesh, abstract=True)[2]
  leaves = jax.tree_util.tree_leaves(abstract)
  assert leaves and all(isinstance(x, jax.ShapeDtypeStruct) for x in leaves)
  assert _shapes(abstract) == _shapes(real)


@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'imagenet'])
def test_dataset_config_traces_its_step_on_mock_data(name):
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
    ds, _ = one_step(config, compiled=slow.ENABLED or name == 'cifar10')
  assert ds.num_classes == {'cifar10': 10, 'cifar100': 100, 'imagenet': 1000}[name]


def _reduced_imagenet(config):
  """32 px instead of 224 (same streaming pipeline and network, smaller maps)."""
  config.batch_size, config.eval_batch_size = 8, 8
  config.dataset.load_size, config.preprocess.image_size = 40, 32
  config.dataset.train_size, config.dataset.val_size = 40, 8
  config.conv_impl = 'xla'  # compile-bound test; the CPU formulations: test_conv.py
  return config


def test_imagenet_dsnas_selects_the_full_shufflenet_space_and_traces_a_step():
  """configs/imagenet.py:nas/dsnas: the SPOS space (20 choice layers, 4 choices), one
  step on mock data at 32 px (traced; compiled with DHA_SLOW_TESTS=1)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = importlib.import_module('configs.imagenet').get_config('nas/dsnas')
  assert config.nas.strategy == 'dsnas' and config.nas.space == 'shufflenet'
  assert config.nas.budget == 330e6 and config.num_epochs == 240
  with tfds.testing.mock_data(num_examples=40):
    ds, _ = one_step(_reduced_imagenet(config))
  assert ds.num_classes == 1000
  with pytest.raises(ValueError, match="variant must be one of"):
    importlib.import_module('configs.imagenet').get_config('dartz')
  with pytest.raises(ValueError, match=r"search settings for \['darts', 'dsnas', 'ista'\]"):
    importlib.import_module('configs.imagenet').get_config('nas/dartz')


@pytest.mark.parametrize('name,variant', [('cifar10', 'dha'), ('cifar100', 'nas'),
                                          ('imagenet', 'dha/ista')])
def test_dataset_config_selects_the_ista_cell_space_and_traces_a_step(name, variant):
  """The DHA system on the DARTS cells from each paper config: ISTA (CIFAR's 20 cells,
  C = 36; ImageNet's stem), one specialised step on mock data with fewer cells and
  channels (and 32 px for ImageNet), traced (compiled and run with DHA_SLOW_TESTS=1);
  'dha' also learns tau and eta in that step."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  n = config.nas
  assert n.strategy == 'ista'
  expected = (('imagenet', 48, 14) if name == 'imagenet' else ('cifar', 36, 20))
  assert (n.stem, n.channels, n.layers) == expected
  assert (config.policy.name == 'learned') == variant.startswith('dha')
  assert bool(config.hpo.get('enabled')) == variant.startswith('dha')
  n.channels, n.layers = 4, 3
  n.execution = 'static'  # the specialised step compiles in half the time ('traced' = it: test_ista)
  if name == 'imagenet':
    config = _reduced_imagenet(config)
  else:
    config.batch_size, config.eval_batch_size, config.dataset.val_size = 8, 8, 8
    config.conv_impl = 'xla'
  with tfds.testing.mock_data(num_examples=40):
    ds, _ = one_step(config)
  assert ds.num_classes == {'cifar10': 10, 'cifar100': 100, 'imagenet': 1000}[name]


def _image_folder(root, classes=3, per_class=(6, 2)):
  """train/ and test/ with JPEGs of assorted sizes (the folder source resizes them)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for split, n in zip(('train', 'test'), per_class):
    for k in range(classes):
      d = os.path.join(root, split, f'class_{k}')
      os.makedirs(d)
      for i in range(n):
        h, w = rng.integers(36, 60, 2)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(
            os.path.join(d, f'{i}.jpg'))


@pytest.mark.parametrize('name,variant', [('sport8', ''), ('mit67', 'randaugment'),
                                          ('flowers102', '')])
def test_transfer_config_traces_its_step(name, variant, tmp_path):
  """The DHA paper's other datasets: Sport8 / MIT67 from an image folder (3 classes of
  random JPEGs here), Flowers-102 from TFDS mock data; 32 px, tiny networks; the step
  traced (compiled and run with DHA_SLOW_TESTS=1). (The cell space's step on the
  ImageNet stem: the imagenet ISTA test above.)"""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f'configs.{name}').get_config(variant)
  config.batch_size, config.eval_batch_size = 4, 4
  config.dataset.load_size, config.preprocess.image_size = 40, 32
  config.dataset.val_size = 3
  config.model.stage_sizes, config.model.width = (1, 1), 8
  config.conv_impl = 'xla'
  assert (config.policy.name == 'randaugment') == (variant == 'randaugment')
  assert importlib.import_module(f'configs.{name}').get_config('dha').nas.stem == 'imagenet'
  if name == 'flowers102':
    with tfds.testing.mock_data(num_examples=20):
      ds, _ = one_step(config)
    assert ds.num_classes == 102
  else:
    _image_folder(str(tmp_path))
    config.dataset.data_dir = str(tmp_path)
    ds, _ = one_step(config)
    assert ds.num_classes == 3


@pytest.mark.parametrize('override,named,near', [
    ('--config.no_such_field=1', 'config.no_such_field', None),
    ('--config.dataset.val_sise=10', 'config.dataset.val_sise', 'config.dataset.val_size')])
def test_mistyped_override_is_one_line_with_the_nearest_names(tmp_path, override, named,
                                                              near):
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  done = subprocess.run([sys.executable, '-m', 'dha_jax.main', '--config=configs/test.py',
                         f'--workdir={tmp_path}', override], cwd=root, capture_output=True,
                        text=True, timeout=120)
  assert done.returncode == 2
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1 and 'Traceback' not in done.stderr, done.stderr
  assert named in lines[0] and (near is None or near in lines[0]), lines[0]
  assert not os.listdir(tmp_path)  # nothing written
