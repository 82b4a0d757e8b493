"""benchmarks/device_check.py at its CPU size, so the script a lent GPU runs cannot rot:
real compiled rows, the ratio column, the time-budget skip, every row's
config."""

import json

import numpy as np
import pytest

from benchmarks import device_check


def test_small_rows_run_with_ratios_and_memory(tmp_path):
  # bf16 only (what a device runs by default): float32 steps are the rest of the suite's
  result = device_check.run(['plain', 'eta_lagged'], ['bfloat16'], 8, steps=1,
                            warmup=0, time_budget_s=1e9, small=True)
  rows = {(r['variant'], r['dtype']): r for r in result['rows']}
  assert len(rows) == 2
  for (name, _), r in rows.items():
    assert r['images_per_s'] > 0 and r['compile_s'] > 0
    assert r['peak_memory_bytes'] > 0  # XLA's accounting exists on CPU too
    if name == 'plain':
      assert r['ratio_to_plain'] == 1.0
    else:
      assert r['ratio_to_plain'] == pytest.approx(
          r['ms_per_step'] / rows[('plain', r['dtype'])]['ms_per_step'])
  text = device_check.table(result)
  assert text.count('\n| ') == 3 and '| eta_lagged | bfloat16 |' in text
  json.dumps(result)  # what main writes


def test_rows_past_the_time_budget_are_skipped_and_marked():
  result = device_check.run(['plain', 'dha'], ['float32'], 8, 1, 0, time_budget_s=-1,
                            small=True)
  assert all('skipped' in r and 'images_per_s' not in r for r in result['rows'])
  assert 'skipped (past --time_budget_s=-1)' in device_check.table(result)


@pytest.mark.parametrize('small', [False, True])
def test_every_row_is_the_imagenet_config_on_synthetic_data(small):
  for name in device_check.VARIANTS:
    c = device_check.make_config(name, 'bfloat16', 8, small)
    assert c.dataset.source == 'synthetic' and c.compute_dtype == 'bfloat16'
    assert c.batch_size == 8 and c.dataset.synthetic.size == 32
    side = 36 if small else 256
    assert tuple(c.dataset.synthetic.shape) == (side, side, 3)
  assert device_check.make_config('dsnas_masked', 'float32', 8).nas.execution == 'masked'
  assert device_check.make_config('eta_lagged', 'float32', 8).hpo.objective == 'lagged'
  assert device_check.make_config('tau', 'float32', 8).policy.name == 'learned'
  with pytest.raises(ValueError, match='unknown row .nope.'):
    device_check.make_config('nope', 'float32', 8)


def test_synthetic_source_is_seeded_sized_and_checks_its_shape():
  from configs import default  # pylint: disable=g-import-not-at-top
  from dha_jax import data  # pylint: disable=g-import-not-at-top
  cfg = default.get_config().dataset
  cfg.source, cfg.val_size = 'synthetic', 16
  cfg.synthetic.update(shape=(5, 6, 3), num_classes=7, size=40)
  a, b = data.load(cfg, 0), data.load(cfg, 0)
  assert (len(a.train), len(a.val), len(a.test)) == (40, 16, 10)
  assert a.image_shape == (5, 6, 3) and a.num_classes == 7 and a.train.labels.max() < 7
  np.testing.assert_array_equal(a.train.images, b.train.images)
  assert not np.array_equal(a.train.images, data.load(cfg, 1).train.images)
  cfg.synthetic.shape = (5, 6)
  with pytest.raises(ValueError, match=r'config.dataset.synthetic.shape=\(5, 6\)'):
    data.load(cfg, 0)
