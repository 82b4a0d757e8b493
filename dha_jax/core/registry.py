"""One registry pattern for the extension points: a name -> component table filled by a
decorator at each definition, so a new model, data source or policy is one file (or one
function in the user's own module) and one decorator, and a config names it.

  MODELS = registry.Registry('config.model.name')

  @MODELS.register('small_cnn')
  def from_config(cfg, num_classes, bn_axis_name): ...

A package imports its own modules (`import_modules`), so a new file in it registers
itself; a component defined elsewhere registers when its module is imported.
"""

import importlib
import pkgutil

from dha_jax.core import config_util


class Registry:
  """Components by name; `field` is the config field that names one (for errors)."""

  def __init__(self, field: str):
    self.field = field
    self._items = {}

  def register(self, *names):
    """Decorator: registers the decorated object under each of `names`."""
    if not names:
      raise ValueError(f'{self.field}: register() needs at least one name')

    def decorate(obj):
      for name in names:
        if name in self._items and self._items[name] is not obj:
          raise ValueError(f'{self.field}: {name!r} is already registered (to '
                           f'{_describe(self._items[name])}); pick another name')
        self._items[name] = obj
      return obj
    return decorate

  def unregister(self, name):
    """Removes `name` (a test's toy component)."""
    self.get(name)
    del self._items[name]

  def get(self, name):
    """The component `name`, or a ValueError naming the field, the nearest names and
    every registered one."""
    if name not in self._items:
      near = config_util.nearest(str(name), list(self._items))
      hint = f" (did you mean {', '.join(near)}?)" if near else ''
      raise ValueError(f'{self.field}={name!r} is unknown{hint}; choose one of '
                       f'{sorted(self._items)}')
    return self._items[name]

  __getitem__ = get

  def names(self):
    return sorted(self._items)

  def in_order(self):
    """The components in registration order (augmentation ops: their indices)."""
    return list(self._items.values())

  def __contains__(self, name):
    return name in self._items

  def __iter__(self):
    return iter(self.names())

  def __len__(self):
    return len(self._items)


def _describe(obj):
  return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


def import_modules(package_name, package_path, skip=()):
  """Imports every module of a package (its __init__ calls this with __name__ and
  __path__), so that each registers what it defines; `skip`: modules that register
  nothing and cost at import (matplotlib, whose backend they set: kept off until drawn)."""
  for info in pkgutil.iter_modules(package_path):
    if info.name not in skip:
      importlib.import_module(f'{package_name}.{info.name}')
