"""Two processes on JAX's distributed runtime (dha_jax.local_cluster: 2 processes x 2 fake
CPU devices) against one process with the same 4 devices, in this process.

The global batch, each device's shard and every per-sample key are the same in both, so
the runs compute the same steps; only the all-reduces differ, gloo's across processes
against XLA's within one, which sum in another order: equal to float32 round-off, grown
by a few steps of Adam (seen here: 1e-7 relative on losses, 2e-5 on DSNAS' probabilities).
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import flax.serialization
import jax
import numpy as np
import pytest

from dha_jax.core import cli
from dha_jax.io import metrics_io
from dha_jax.training import train

import multiprocess_config
import resume_check

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'tests', 'multiprocess_config.py')
RTOL, ATOL = 1e-4, 1e-6  # see the module docstring
TIMEOUT_S = 600  # bounds every launch: a hang fails the test instead of the suite


def _launch(workdir, variant='', log_dir='', num_processes=2, devices=2, extra=(), env=None):
  config = f'--config={CONFIG}:{variant}' if variant else f'--config={CONFIG}'
  cmd = [sys.executable, '-m', 'dha_jax.local_cluster', f'--num_processes={num_processes}',
         f'--devices_per_process={devices}', '--timeout_s=120', f'--log_dir={log_dir}',
         '--', config, f'--workdir={workdir}', *extra]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=None if env is None else dict(os.environ, **env))


def _finish(proc, pids=(), log_dir=''):
  """Waits for the launch; one that outlives TIMEOUT_S fails the test with every process's
  stacks (dha_jax.main dumps them on SIGUSR1) and log, instead of hanging the suite."""
  try:
    out, err = proc.communicate(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    _signal(pids, signal.SIGUSR1)
    time.sleep(2)
    _signal(pids, signal.SIGKILL)
    proc.kill()
    out, err = proc.communicate()
    logs = ''
    for i in range(len(pids) if log_dir else 0):
      with open(os.path.join(log_dir, f'process_{i}.log')) as f:
        logs += f'--- process_{i}.log\n{f.read()[-20000:]}'
    pytest.fail(f'the launch ran past {TIMEOUT_S} s:\n{out}{err}\n{logs}')
  return proc.returncode, out + err


def _signal(pids, signum):
  for pid in pids:
    try:
      os.kill(pid, signum)
    except ProcessLookupError:
      pass


def _one_process(workdir, variant='', **overrides):
  config = multiprocess_config.get_config(variant)
  for k, v in overrides.items():
    config[k] = v
  assert len(jax.devices()) == 4
  return train.train_and_evaluate(config, str(workdir), jax.devices())


def _assert_close(got, want, what, tol=(RTOL, ATOL)):
  if isinstance(want, dict):
    assert set(got) == set(want), what
    for k in want:
      _assert_close(got[k], want[k], f'{what}/{k}', tol)
  elif isinstance(want, (list, tuple)) and want and not isinstance(want[0], (int, float)):
    assert len(got) == len(want), what
    for i, (a, b) in enumerate(zip(got, want)):
      _assert_close(a, b, f'{what}[{i}]', tol)
  elif isinstance(want, str) or want is None or isinstance(want, bool):
    assert got == want, what
  else:
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=tol[0], atol=tol[1], err_msg=what)


def _assert_same_run(two, one, tol=(RTOL, ATOL)):
  """Every logged metric, every leaf of the final TrainState and result.json."""
  got, want = resume_check.rows(two), resume_check.rows(one)
  assert len(got) == len(want) > 0
  for a, b in zip(got, want):
    _assert_close(a, b, f'metrics.jsonl step {b.get("step")}', tol)
  # The final weights as exported (a 2-process Orbax checkpoint restores only onto the
  # same device topology, so the exported child is what both runs can be compared by).
  def weights(workdir):
    with open(os.path.join(workdir, 'model', 'variables.msgpack'), 'rb') as f:
      return flax.serialization.msgpack_restore(f.read())
  _assert_close(weights(two), weights(one), 'model/variables', tol)
  _assert_close(resume_check.result(two), resume_check.result(one), 'result.json', tol)


def _lines(log_dir, i, prefix):
  with open(os.path.join(log_dir, f'process_{i}.log')) as f:
    return [l.strip() for l in f if l.startswith(prefix)]


def _result_line(log_dir, i):
  (line,) = _lines(log_dir, i, 'result: ')
  return {k: v for k, v in json.loads(line[len('result: '):]).items()
          if k not in resume_check.TIMING}


def _pids(proc):
  return [int(re.search(r'pid (\d+)', proc.stderr.readline()).group(1)) for _ in range(2)]


def test_full_dha_on_ista_sigterm_to_one_process_and_the_resumed_run_matches_one(tmp_path):
  """tau + ISTA alpha (recovery, freeze, the search cap and their recompiles, decided on
  each host) + eta on 2 processes, SIGTERM to process 1 only: both save the same step and
  exit 0; the same command resumes and ends where one uninterrupted process ends, and in
  each launch both processes took the same decisions at the same steps. Only process 0
  writes the outputs (the others write their checkpoint shards)."""
  two, logs = tmp_path / 'two', str(tmp_path / 'logs')
  extra = ['--config.num_epochs=3']  # 12 steps: time to be interrupted in the middle
  proc = _launch(two, 'dha/ista', logs + '1', extra=extra)
  pids = _pids(proc)
  deadline = time.time() + TIMEOUT_S
  while not any(r.get('step', 0) >= 2 for r in metrics_io.read_rows(str(two))):
    assert proc.poll() is None and time.time() < deadline, _finish(proc)[1]
    time.sleep(0.05)
  os.kill(pids[1], signal.SIGTERM)
  code, out = _finish(proc, pids, logs + '1')
  assert code == 0, out
  assert not (two / 'result.json').exists()
  (saved,) = {l for i in (0, 1) for l in _lines(logs + '1', i, 'SIGTERM: saved step')}
  stopped = int(re.search(r'step (\d+)', saved).group(1))
  assert 2 <= stopped < 12

  proc = _launch(two, 'dha/ista', logs + '2', extra=extra)
  pids += _pids(proc)
  _one_process(tmp_path / 'one', 'dha/ista', num_epochs=3)  # while the two processes run
  code, out = _finish(proc, pids[2:], logs + '2')
  assert code == 0, out
  for i in (0, 1):
    assert _lines(logs + '2', i, 'resumed from') == [
        f'resumed from {two}/checkpoints at step {stopped}']
  _assert_same_run(str(two), str(tmp_path / 'one'))
  phases = {}
  for launch in '12':
    each = [_lines(logs + launch, i, 'phase:') for i in (0, 1)]
    assert each[0] == each[1], each
    phases[launch] = each[0]
  assert any('search ended' in p for p in phases['1'] + phases['2']), phases
  assert _result_line(logs + '2', 0) == _result_line(logs + '2', 1)

  def outputs(workdir):
    return sorted(os.path.relpath(os.path.join(d, f), workdir)
                  for d, _, files in os.walk(workdir) for f in files
                  if 'checkpoints' not in d and not f.startswith('events.out'))
  assert outputs(str(two)) == outputs(str(tmp_path / 'one'))
  events = [f for f in os.listdir(two) if f.startswith('events.out')]
  # events.out.tfevents.<time>.<host>.<pid> (dha_jax/io/event_file.py); the host may hold dots
  assert sorted(int(f.split('.')[-1]) for f in events) == [pids[0], pids[2]]  # process 0's


def test_full_dha_on_dsnas_on_two_processes_matches_one(tmp_path):
  """tau + DSNAS alpha (a path sampled per device from the device's own key, the layer
  fixed at the end of epoch 1) + eta on 2 processes x 2 devices: every logged row, the
  exported child and result.json equal one process with the same 4 devices (RTOL), and
  both processes took the same phase decisions at the same steps."""
  two, logs = tmp_path / 'two', str(tmp_path / 'logs')
  proc = _launch(two, 'dha', logs)
  pids = _pids(proc)
  _one_process(tmp_path / 'one', 'dha')  # while the two processes run
  code, out = _finish(proc, pids, logs)
  assert code == 0, out
  _assert_same_run(str(two), str(tmp_path / 'one'))
  each = [_lines(logs, i, 'phase:') for i in (0, 1)]
  assert each[0] == each[1] and any('search ended' in p for p in each[0]), each
  assert resume_check.result(str(two))['architecture']['genotype'] == resume_check.result(
      str(tmp_path / 'one'))['architecture']['genotype']


def test_float64_two_processes_equal_one_in_every_row_of_a_100_step_run(tmp_path):
  """The float32 drift between 2 processes and 1 (the module docstring; 2.3e-7 relative
  in this 100-step run, percents in the digits demo's 600) is the order of the sums: in
  float64 (config.compute_dtype, JAX_ENABLE_X64=1) every logged row, the exported weights
  and result.json agree to 1e-9 (4.6e-16 measured on 2026-12-08), about 2^-29 of
  float32's gap, the ratio of the two machine epsilons."""
  two, logs = tmp_path / 'two', str(tmp_path / 'logs')
  extra = ['--config.compute_dtype=float64', '--config.num_steps=100']
  proc = _launch(two, '', logs, extra=extra, env={'JAX_ENABLE_X64': '1'})
  pids = _pids(proc)
  with jax.enable_x64(True):  # while the two processes run
    _one_process(tmp_path / 'one', compute_dtype='float64', num_steps=100)
  code, out = _finish(proc, pids, logs)
  assert code == 0, out
  rows = resume_check.rows(str(two))
  assert [r['step'] for r in rows if 'train/loss' in r] == list(range(2, 101, 2))
  with open(two / 'model' / 'variables.msgpack', 'rb') as f:
    kernels = [a for a in jax.tree_util.tree_leaves(flax.serialization.msgpack_restore(
        f.read())) if a.ndim == 4]
  assert kernels and all(k.dtype == np.float64 for k in kernels)  # the run was float64
  _assert_same_run(str(two), str(tmp_path / 'one'), tol=(1e-9, 1e-12))


def test_wrong_coordinator_is_one_error_on_every_process_and_no_hang(tmp_path):
  ports = []
  for _ in range(2):
    import socket  # pylint: disable=g-import-not-at-top
    with socket.socket() as s:
      s.bind(('127.0.0.1', 0))
      ports.append(s.getsockname()[1])
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  procs = [subprocess.Popen(
      [sys.executable, '-m', 'dha_jax.main', f'--coordinator_address=127.0.0.1:{ports[i]}',
       '--num_processes=2', f'--process_id={i}', '--distributed_timeout_s=5',
       f'--config={ROOT}/configs/test.py', f'--workdir={tmp_path / "w"}'],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for i in (0, 1)]  # each told a different coordinator: neither finds the other
  for i, p in enumerate(procs):
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, err
    last = [l for l in err.splitlines() if l.strip()][-1]
    assert last.startswith(f'error: process {i} could not join the run at 127.0.0.1:'), err
    assert 'Traceback' not in err and 'Check failure' not in err, err
  assert not (tmp_path / 'w').exists()


def test_batch_not_divisible_by_the_processes_is_one_error_on_every_process(tmp_path):
  logs = str(tmp_path / 'logs')
  proc = _launch(tmp_path / 'w', '', logs, num_processes=3, devices=1)  # batch 32, 3 devices
  code, out = _finish(proc)
  assert code == 2, out
  for i in range(3):
    errors = _lines(logs, i, 'error:')
    assert len(errors) == 1 and 'config.batch_size=32 is not divisible by the 3 devices' in (
        errors[0]), errors
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')


def test_a_failing_process_of_many_exits_at_once_with_its_traceback(monkeypatch, capsys):
  """Not through JAX's exit handler, whose shutdown barrier would wait for the other
  processes while they wait for this one in a collective (seen: a run that never ended)."""
  exits = []
  monkeypatch.setattr(cli.os, '_exit', exits.append)

  def fail():
    raise RuntimeError('a collective timed out')
  cli.one_of_many(fail)
  assert exits == [1]
  err = capsys.readouterr().err
  assert 'Traceback' in err and 'RuntimeError: a collective timed out' in err, err
  cli.one_of_many(lambda: 2)  # a one-line input error (dha_jax.core.cli.reported): its status
  assert exits == [1, 2]
  assert cli.one_of_many(lambda: 0) == 0 and exits == [1, 2]  # JAX's exit handler runs
