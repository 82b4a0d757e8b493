"""benchmarks/input_pipeline.py: the --small run times the ImageNet reader on mock data."""

import json

from benchmarks import input_pipeline


def test_small_run_writes_result(tmp_path):
  out = input_pipeline.run(batch_size=16, batches=5, load_size=64, pool=16, warmup=1,
                           out_dir=str(tmp_path))
  files = list(tmp_path.glob('input_pipeline_b16_l64_*.json'))
  assert len(files) == 1
  got = json.loads(files[0].read_text())
  assert got['images_per_s'] > 0 and got['cores'] >= 1
  assert got['batch'] == 16 and got['load_size'] == 64 and got['jpeg_decode'] is True
  assert got['mean_jpeg_kb'] > 0 and got['date']
  assert got['cores_for_8000'] > 0
  assert out['images_per_s'] == got['images_per_s']
