"""A process-wide choice read when a network is traced (the conv formulation, the compute
dtype): set once per run by train.setup, changed temporarily with `use` (jit inside)."""

import contextlib
from typing import Any, Callable


class TraceDefault:
  """Holds check(name) of the last name set; `check` validates (and may resolve) it."""

  def __init__(self, check: Callable[[str], Any], initial: str):
    self._check = check
    self._value = check(initial)

  def set(self, name: str):
    self._value = self._check(name)

  def get(self):
    return self._value

  @contextlib.contextmanager
  def use(self, name: str):
    old, self._value = self._value, self._check(name)
    try:
      yield
    finally:
      self._value = old
