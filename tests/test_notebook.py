"""The Colab notebook runs end to end (nbclient), so it cannot rot.

Every cell runs as written, with one cell added after the config cell that swaps in the
suite's small full-DHA search (test_dha.dha_config: the same tau + DSNAS alpha + eta run,
on 2 choice layers of 10 steps an epoch), as papermill injects parameters: what can rot
is the notebook's code, not the size of its search. It is the same program as
test_dha.py's full_dha run on the same 4 devices, so the suite's XLA cache compiles it once
for both. Alone on 2 cores: 40 s, against 135 s at the notebook's own size.
"""

import os

import nbformat
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL_SEARCH = f"""\
import sys
sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
import test_dha
config = test_dha.dha_config()  # injected by tests/test_notebook.py
"""


def test_digits_notebook_runs_end_to_end():
  path = os.path.join(ROOT, 'notebooks', 'dha_digits.ipynb')
  nb = nbformat.read(path, as_version=4)
  (at,) = [i for i, c in enumerate(nb.cells)
           if c.cell_type == 'code' and "digits.get_config('dha')" in c.source]
  nb.cells.insert(at + 1, nbformat.v4.new_code_cell(SMALL_SEARCH))
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
