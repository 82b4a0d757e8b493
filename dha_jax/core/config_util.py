"""One way to put a config section over its defaults, with one error for a wrong field."""

import difflib
import importlib.util

import ml_collections


def nearest(name, names, n=3):
  """Up to n of `names` that look like `name` (for 'did you mean' hints)."""
  return difflib.get_close_matches(name, list(names), n=n, cutoff=0.5)


def merge(defaults: ml_collections.ConfigDict, given, where: str):
  """`given`'s fields over `defaults` (changed in place and returned): fields it leaves
  out keep their default, a nested section (e.g. optimizer) is taken whole. An unknown
  field is a ValueError naming it (`where`.field), the nearest valid names and all."""
  for k, v in given.items():
    if k not in defaults:
      near = nearest(k, defaults.keys())
      hint = f"did you mean {', '.join(near)}? " if near else ''
      raise ValueError(f'{where}.{k} is unknown; {hint}the fields are {sorted(defaults)}')
    defaults[k] = ml_collections.ConfigDict(v) if hasattr(v, 'items') else v
  return defaults


def load(spec: str):
  """get_config(arg) of a config file named 'path[:arg]', as --config reads it (no
  command-line overrides)."""
  path, _, arg = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_dha_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
