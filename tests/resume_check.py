"""Interrupt a run in this process as a preemption would, and compare two runs' outputs
(test_resume.py, test_dha.py)."""

import json
import os
import signal

import jax
import numpy as np
import orbax.checkpoint as ocp

from dha_jax.io import metrics_io
from dha_jax.training import train

# What differs between two runs of the same computation: clocks and the number of compiles.
TIMING = ('steps_per_sec', 'train_time_s', 'wall_time_s', 'compile_s', 'num_compiles')


def run_interrupted(config, workdir, monkeypatch, step, devices=None):
  """Trains in `workdir`, stopped by a real SIGTERM once `step`'s training metrics are
  written (the loop's handler saves at that step and returns), then trains again: the
  resumed run."""
  write = metrics_io.MetricsWriter.write

  def write_then_signal(self, s, scalars):
    write(self, s, scalars)
    if s == step and 'train/loss' in scalars:
      signal.raise_signal(signal.SIGTERM)

  with monkeypatch.context() as m:
    m.setattr(metrics_io.MetricsWriter, 'write', write_then_signal)
    stopped = train.train_and_evaluate(config, workdir, devices)
  assert stopped == {'preempted': True, 'step': step}
  assert not os.path.exists(os.path.join(workdir, 'result.json'))
  return train.train_and_evaluate(config, workdir, devices)


def rows(workdir):
  return [{k: v for k, v in r.items() if k not in TIMING}
          for r in metrics_io.read_rows(workdir)]


def final_state(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  step = mgr.latest_step()
  tree = mgr.restore(step, args=ocp.args.StandardRestore())
  mgr.close()
  return step, tree


def result(workdir):
  with open(os.path.join(workdir, 'result.json')) as f:
    return {k: v for k, v in json.load(f).items() if k not in TIMING}


def assert_same_run(workdir, ref_dir, num_steps):
  """Every logged metric, every leaf of the final TrainState and result.json, bit for bit
  (timings aside)."""
  got, want = rows(workdir), rows(ref_dir)
  assert len(got) == len(want) > 0
  for a, b in zip(got, want):
    assert a == b, (a.get('step'), a.get('event'))
  (step, state), (ref_step, ref_state) = final_state(workdir), final_state(ref_dir)
  assert step == ref_step == num_steps
  assert set(state) >= {'params', 'opt_state', 'hparams', 'batch_stats', 'nas_state',
                        'rng', 'step'}
  leaves, ref_leaves = (jax.tree_util.tree_leaves_with_path(t) for t in (state, ref_state))
  assert [p for p, _ in leaves] == [p for p, _ in ref_leaves]
  for (path, a), (_, b) in zip(leaves, ref_leaves):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  assert result(workdir) == result(ref_dir)
  return want, state
