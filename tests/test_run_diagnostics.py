"""benchmarks/run_diagnostics.py reads a comparison's runs: its numbers against ones
computed by hand from a fake workdir."""

import json
import math
import os

import pytest

from benchmarks import run_diagnostics


def _run(root, variant, seed, result, rows):
  d = os.path.join(root, variant, f'seed{seed}')
  os.makedirs(d)
  with open(os.path.join(d, 'result.json'), 'w') as f:
    json.dump(result, f)
  with open(os.path.join(d, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)


def test_diagnostics_of_a_fixed_and_a_learned_run(tmp_path):
  root = str(tmp_path)
  _run(root, 'fixed', 0, {'test/accuracy': 0.8, 'steps': 100, 'train_time_s': 50.0,
                          'compile_s': 3.0, 'num_params': 2_000_000}, [{'step': 1}])
  probs = [[1 / 196] * 14 for _ in range(14)]
  rows = [{'step': s, 'hpo/lr_multiplier': m, 'hpo/at_bound_lr': b, 'policy/entropy': e,
           'policy/top1_pair': 'Rotate+Identity', 'policy/top1_prob': 0.25}
          for s, m, b, e in ((1, 1.0, 0.0, 5.0), (2, 0.5, 0.0, 4.0), (3, 0.25, 1.0, 3.0),
                             (4, 0.25, 1.0, 2.0))]
  _run(root, 'da_hpo', 1, {'test/accuracy': 0.81, 'steps': 4, 'train_time_s': 2.0,
                           'compile_s': 9.0, 'num_params': 1000, 'search_end_step': None,
                           'policy': {'probabilities': probs}}, rows)
  table = run_diagnostics.collect(root)
  assert set(table) == {'fixed', 'da_hpo'}
  assert table['fixed']['0'] == {'test_accuracy': 0.8, 'steps': 100, 's_per_step': 0.5,
                                 'compile_s': 3.0, 'params_m': 2.0, 'search_end_step': None}
  d = table['da_hpo']['1']
  assert d['s_per_step'] == 0.5 and d['lr_multiplier_end'] == 0.25
  assert d['lr_on_bound_share'] == 0.5  # 2 of 4 logged rows
  assert d['tau_entropy_fraction'] == pytest.approx(2.0 / math.log(196))
  assert d['tau_top_pair'] == 'Rotate+Identity 0.250'
  md = run_diagnostics.markdown(table)
  assert '| da_hpo | 1 | 0.81 | 4 | 0.5 | 9 |' in md and md.count('\n') == 3
