"""Top-5 accuracy in a real run: reported for more than 10 classes (the synthetic source)
and equal to an independent count over the exported model's logits; absent for 10 or
fewer classes (train.finish drops it: top-5 of 10 classes says little)."""

import json
import os

import numpy as np
import pytest

from dha_jax import compare, data
from dha_jax.io import export, metrics_io
from dha_jax.training import train


def _synthetic_run(workdir, num_classes):
  """A few steps of configs/test.py on random 8x8 grey images of `num_classes` labels
  (512 training images, 128 test images)."""
  from configs import test  # pylint: disable=g-import-not-at-top
  config = test.get_config()
  config.dataset.source = 'synthetic'
  config.dataset.synthetic.update(shape=(8, 8, 1), num_classes=num_classes, size=512)
  config.dataset.val_size = 64
  config.num_steps, config.recalibration_batches = 4, 2
  config.eval_every_epochs = 0  # no validation pass: the test split is the point
  return config, train.train_and_evaluate(config, workdir)


def _top_k_hits(logits, labels, k):
  """Fraction of labels among the k largest logits (numpy, independent of the step's
  lax.top_k): a label is a hit when fewer than k logits exceed its own."""
  own = logits[np.arange(len(labels)), labels]
  return float(np.mean(np.sum(logits > own[:, None], -1) < k))


def test_top5_of_a_run_with_12_classes_equals_an_independent_count(tmp_path):
  """12 classes: result['test/top5'] (lax.top_k inside the compiled eval step over 4
  devices, the recalibrated child) equals the share of test labels among the 5 largest
  logits of the exported model, counted in numpy, within one image of the split (a float
  near-tie can flip one); the same for top-1. top-5 >= top-1, and more than 5 images above it
  (labels independent of the pixels: chance is 5/12 vs 1/12; measured 0.35), so the
  check tells top-5 from top-1."""
  config, result = _synthetic_run(str(tmp_path), 12)
  model = export.load_model(str(tmp_path / 'model'))
  test = data.load(config.dataset, config.seed).test
  assert int(test.labels.max()) >= 5  # labels beyond the first five classes occur
  logits = np.asarray(model.predict(test.images), np.float64)
  assert logits.shape == (len(test.labels), 12)
  one_image = 1.0 / len(test.labels) + 1e-12
  top1, top5 = (_top_k_hits(logits, test.labels, k) for k in (1, 5))
  assert top1 == pytest.approx(np.mean(np.argmax(logits, -1) == test.labels), abs=one_image)
  assert abs(result['test/top5'] - top5) <= one_image, (result['test/top5'], top5)
  assert abs(result['test/accuracy'] - top1) <= one_image, (result['test/accuracy'], top1)
  assert result['test/top5'] >= result['test/accuracy']
  assert result['test/top5'] - result['test/accuracy'] > 5 * one_image
  with open(tmp_path / 'result.json') as f:
    assert json.load(f)['test/top5'] == result['test/top5']
  with open(tmp_path / 'model' / 'model.json') as f:
    assert json.load(f)['metrics']['test/top5'] == result['test/top5']
  # with no validation during training (eval_every_epochs=0) the run still reports the
  # exported model's validation accuracy, in result.json and as the last metrics row (what
  # compare's lr_grid chooses on), equal to a count over its predictions
  val = data.load(config.dataset, config.seed).val
  val_logits = np.asarray(model.predict(val.images), np.float64)
  one_val_image = 1.0 / len(val.labels) + 1e-12
  assert abs(result['val/accuracy'] - _top_k_hits(val_logits, val.labels, 1)) <= one_val_image
  rows = [r for r in metrics_io.read_rows(str(tmp_path)) if 'val/accuracy' in r]
  assert [r['val/accuracy'] for r in rows] == [result['val/accuracy']]
  assert compare.final_val_accuracy(str(tmp_path)) == result['val/accuracy']


def test_no_top5_with_10_classes(tmp_path):
  """10 classes (train.finish keeps test/top5 only for more than 10): neither the result,
  result.json nor the exported model's metrics have it; top-1 is still reported."""
  _, result = _synthetic_run(str(tmp_path), 10)
  assert 'test/top5' not in result and 0.0 <= result['test/accuracy'] <= 1.0
  with open(tmp_path / 'result.json') as f:
    assert 'test/top5' not in json.load(f)
  with open(tmp_path / 'model' / 'model.json') as f:
    metrics = json.load(f)['metrics']
  assert 'test/top5' not in metrics and 'test/accuracy' in metrics
