"""Every bad input is one clear error: the exception names the field, file or value and
what to do; on the command line it is one line on stderr, a non-zero exit status, and
nothing written to the workdir (dha_jax/core/cli.py)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dha_jax import data
from dha_jax.io import export
from dha_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _png(path, shape=(12, 12, 3), seed=0):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, np.uint8)).save(path)


def _folder(root, classes=('cat', 'dog'), test_classes=None, n=3):
  for split, names in (('train', classes), ('test', test_classes or classes)):
    for c in names:
      for i in range(n):
        _png(root / split / c / f'{i}.png', seed=i)


def _folder_config(test_config, root, load_size=0):
  cfg = test_config.dataset
  cfg.source, cfg.data_dir, cfg.val_size, cfg.load_size = 'folder', str(root), 1, load_size
  return cfg


# ------------------------------------------------------------------- the loaders


def test_folder_without_train(tmp_path, test_config):
  (tmp_path / 'test' / 'cat').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match=r'train does not exist.*data_dir must hold'):
    data.load(_folder_config(test_config, tmp_path), 0)


def test_folder_with_a_test_class_missing(tmp_path, test_config):
  _folder(tmp_path, test_classes=('cat',))
  with pytest.raises(FileNotFoundError, match=r'test/dog is missing.*same class folders'):
    data.load(_folder_config(test_config, tmp_path), 0)


def test_folder_with_mixed_sizes_and_no_load_size(tmp_path, test_config):
  _folder(tmp_path)
  _png(tmp_path / 'train' / 'dog' / 'big.png', (20, 16, 3))
  with pytest.raises(ValueError, match=r'big.png is 16x20, other images are 12x12: set '
                     r'config.dataset.load_size'):
    data.load(_folder_config(test_config, tmp_path), 0)
  ds = data.load(_folder_config(test_config, tmp_path, load_size=8), 0)  # the fix works
  assert ds.train.images.shape[1:] == (8, 8, 3)


def test_folder_with_no_images(tmp_path, test_config):
  for split in ('train', 'test'):
    (tmp_path / split / 'cat').mkdir(parents=True)
    (tmp_path / split / 'cat' / 'notes.txt').write_text('not an image')
  with pytest.raises(ValueError, match=r'no images \(.*png.*\) under .*train'):
    data.load(_folder_config(test_config, tmp_path), 0)


def test_folder_with_a_corrupt_image(tmp_path, test_config):
  _folder(tmp_path)
  (tmp_path / 'test' / 'cat' / 'bad.png').write_bytes(b'\x89PNG truncated')
  with pytest.raises(ValueError, match=r'cannot read image .*bad.png.*Remove or replace'):
    data.load(_folder_config(test_config, tmp_path), 0)


def test_folder_with_data_dir_unset(test_config):
  cfg = test_config.dataset
  cfg.source, cfg.data_dir = 'folder', ''
  with pytest.raises(ValueError, match='config.dataset.data_dir must be set'):
    data.load(cfg, 0)


def _idx(path, dims, body_bytes=None, magic=b'\x00\x00\x08'):
  header = magic + bytes([len(dims)]) + np.asarray(dims, '>u4').tobytes()
  body = bytes(int(np.prod(dims))) if body_bytes is None else body_bytes
  with gzip.open(path, 'wb') as f:
    f.write(header + body)


@pytest.mark.parametrize('fault,message', [
    ('magic', r'train-images-idx3-ubyte.gz is not an unsigned-byte IDX file \(bad magic'),
    ('short_body', r'train-images-idx3-ubyte.gz is truncated: header says \(4, 28, 28\), '
                   r'found 100 bytes.*Download'),
    ('short_header', r'train-images-idx3-ubyte.gz is truncated: its header ends'),
])
def test_idx_files_with_a_bad_header_or_body(tmp_path, test_config, fault, message):
  images = tmp_path / 'train-images-idx3-ubyte.gz'
  if fault == 'magic':
    _idx(images, (4, 28, 28), magic=b'\x00\x00\x0d')
  elif fault == 'short_body':
    _idx(images, (4, 28, 28), body_bytes=bytes(100))
  else:
    with gzip.open(images, 'wb') as f:
      f.write(b'\x00\x00\x08\x03\x00\x00')
  _idx(tmp_path / 'train-labels-idx1-ubyte.gz', (4,))
  cfg = test_config.dataset
  cfg.source, cfg.data_dir = 'idx', str(tmp_path)
  with pytest.raises(ValueError, match=message):
    data.load(cfg, 0)


def test_tfds_name_that_does_not_exist(tmp_path, test_config):
  cfg = test_config.dataset
  cfg.source, cfg.name, cfg.data_dir = 'tfds', 'no_such_dataset_xyz', str(tmp_path)
  with pytest.raises(FileNotFoundError, match="TFDS dataset 'no_such_dataset_xyz'"):
    data.load(cfg, 0)


# ---------------------------------------------------------------- the run's sizes


def test_batch_larger_than_the_training_split_writes_nothing(tmp_path, test_config):
  test_config.batch_size = 4096
  workdir = tmp_path / 'run'
  with pytest.raises(ValueError, match=r'config.batch_size=4096 exceeds the training split'):
    train.train_and_evaluate(test_config, str(workdir))
  assert not workdir.exists() or not os.listdir(workdir)


def test_eval_batch_not_divisible_by_the_devices(tmp_path, test_config):
  test_config.eval_batch_size = 66  # 4 fake devices
  with pytest.raises(ValueError, match=r'config.eval_batch_size=66 is not divisible by the '
                     r'4 devices; use a multiple of 4'):
    train.train_and_evaluate(test_config, str(tmp_path / 'run'))


# ------------------------------------------------------------- the exported model


def test_a_model_folder_of_another_format(tmp_path):
  (tmp_path / 'model.json').write_text(json.dumps({'format': 'someone-else/7'}))
  with pytest.raises(ValueError, match=r'has format someone-else/7; this dha_jax reads'):
    export.load_model(str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r'model.json does not exist'):
    export.load_model(str(tmp_path / 'elsewhere'))


# ------------------------------------------------- one line on the command line


def _run(module, *args):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=180)


def _one_error_line(out):
  lines = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1, out.stderr[-3000:]
  assert 'Traceback' not in out.stderr, out.stderr[-3000:]
  return lines[0]


def test_main_reports_a_bad_input_in_one_line(tmp_path):
  workdir = tmp_path / 'run'
  out = _run('dha_jax.main', '--config=configs/test.py', f'--workdir={workdir}',
             '--config.batch_size=4096')
  assert out.returncode == 2
  line = _one_error_line(out)
  assert 'config.batch_size=4096 exceeds the training split' in line
  assert not workdir.exists() or not os.listdir(workdir)
  verbose = _run('dha_jax.main', '--config=configs/test.py', f'--workdir={workdir}',
                 '--config.batch_size=4096', '--verbose')
  assert verbose.returncode != 0 and 'Traceback' in verbose.stderr


def test_predict_reports_missing_files_and_models_in_one_line(tmp_path):
  out = _run('dha_jax.predict', f'--model={tmp_path}', str(tmp_path / 'x.png'))
  assert out.returncode == 2
  assert 'model.json does not exist' in _one_error_line(out)
  out = _run('dha_jax.predict', f'--model={tmp_path}')
  assert out.returncode != 0 and 'give one or more image files' in out.stderr
  (tmp_path / 'model.json').write_text(json.dumps({'format': 'someone-else/7'}))
  _png(tmp_path / 'x.png')
  out = _run('dha_jax.predict', f'--model={tmp_path}', str(tmp_path / 'x.png'))
  assert out.returncode == 2
  assert 'has format someone-else/7; this dha_jax reads' in _one_error_line(out)


# ------------------------------------- every listed bad input through the command line

# config_flags defines a --config.<field> flag for each override in sys.argv when the
# module defining --config is imported (sys.argv holds every case's before that import),
# and again at each parse (so they are deleted between cases).
_DRIVER = '''
import contextlib, json, sys, tempfile
cases = json.loads(sys.argv[1])
sys.argv = ['dha_jax.main'] + [a for argv in cases.values() for a in argv]
from absl import flags
from dha_jax import main
results = {}
for name, argv in cases.items():
  for flag in [f for f in flags.FLAGS if f.startswith('config.')]:  # defined per parse
    delattr(flags.FLAGS, flag)
  flags.FLAGS.unparse_flags()
  with tempfile.TemporaryFile('w+') as err:  # a real file: faulthandler needs a fileno
    with contextlib.redirect_stderr(err):
      try:
        main.parse_flags(['dha_jax.main', *argv])
        code = main.main(['dha_jax.main'])
      except SystemExit as e:
        code = e.code
    err.seek(0)
    results[name] = {'code': code, 'stderr': err.read()}
print(json.dumps(results))
'''


def test_every_bad_input_the_readme_lists_is_one_line_on_the_command_line(tmp_path):
  """The README's list (README "Running"): each, given as --config overrides to
  dha_jax.main's own flag parsing and entry point (cli.reported), ends with exactly one
  `error:` line naming the field or file, exit status 2, no traceback, and an empty
  workdir. All cases run in one process (a process each would cost ~5 s of imports);
  4 fake devices, as the suite."""
  def folder(name, **kw):
    _folder(tmp_path / name, **kw)
    return [f'--config.dataset.source=folder', f'--config.dataset.data_dir={tmp_path / name}',
            '--config.dataset.val_size=1']
  (tmp_path / 'no_train').mkdir()
  mixed = folder('mixed')
  _png(tmp_path / 'mixed' / 'train' / 'cat' / 'big.png', shape=(20, 20, 3))
  empty = tmp_path / 'empty'
  for split in ('train', 'test'):
    (empty / split / 'cat').mkdir(parents=True)
  corrupt = folder('corrupt')
  (tmp_path / 'corrupt' / 'train' / 'cat' / '0.png').write_bytes(b'not a png')
  for name, magic, body in (('bad_magic', b'\x00\x00\x0d', None),
                            ('cut_short', b'\x00\x00\x08', bytes(100))):
    (tmp_path / name).mkdir()
    _idx(tmp_path / name / 'train-images-idx3-ubyte.gz', (4, 28, 28), body, magic)
    _idx(tmp_path / name / 'train-labels-idx1-ubyte.gz', (4,))
  idx = lambda name: ['--config.dataset.source=idx', f'--config.dataset.data_dir={tmp_path / name}']
  cases = {
      'batch': (['--config.batch_size=4096'], 'config.batch_size=4096 exceeds the training'),
      'eval_batch': (['--config.eval_batch_size=66'], 'config.eval_batch_size=66 is not '
                     'divisible by the 4 devices; use a multiple of 4'),
      'no_train': ([f'--config.dataset.source=folder',
                    f'--config.dataset.data_dir={tmp_path / "no_train"}'],
                   'no_train/train does not exist. config.dataset.data_dir must hold'),
      'test_class_missing': (folder('missing', test_classes=('cat',)),
                             'missing/test/dog is missing: test/ must have the same class'),
      'mixed_sizes': (mixed, 'big.png is 20x20, other images are 12x12: set '
                      'config.dataset.load_size'),
      'no_images': (['--config.dataset.source=folder', f'--config.dataset.data_dir={empty}',
                     '--config.dataset.val_size=1'], 'no images (.jpg'),
      'corrupt': (corrupt, 'cannot read image ' + str(tmp_path / 'corrupt/train/cat/0.png')),
      'no_data_dir': (['--config.dataset.source=folder', '--config.dataset.data_dir='],
                      'config.dataset.data_dir must be set for source=folder'),
      'idx_magic': (idx('bad_magic'), 'is not an unsigned-byte IDX file (bad magic'),
      'idx_short': (idx('cut_short'), 'is truncated: header says (4, 28, 28), found 100 '
                    'bytes of data. Download the file again.'),
      'tfds_unknown': (['--config.dataset.source=tfds', '--config.dataset.name=no_such_xyz',
                        f'--config.dataset.data_dir={tmp_path}'],
                       "TFDS dataset 'no_such_xyz' (split 'train') is not available"),
      'planted_shift': (['--config.dataset.eval_shift=(1.5,0)'], 'config.dataset.eval_shift'),
      'policy_objective': (['--config.policy.name=learned', '--config.policy.objective=x'],
                           "config.policy.objective='x'"),
      'hpo_decay': (['--config.hpo.enabled=True', '--config.hpo.objective=forward',
                     '--config.hpo.tangent_decay=1.0'], 'config.hpo.tangent_decay=1.0'),
  }
  argv = {name: ['--config=configs/test.py', f'--workdir={tmp_path / "runs" / name}', *args]
          for name, (args, _) in cases.items()}
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=4')
  out = subprocess.run([sys.executable, '-c', _DRIVER, json.dumps(argv)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  results = json.loads(out.stdout.strip().splitlines()[-1])
  for name, (_, fragment) in cases.items():
    r = results[name]
    lines = [l for l in r['stderr'].splitlines() if l.startswith('error:')]
    assert (r['code'], len(lines)) == (2, 1), (name, r)
    assert fragment in lines[0], (name, lines[0])
    assert 'Traceback' not in r['stderr'], (name, r['stderr'][-2000:])
    workdir = tmp_path / 'runs' / name
    assert not workdir.exists() or not os.listdir(workdir), (name, os.listdir(workdir))
