"""The ready-to-use model: <workdir>/model reproduces result.json's test accuracy
through load_model(...).predict alone, and the predict command reads image files."""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from dha_jax import data, models
from dha_jax.augment import preprocess
from dha_jax.io import export
from dha_jax.layers import conv
from dha_jax.models import common
from dha_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  from configs import test  # pylint: disable=g-import-not-at-top
  config = test.get_config()
  config.num_steps, config.recalibration_batches = 30, 4
  workdir = str(tmp_path_factory.mktemp('export'))
  result = train.train_and_evaluate(config, workdir)
  return config, workdir, result


def _accuracy(model, split):
  logits = model.predict(split.images)
  return float(np.mean(np.argmax(logits, -1) == split.labels))


def test_exported_model_reproduces_the_test_accuracy(finished_run):
  config, workdir, result = finished_run
  model = export.load_model(os.path.join(workdir, 'model'))
  test = data.load(config.dataset, config.seed).test
  acc = _accuracy(model, test)
  # the same network and weights on the same images: equal up to float rounding of a
  # near-tie (at most one image of the split)
  assert abs(acc - result['test/accuracy']) <= 1.0 / len(test.labels) + 1e-12
  with open(os.path.join(workdir, 'model', 'model.json')) as f:
    meta = json.load(f)
  assert meta['metrics']['test/accuracy'] == result['test/accuracy']
  assert meta['input_shape'] == list(test.images.shape[1:])
  assert model.predict(test.images[:5]).shape == (5, 10)


class _OneByOneThenDense(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    del train
    x = nn.Conv(4, (1, 1), use_bias=False)(x)
    return nn.Dense(5, use_bias=False)(x.reshape(x.shape[0], -1))


def test_forward_flops_closed_form(finished_run):
  """2 FLOPs per multiply-add: a 1x1 conv 3->4 on 6x6 and a dense 144->5."""
  m = _OneByOneThenDense()
  v = m.init(jax.random.PRNGKey(0), jnp.zeros((1, 6, 6, 3)))
  assert export.forward_flops(m, v, (6, 6, 3)) == 2 * 36 * 3 * 4 + 2 * 144 * 5
  _, _, result = finished_run
  assert result['model_flops'] > 2 * result['num_params']  # a conv net reuses its weights


def test_bn_recalibration_changes_only_statistics(finished_run):
  """The exported weights are the trained ones, bit for bit; the BN statistics are the
  plain average over the recalibration batches of each batch's own statistics, computed
  here on one device from the whole batch (the run used 4: device-count invariant)."""
  config, workdir, _ = finished_run
  model = export.load_model(workdir + '/model/model.json')
  assert set(model.variables) == {'params', 'batch_stats'}
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  trained = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())
  mgr.close()
  jax.tree_util.tree_map(np.testing.assert_array_equal, model.variables['params'],
                         trained['params']['net'])
  ds = data.load(config.dataset, config.seed)
  it = ds.train_iterator('train', config.batch_size, config.seed + 3, 0)
  module = models.create(config.model, ds.num_classes, bn_axis_name=None)
  conv.set_default_impl(config.conv_impl)  # as the run computed them (reset after the test)
  per_batch = []
  for _ in range(config.recalibration_batches):
    x = preprocess.eval_transform(preprocess.to_float(next(it)['image']), config.preprocess)
    x = preprocess.normalize(x, config.dataset.mean, config.dataset.std)
    with common.override_bn_momentum(0.0):
      _, new = module.apply({'params': trained['params']['net'],
                             'batch_stats': trained['batch_stats']}, x, train=True,
                            mutable=['batch_stats'])
    per_batch.append(new['batch_stats'])
  expected = jax.tree_util.tree_map(lambda *b: np.mean(b, 0), *per_batch)
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                         model.variables['batch_stats'], expected)
  assert not all(np.allclose(a, b) for a, b in zip(  # recalibration did change them
      jax.tree_util.tree_leaves(model.variables['batch_stats']),
      jax.tree_util.tree_leaves(trained['batch_stats'])))


def _leaves(tree, key=None):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _leaves(v, k)
  else:
    yield key, tree


def test_predict_refuses_wrong_input(finished_run):
  _, workdir, _ = finished_run
  model = export.load_model(os.path.join(workdir, 'model'))
  with pytest.raises(ValueError, match='uint8 images of shape'):
    model.predict(np.zeros((2, 5, 5, 1), np.uint8))
  with pytest.raises(FileNotFoundError, match='model.json'):
    export.load_model(workdir)


