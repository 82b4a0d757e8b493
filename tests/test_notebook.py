"""The Colab notebook runs end to end (nbclient), so it cannot rot."""

import os
import re

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_digits_notebook_runs_end_to_end(monkeypatch):
  path = os.path.join(ROOT, 'notebooks', 'dha_digits.ipynb')
  nb = nbformat.read(path, as_version=4)
  # The kernel inherits this environment: the repository on its path, and one CPU device
  # as in a Colab CPU runtime (not the suite's 4 fake ones, which cost more compile and step time).
  monkeypatch.setenv('PYTHONPATH', ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  monkeypatch.setenv('XLA_FLAGS', re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                                         os.environ.get('XLA_FLAGS', '')).strip())
  client = NotebookClient(nb, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}})
  client.execute()
  outputs = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                    for o in c.get('outputs', []))
  assert 'exported model accuracy' in outputs
  errors = [o for c in nb.cells for o in c.get('outputs', []) if o.output_type == 'error']
  assert not errors, errors
