"""The package layout is a stack: every import inside dha_jax goes to a lower layer, or to
another package of the same layer without a cycle, and nothing imports configs/ (the
README's "Where things live" draws the same stack)."""

import ast
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'dha_jax')

# bottom to top; a unit is a package of dha_jax or a module at its top (an entry point)
LAYERS = (('core', 'layers'),
          ('augment', 'hpo', 'models', 'data', 'nas'),
          ('io', 'comparison'),
          ('training',),
          ('main', 'compare', 'predict', 'local_cluster'))
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(path):
  rel = os.path.relpath(path, PACKAGE)
  head = rel.split(os.sep)[0]
  return head[:-3] if head.endswith('.py') else head


def _imports(path):
  """The dha_jax units and top-level packages `path` imports, wherever in the file."""
  out = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      parts = node.module.split('.')
      if parts[0] == 'dha_jax' and len(parts) == 1:
        out |= {a.name for a in node.names}
      elif parts[0] == 'dha_jax':
        out.add(parts[1])
      else:
        out.add(f'<{parts[0]}>')
    elif isinstance(node, ast.Import):
      for a in node.names:
        parts = a.name.split('.')
        out.add(parts[1] if parts[0] == 'dha_jax' and len(parts) > 1 else f'<{parts[0]}>')
  return out


def _edges():
  edges = {}
  for d, _, files in os.walk(PACKAGE):
    for f in files:
      # every module, the packages' __init__ included (the top one imports nothing)
      if f.endswith('.py') and not (d == PACKAGE and f == '__init__.py'):
        path = os.path.join(d, f)
        edges.setdefault(_unit(path), set()).update(_imports(path) - {_unit(path)})
  return edges


def test_every_unit_has_a_layer():
  """A new loose module at the top of dha_jax (or a new package) must take a place in
  the stack: an entry point, or a module inside one of the packages."""
  assert set(_edges()) <= set(RANK), set(_edges()) - set(RANK)


def test_imports_flow_down_the_stack_and_never_into_configs():
  edges = _edges()
  for unit, targets in edges.items():
    assert '<configs>' not in targets, f'dha_jax/{unit} imports configs/: pass the config'
    for t in targets:
      if t.startswith('<'):
        continue
      assert RANK[t] <= RANK[unit], f'{unit} (layer {RANK[unit]}) imports {t} ({RANK[t]})'
  # within a layer: no cycle (a depth-first search over the same-layer edges)
  same = {u: {t for t in ts if RANK.get(t) == RANK[u]} for u, ts in edges.items()}
  done, path = set(), []

  def visit(u):
    assert u not in path, f'import cycle: {" -> ".join(path + [u])}'
    if u in done:
      return
    path.append(u)
    for t in sorted(same.get(u, ())):
      visit(t)
    path.pop()
    done.add(u)
  for u in sorted(same):
    visit(u)


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
  """The checks above fail where they should: a core module that imports training, and
  two components that import each other."""
  for unit, body in (('core', 'from dha_jax.training import train\n'),
                     ('models', 'from dha_jax import nas\n'),
                     ('nas', 'from dha_jax import models\n')):
    (tmp_path / unit).mkdir()
    (tmp_path / unit / 'x.py').write_text(body)
  monkeypatch.setattr(sys.modules[__name__], 'PACKAGE', str(tmp_path))
  edges = _edges()
  assert edges == {'core': {'training'}, 'models': {'nas'}, 'nas': {'models'}}
  with pytest.raises(AssertionError, match=re.escape('core (layer 0) imports training (3)')):
    test_imports_flow_down_the_stack_and_never_into_configs()
  (tmp_path / 'core' / 'x.py').write_text('')
  with pytest.raises(AssertionError, match='import cycle: models -> nas -> models'):
    test_imports_flow_down_the_stack_and_never_into_configs()