def test_predict_command_prints_top_classes(finished_run, tmp_path):
  config, workdir, _ = finished_run
  test = data.load(config.dataset, config.seed).test
  files = []
  for i in range(3):
    path = str(tmp_path / f'digit{i}.png')
    Image.fromarray(test.images[i, ..., 0]).save(path)
    files.append(path)
  out = subprocess.run([sys.executable, '-m', 'dha_jax.predict',
                        f'--model={workdir}/model', '--top=2', *files], cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = [l for l in out.stdout.splitlines() if l.startswith(str(tmp_path))]
  assert len(lines) == 3
  model = export.load_model(os.path.join(workdir, 'model'))
  best = np.argmax(model.predict(test.images[:3]), -1)
  for line, b in zip(lines, best):  # the file round trip keeps the pixels: same answer
    assert line.split(': ')[1].startswith(f'class {b} ('), line


def test_predict_converts_other_sizes_with_a_warning_and_names_unreadable_files(
    finished_run, tmp_path, capsys):
  from dha_jax import predict  # pylint: disable=g-import-not-at-top
  _, workdir, _ = finished_run
  h, w, c = export.load_model(os.path.join(workdir, 'model')).input_shape
  rgb = tmp_path / 'big_rgb.png'
  Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(rgb)
  x = predict.read(str(rgb), h, c)
  assert x.shape == (h, w, c) and x.dtype == np.uint8
  np.testing.assert_array_equal(x, 200)  # a flat image stays flat through resize and grey
  err = capsys.readouterr().err
  assert f'warning: {rgb} is 30x20 with 3 channel(s); the model takes {h}x{w}x{c}' in err
  same = tmp_path / 'exact.png'
  Image.fromarray(np.zeros((h, w), np.uint8)).save(same)
  predict.read(str(same), h, c)
  assert 'warning' not in capsys.readouterr().err  # the model's own size: no warning
  bad = tmp_path / 'bad.png'
  bad.write_bytes(b'not a png')
  with pytest.raises(ValueError, match=r'cannot read image .*bad.png'):
    predict.read(str(bad), h, c)
  out = subprocess.run([sys.executable, '-m', 'dha_jax.predict', f'--model={workdir}/model',
                        str(same), str(bad)], cwd=ROOT, capture_output=True, text=True,
                       timeout=180)
  assert out.returncode == 2
  errors = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'bad.png' in errors[0] and 'Traceback' not in out.stderr


def test_predict_reads_files_as_the_folder_loader_and_centre_crops_as_the_run(
    tmp_path, test_config):
  """Textured images of other sizes and aspect ratios: predict.read gives, pixel for pixel,
  the array the folder source loaded for training (shorter side resized to load_size,
  centre crop); with preprocess.image_size > 0 the exported model crops its centre, as the
  run's eval transform did: its logits equal the network on the slice [1:9, 1:9] of a
  10-pixel image (1e-5), and differ from those of another crop."""
  from dha_jax import predict  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  ramp = np.linspace(0, 120, 30)
  paths = []
  for split in ('train', 'test'):
    for c, (h, w) in (('a', (20, 30)), ('b', (30, 21))):
      path = tmp_path / 'data' / split / c / '0.png'
      path.parent.mkdir(parents=True)
      img = rng.integers(0, 100, (h, w, 3)) + ramp[:w][None, :, None] + ramp[:h][:, None, None] / 2
      Image.fromarray(img.astype(np.uint8)).save(path)
      paths.append(str(path))
  config = test_config
  d = config.dataset
  d.source, d.data_dir, d.val_size, d.load_size = 'folder', str(tmp_path / 'data'), 1, 10
  config.preprocess.image_size = 8
  ds = data.load(config.dataset, 0)
  assert ds.test.images.shape == (2, 10, 10, 3)
  for i, path in enumerate(paths[2:]):  # test/a, test/b: the loader's order
    np.testing.assert_array_equal(predict.read(path, 10, 3), ds.test.images[i])

  module = models.create(config.model, 2, bn_axis_name=None)
  variables = module.init(jax.random.PRNGKey(0), jnp.zeros((1, 8, 8, 3)), train=False)
  export.save(str(tmp_path / 'model'), config, 2, (10, 10, 3), None, variables)
  model = export.load_model(str(tmp_path / 'model'))
  mean, std = np.asarray(d.mean, np.float32), np.asarray(d.std, np.float32)
  net = lambda x: np.asarray(module.apply(variables, (x / 255.0 - mean) / std, train=False))
  logits = model.predict(ds.test.images)
  np.testing.assert_allclose(logits, net(ds.test.images[:, 1:9, 1:9].astype(np.float32)),
                             rtol=1e-5, atol=1e-5)
  assert not np.allclose(logits, net(ds.test.images[:, :8, :8].astype(np.float32)),
                         atol=1e-4)
