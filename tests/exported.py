"""The check every run that exports shares: <workdir>/model, loaded alone, reproduces the
run's test accuracy (tests of DSNAS, ISTA, DARTS, their fixed children and full DHA)."""

import os

import numpy as np

from dha_jax import data
from dha_jax.io import export


def assert_reproduces_the_run(config, workdir, result):
  """export.load_model reads only the model folder (no checkpoint, no search state: the
  variables are the child's params and BN statistics), and its predict on the test split
  gives result['test/accuracy'] up to one image (float rounding of a near-tie) and the
  run's genotype."""
  model = export.load_model(os.path.join(workdir, 'model'))
  assert set(model.variables) <= {'params', 'batch_stats'}
  assert not {'arch', 'policy', 'net'} & set(model.variables['params'])
  test = data.load(config.dataset, config.seed).test
  acc = float(np.mean(np.argmax(model.predict(test.images), -1) == test.labels))
  assert abs(acc - result['test/accuracy']) <= 1.0 / len(test.labels) + 1e-12, (
      acc, result['test/accuracy'])
  if 'architecture' in result:
    assert model.genotype == result['architecture']['genotype']
  return model
