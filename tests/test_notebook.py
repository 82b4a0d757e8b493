"""The Colab notebook runs end to end (nbclient), so it cannot rot."""

import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_digits_notebook_runs_end_to_end():
  path = os.path.join(ROOT, 'notebooks', 'dha_digits.ipynb')
  nb = nbformat.read(path, as_version=4)
  env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
  os.environ.update(env)  # the kernel inherits it (and the 4 fake devices of conftest)
  client = NotebookClient(nb, timeout=600, kernel_name='python3',
                          resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}})
  client.execute()
  outputs = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                    for o in c.get('outputs', []))
  assert 'exported model accuracy' in outputs
  errors = [o for c in nb.cells for o in c.get('outputs', []) if o.output_type == 'error']
  assert not errors, errors
