"""Opt-in tests: the suite must stay under 10 minutes on 2 CPU cores, so a test that
repeats a claim another default test already shows, at many times its cost, runs only
with DHA_SLOW_TESTS=1. Every skip names the default test that keeps the claim."""

import os

import pytest

ENABLED = bool(os.environ.get('DHA_SLOW_TESTS'))


def opt_in(cost, kept_by):
  """Skip unless DHA_SLOW_TESTS=1; `cost` says why it is opt-in, `kept_by` which default
  test shows the same claim."""
  return pytest.mark.skipif(not ENABLED, reason=f'opt-in (DHA_SLOW_TESTS=1): {cost}; '
                                                f'the default suite keeps it by {kept_by}')
