"""1 vs 4 devices: a few real compiled steps and the comparison the suite's agreement
tests share (test_step.py, test_dha.py), so every component is held to the same
tolerances."""

import chex
import jax
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.training import train


def run_steps(config, devices, n_steps=3, observe=None):
  """n_steps real steps, then the val metrics; observe(comps, before, after) sees each
  step's state before and after (on the devices)."""
  mesh = parallel.make_mesh(devices)
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, eval_step = train.StepCache(comps, mesh)(state)  # specialised as the loop does
  it = train.Batches(ds, comps, config)  # every batch the components declare, as the loop
  history = []
  for _ in range(n_steps):
    before = state if observe is None else jax.device_get(state)  # the step donates it
    state, m = train_step(state, parallel.shard_batch(next(it), mesh))
    history.append(jax.device_get(m))
    if observe is not None:
      observe(comps, before, state)
  ev = train.evaluate(eval_step, state, ds, 'val', config, mesh)
  return jax.device_get(state), history, ev


def assert_agree(one, four, metrics, trees):
  """A 1-device and a 4-device run: every step's `metrics` ({name: tolerances}), the final
  state's fields `trees` and the val accuracy."""
  (s1, h1, e1), (s4, h4, e4) = one, four
  for a, b in zip(h1, h4):
    for name, tol in metrics.items():
      np.testing.assert_allclose(a[name], b[name], **tol)
  for field in trees:
    chex.assert_trees_all_close(getattr(s1, field), getattr(s4, field), atol=2e-5,
                                rtol=1e-4)
  assert e1['val/accuracy'] == pytest.approx(e4['val/accuracy'], abs=1e-6)
