"""dha_jax.compare: the statistics over seeds against closed forms, the runner on faked
runs (commands, skips, failures), and one real comparison end to end: 2 variants x 2
seeds in subprocesses, a real SIGTERM passed on to the running training, the stopped run
resumed bit-identical to an uninterrupted one, finished ones skipped, the genotype handed
from sequential's search half to its second half."""

import glob
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys

from absl import flags
from absl.testing import flagsaver
from ml_collections import config_flags
import pytest

from dha_jax import compare
from dha_jax.comparison import stats

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, 'tests', 'compare_config.py')
SEEDS = ('0', '1')

# Two-sided 95% Student-t quantiles t_{0.975, dof} from the printed tables.
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764, 9: 2.2622}


# ---- (a) the statistics ------------------------------------------------------------------

def test_t_interval_matches_the_closed_form():
  for dof, t in T975.items():
    assert stats.t_quantile(0.975, dof) == pytest.approx(t, abs=1e-4)
  assert stats.t_quantile(0.95, 4) == pytest.approx(2.1318, abs=1e-4)  # a 90% interval
  # three seeds: mean 0.92, sample sd (n - 1) 0.02, half-width t_{0.975,2} * 0.02 / sqrt(3)
  mean, half, n = stats.mean_interval([0.90, 0.94, 0.92])
  assert (mean, n) == (pytest.approx(0.92), 3)
  assert half == pytest.approx(T975[2] * 0.02 / math.sqrt(3), abs=1e-5)  # 0.049683
  # two seeds: sd = |a - b| / sqrt(2), so the half-width is t_{0.975,1} * |a - b| / 2
  assert stats.mean_interval([0.8, 0.9])[1] == pytest.approx(T975[1] * 0.05, abs=1e-5)
  assert stats.mean_interval([0.8, 0.9], level=0.9)[1] == pytest.approx(6.3138 * 0.05,
                                                                        abs=1e-5)
  assert stats.mean_interval([0.9]) == (0.9, None, 1)  # one seed: no interval
  assert stats.mean_interval([]) == (None, None, 0)
  assert stats.mean_interval([0.5] * 4)[1] == 0.0


def test_paired_difference_takes_the_shared_seeds_only():
  variant = {'0': 0.92, '1': 0.935, '2': 0.96, '5': 0.99}
  reference = {'0': 0.90, '1': 0.91, '2': 0.93, '3': 0.50}
  mean, half, n, diffs = stats.paired_difference(variant, reference)
  assert diffs == pytest.approx({'0': 0.02, '1': 0.025, '2': 0.03})
  # differences 0.02, 0.025, 0.03: mean 0.025, sd 0.005
  assert (mean, n) == (pytest.approx(0.025), 3)
  assert half == pytest.approx(T975[2] * 0.005 / math.sqrt(3), abs=1e-6)  # 0.012421
  assert stats.excludes_zero(mean, half)
  # the same accuracies compared unpaired: the two intervals overlap by far
  a = stats.mean_interval([variant[s] for s in diffs])
  b = stats.mean_interval([reference[s] for s in diffs])
  assert a[0] - a[1] < b[0] + b[1]
  # differences -0.01, 0.03: mean 0.01, sd 0.02 * sqrt(2), half 12.706 * 0.02: includes 0
  mean, half, n, _ = stats.paired_difference({'0': 0.89, '1': 0.94}, {'0': 0.90, '1': 0.91})
  assert (mean, half, n) == (pytest.approx(0.01), pytest.approx(T975[1] * 0.02, abs=1e-5), 2)
  assert not stats.excludes_zero(mean, half)
  assert not stats.excludes_zero(0.05, None)  # one seed: no claim either way


# ---- the runner on faked runs (no training) ----------------------------------------------

def _fake_result(acc, steps=100, genotype=None, train_time=None):
  r = {'test/accuracy': acc, 'steps': steps, 'wall_time_s': 60.0, 'num_params': 2_000_000}
  if genotype is not None:
    r['architecture'] = {'genotype': genotype, 'genotype_names': [f'op{g}' for g in genotype]}
  if train_time is not None:
    r['train_time_s'] = train_time
  return r


def _write(path, result):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(result, f)


def _arg(cmd, name):
  """The value of `name`=... in a command line."""
  return next(a.split('=', 1)[1] for a in cmd if a.startswith(name + '='))


def _table_rows(md):
  """The cells of each markdown table row (the header included)."""
  return [[c.strip() for c in l.strip().strip('|').split('|')] for l in md.splitlines()
          if l.startswith('| ')]


def _compare_in_process(monkeypatch, argv):
  """compare.main as `python -m dha_jax.compare argv`; returns its exit status."""
  monkeypatch.setattr(sys, 'argv', ['compare.py', *argv])
  with flagsaver.flagsaver():
    flags.FLAGS(['compare.py', *argv])
    return compare.main(['compare.py'])


def test_runner_commands_skips_and_failures_on_faked_runs(tmp_path, monkeypatch, capsys):
  """Each run's command (its workdir, the budget, the seed last, sequential's halves and
  genotype), finished runs read and not rerun, and one failing run: the others are kept,
  the table marks its cell, the exit status is 1."""
  wd = str(tmp_path)
  accs = {('fixed', '0'): 0.90, ('fixed', '1'): 0.92, ('fixed', '2'): 0.94,
          ('nas', '0'): 0.93, ('nas', '1'): 0.96, ('nas', '2'): 0.975,
          ('sequential', '1'): 0.91, ('sequential', '2'): 0.97}
  done = os.path.join(wd, 'fixed', 'seed0', 'result.json')  # finished before: not rerun
  _write(done, _fake_result(0.90, train_time=50.0))
  with open(os.path.join(wd, 'fixed', 'seed0', 'compare.log'), 'w') as f:
    f.write('$ python -m dha_jax.main --config=elsewhere.py:fixed\nresult: {}\n')
  before = os.stat(done).st_mtime_ns
  commands = []

  def fake_tee(cmd, log_path):
    commands.append(cmd)
    run_wd = _arg(cmd, '--workdir')
    assert log_path == os.path.join(run_wd, 'compare.log')
    variant, seed = run_wd.split(os.sep)[-2], run_wd.split(os.sep)[-1][len('seed'):]
    if variant == 'sequential_search':  # a run writes its config.json first
      _write(os.path.join(run_wd, 'config.json'), {'nas': {'strategy': 'dsnas'}})
      _write(os.path.join(run_wd, 'result.json'),
             _fake_result(0.8, 40, genotype=[int(seed), 3], train_time=30.0))
    elif (variant, seed) == ('sequential', '0'):
      return 1  # this one fails
    else:
      _write(os.path.join(run_wd, 'result.json'),
             _fake_result(accs[variant, seed], 60 if variant == 'sequential' else 100,
                          genotype=[int(seed), 3] if variant != 'fixed' else None,
                          train_time=30.0 if variant == 'sequential' else 50.0))
    return 0

  monkeypatch.setattr(compare, '_tee', fake_tee)
  argv = [f'--config={CONFIG}', f'--workdir={wd}', '--variants=fixed,nas,sequential',
          '--seeds=0,1,2', '--budget_minutes=1', '--budget_clock=process',
          '--override=--config.batch_size=16']
  assert _compare_in_process(monkeypatch, argv) == 1
  assert os.stat(done).st_mtime_ns == before
  err = capsys.readouterr().err
  assert f'warning: {done} comes from another command' in err  # kept, but said
  assert '1 of 9 runs have no result' in err and 'sequential, seed 0: exit status 1' in err
  ran = {(_arg(c, '--workdir'), c[-1]) for c in commands}
  expected = {(os.path.join(wd, v, f'seed{s}'), f'--config.seed={s}')
              for v in ('fixed', 'nas', 'sequential_search', 'sequential') for s in '012'}
  assert ran == expected - {(os.path.join(wd, 'fixed', 'seed0'), '--config.seed=0')}
  for c in commands:
    run_wd = _arg(c, '--workdir')
    assert c[1:3] == ['-m', 'dha_jax.main'] and '--config.batch_size=16' in c
    half = 'sequential' in run_wd  # the budget split between sequential's two halves
    assert f'--config.time_budget_s={30.0 if half else 60.0}' in c, c
    assert '--config.time_budget_clock=process' in c
    variant = run_wd.split(os.sep)[-2]
    assert _arg(c, '--config') == f'{CONFIG}:' + {'sequential_search': 'nas'}.get(variant,
                                                                                  variant)
    if variant == 'sequential':
      seed = run_wd[-1]
      assert f'--config.nas.genotype=({seed},3,)' in c, c

  md = open(os.path.join(wd, 'comparison.md')).read()
  assert f'`python -m dha_jax.compare --config={CONFIG}' in md
  assert f'{CONFIG}, budget 1 min (process) per run, seeds 0,1,2, reference fixed\n' in md
  rows = {r[0]: r for r in _table_rows(md)}
  col = {name: i for i, name in enumerate(rows['variant'])}
  acc, delta = col['test top-1 (95% CI)'], col['Δ vs fixed (pp, paired 95% CI)']
  fixed, nas, seq = rows['fixed'], rows['nas'], rows['sequential']
  assert fixed[acc] == f'92.00 ± {100 * T975[2] * 0.02 / math.sqrt(3):.2f}%'  # ± 4.97
  assert fixed[delta] == '(reference)'
  # nas - fixed per seed: +3, +4, +3.5 pp: mean 3.5, sd 0.5, half 1.24: excludes 0, so '*'
  assert nas[delta] == f'+3.50 ± {T975[2] * 0.5 / math.sqrt(3):.2f} *'
  assert seq[col['seeds']] == '2/3'  # seed 0 failed: the mean is over seeds 1 and 2
  assert seq[acc] == f'94.00 ± {T975[1] * 3.0:.2f}%'
  # sequential - fixed on seeds 1, 2: -1, +3 pp: mean +1, half 12.706 * 2: includes 0
  assert seq[delta] == f'+1.00 ± {T975[1] * 2:.2f}'
  assert seq[col['steps']] == '40 + 60'  # the search half, then the training half
  assert seq[col['train time (min)']] == '1.0' and fixed[col['train time (min)']] == '0.8'
  assert fixed[col['parameters (M)']] == '2.000'
  assert 'sequential, seed 0: exit status 1' in md
  assert 'nas, seed 2: op2 op3' in md
  out = json.load(open(os.path.join(wd, 'comparison.json')))
  assert out['variants']['sequential']['accuracy'] == {'1': 0.91, '2': 0.97}
  assert out['variants']['sequential']['missing'] == ['0']
  assert out['variants']['nas']['difference']['per_seed'] == pytest.approx(
      {'0': 0.03, '1': 0.04, '2': 0.035})
  assert [(f['variant'], f['seed']) for f in out['failures']] == [('sequential', '0')]
  assert os.path.exists(os.path.join(wd, 'comparison.png'))

  # Everything but the failed run is finished now: a second call reruns only that one.
  commands.clear()
  monkeypatch.setattr(compare, '_tee', lambda cmd, log: commands.append(cmd) or 0)
  assert _compare_in_process(monkeypatch, argv) == 1  # still no result.json
  assert [_arg(c, '--workdir') for c in commands] == [os.path.join(wd, 'sequential', 'seed0')]


def test_lr_grid_runs_three_rates_on_a_third_of_the_budget_and_keeps_the_best_on_val(
    tmp_path, monkeypatch):
  """lr_grid: `fixed` at config.lr (test.py's digits.py: 0.05, overridden here to 0.08)
  x {1/2, 1, 2}, each with a third of the budget; the result is the run best on
  validation, not on test (x2 here has the best test accuracy but not the best val),
  its steps and times the sums of the three; the table names the choice and the test
  set's binomial noise floor."""
  wd = str(tmp_path)
  val = {'0.5': 0.80, '1': 0.85, '2': 0.83}
  test = {'0.5': 0.79, '1': 0.84, '2': 0.90}
  commands = []

  def fake_tee(cmd, log_path):
    commands.append(cmd)
    run_wd = _arg(cmd, '--workdir')
    factor = os.path.basename(run_wd)[len('lr_x'):]
    _write(os.path.join(run_wd, 'result.json'),
           dict(_fake_result(test[factor], steps=30, train_time=20.0), test_examples=10000))
    with open(os.path.join(run_wd, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 15, 'val/accuracy': 0.1}) + '\n')
      f.write(json.dumps({'step': 30, 'val/accuracy': val[factor]}) + '\n')
    return 0

  monkeypatch.setattr(compare, '_tee', fake_tee)
  argv = [f'--config={CONFIG}', f'--workdir={wd}', '--variants=lr_grid', '--seeds=0',
          "--reference=", '--budget_minutes=3', '--override=--config.lr=0.08']
  assert _compare_in_process(monkeypatch, argv) == 0
  assert len(commands) == 3
  for c, f in zip(commands, (0.5, 1.0, 2.0)):
    assert _arg(c, '--config') == f'{CONFIG}:fixed'
    assert _arg(c, '--workdir') == os.path.join(wd, 'lr_grid', 'seed0', f'lr_x{f:g}')
    rates = [a for a in c if a.startswith('--config.lr=')]
    assert rates == ['--config.lr=0.08', f'--config.lr={0.08 * f!r}']  # the last one wins
    assert '--config.time_budget_s=60.0' in c
    assert not [a for a in c if a.startswith(('--config.num_epochs', '--config.num_steps'))]
  out = json.load(open(os.path.join(wd, 'comparison.json')))
  row = out['variants']['lr_grid']
  assert row['accuracy'] == {'0': 0.84}  # x1: best on val (0.85), not x2 (best on test)
  assert row['per_seed']['0']['lr_grid_factor'] == 1.0
  assert row['steps'] == 90 and row['train_time_s'] == 60.0
  md = open(os.path.join(wd, 'comparison.md')).read()
  assert '- lr_grid, seed 0: lr x1 (val accuracy x0.5: 80.00%, x1: 85.00%, x2: 83.00%)' in md
  floor = 1.96 * math.sqrt(0.84 * 0.16 / 10000)  # the binomial 95% half-width at 84%
  assert f'±{100 * floor:.2f} pp (binomial 95%' in md


@pytest.mark.parametrize('length, expected', [
    ([], '--config.num_steps=2'),  # compare_config.py's 6 steps
    (['--override=--config.num_steps=0', '--override=--config.num_epochs=301'],
     '--config.num_epochs=101'),  # an int field: rounded up
    (['--override=--config.num_steps=100'], '--config.num_steps=34')])
def test_lr_grid_without_a_time_budget_gives_each_rate_a_third_of_the_length(
    tmp_path, monkeypatch, length, expected):
  """Without --budget_minutes an arm's budget is its length: each of the three runs
  trains a third of config.num_steps (when set, rounded up) or of config.num_epochs."""
  commands = []

  def fake_tee(cmd, log_path):
    commands.append(cmd)
    run_wd = _arg(cmd, '--workdir')
    _write(os.path.join(run_wd, 'result.json'), _fake_result(0.8))
    with open(os.path.join(run_wd, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 1, 'val/accuracy': 0.5}) + '\n')
    return 0

  monkeypatch.setattr(compare, '_tee', fake_tee)
  argv = [f'--config={CONFIG}', f'--workdir={tmp_path}', '--variants=lr_grid', '--seeds=0',
          '--reference=', *length]
  assert _compare_in_process(monkeypatch, argv) == 0
  assert len(commands) == 3
  for c in commands:
    lengths = [a for a in c if a.startswith(('--config.num_epochs=', '--config.num_steps='))]
    assert lengths[-1] == expected, c
    assert not [a for a in c if a.startswith('--config.time_budget_s')]
    # dha_jax.main's own flag parsing takes the command (a float for an int field fails)
    argv = ['main', *[a for a in c if a.startswith('--config')]]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file('config', None, '', flag_values=values,
                                    lock_config=True, sys_argv=argv)
    values(argv)
    field = expected.split('=')[0][len('--config.'):]
    assert str(values.config[field]) == expected.split('=')[1]


def test_report_only_tables_the_finished_runs_and_starts_none(tmp_path, monkeypatch):
  wd = str(tmp_path)
  _write(os.path.join(wd, 'fixed', 'seed0', 'result.json'), _fake_result(0.90))
  _write(os.path.join(wd, 'fixed', 'seed1', 'result.json'), _fake_result(0.92))
  _write(os.path.join(wd, 'da', 'seed0', 'result.json'), _fake_result(0.93))
  started = []
  monkeypatch.setattr(compare, '_tee', lambda cmd, log: started.append(cmd) or 0)
  argv = [f'--config={CONFIG}', f'--workdir={wd}', '--variants=fixed,da', '--seeds=0,1',
          '--report_only']
  assert _compare_in_process(monkeypatch, argv) == 0
  assert not started
  rows = {r[0]: r for r in _table_rows(open(os.path.join(wd, 'comparison.md')).read())}
  col = {name: i for i, name in enumerate(rows['variant'])}
  assert rows['fixed'][col['seeds']] == '2/2' and rows['da'][col['seeds']] == '1/2'
  assert rows['da'][col['Δ vs fixed (pp, paired 95% CI)']].startswith('+3.00')
  assert not os.path.exists(os.path.join(wd, 'da', 'seed1'))  # nothing created for it


def test_sigterm_stops_after_the_running_run(tmp_path, monkeypatch):
  """SIGTERM during a run: that run ends (the training saved a checkpoint), no other one
  starts, the table is written, the exit status is 1 and compare's handler is undone."""
  commands = []

  def fake_tee(cmd, log_path):
    del log_path
    commands.append(cmd)
    compare._Stop.handle(signal.SIGTERM, None)  # arrives while this run trains
    return 0  # dha_jax.main exits 0 after its SIGTERM checkpoint, without result.json

  monkeypatch.setattr(compare, '_tee', fake_tee)
  handler = signal.getsignal(signal.SIGTERM)
  argv = [f'--config={CONFIG}', f'--workdir={tmp_path}', '--variants=fixed,nas',
          '--seeds=0,1']
  assert _compare_in_process(monkeypatch, argv) == 1
  assert len(commands) == 1 and signal.getsignal(signal.SIGTERM) == handler
  failures = _read(os.path.join(tmp_path, 'comparison.json'))['failures']
  assert [f['error'] for f in failures] == (
      ['stopped before the end (checkpoint saved, no result.json)'] +
      ['not started (compare was stopped)'] * 3)
  rows = _table_rows(open(os.path.join(tmp_path, 'comparison.md')).read())
  assert rows[1][:3] == ['fixed', '—', '0/2']


def test_flag_errors(tmp_path, monkeypatch):
  from absl import app  # pylint: disable=g-import-not-at-top
  base = [f'--config={CONFIG}', f'--workdir={tmp_path}']
  with pytest.raises(app.UsageError, match='--reference'):
    _compare_in_process(monkeypatch, base + ['--variants=nas,dha'])
  with pytest.raises(app.UsageError, match='is not one of'):
    _compare_in_process(monkeypatch, base + ['--variants=fixed,dha_plus'])
  with pytest.raises(app.UsageError, match='not an integer'):
    _compare_in_process(monkeypatch, base + ['--variants=fixed', '--seeds=0,x'])


# ---- (b), (c) a real comparison: subprocesses, resume, skip, hand-over --------------------

# Put on PYTHONPATH, this sitecustomize.py makes the one training process whose workdir is
# $DHA_TEST_TERM_IN send SIGTERM to its parent (compare) right after its first checkpoint,
# and wait (SIGTERM blocked in every thread, no polling) until compare forwards one back;
# that signal is then delivered to the run's own handler in the main thread. So a real signal reaches a real child at a
# known step, whatever the machine's speed.
_TERM_COMPARE_AT_FIRST_SAVE = """
import importlib.abc, importlib.util, os, signal, sys
TARGET = os.environ.get('DHA_TEST_TERM_IN')

def _patch(checkpoint):
  save, done = checkpoint.Checkpointer.save, []
  def save_then_term_compare(self, state, step, **kwargs):
    save(self, state, step, **kwargs)
    if not done:
      done.append(step)
      os.kill(os.getppid(), signal.SIGTERM)
      if signal.sigtimedwait({signal.SIGTERM}, 120) is None:
        raise RuntimeError('compare did not pass SIGTERM on within 120 s')
      signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # this thread only
      os.kill(os.getpid(), signal.SIGTERM)  # to the run's handler: save next step, stop
  checkpoint.Checkpointer.save = save_then_term_compare

class _PatchOnImport(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name != 'dha_jax.io.checkpoint':
      return None
    sys.meta_path.remove(self)
    spec = importlib.util.find_spec(name)
    run = spec.loader.exec_module
    def exec_module(module):
      run(module)
      _patch(module)
    spec.loader.exec_module = exec_module
    return spec

if TARGET and f'--workdir={TARGET}' in sys.orig_argv:
  # Blocked before any thread exists, so every thread inherits it: compare's SIGTERM stays
  # pending for sigtimedwait instead of going to some XLA thread's handler call.
  signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
  sys.meta_path.insert(0, _PatchOnImport())
"""


def _env(cache, site=None):
  """One CPU device (not the suite's four) and a compile cache shared by the runs."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = re.sub(r'--xla_force_host_platform_device_count=\d+', '',
                            env.get('XLA_FLAGS', '')).strip()
  env.update(JAX_PLATFORMS='cpu', DHA_JAX_CACHE_DIR=str(cache))  # config.compile_cache_dir
  env['PYTHONPATH'] = os.pathsep.join([str(p) for p in (site, ROOT) if p] +
                                      [p for p in [env.get('PYTHONPATH')] if p])
  return env


def _compare(workdir, env):
  return subprocess.run(
      [sys.executable, '-m', 'dha_jax.compare', f'--config={CONFIG}', f'--workdir={workdir}',
       '--variants=fixed,sequential', f'--seeds={",".join(SEEDS)}'],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def _read(path):
  with open(path) as f:
    return json.load(f)


@pytest.fixture(scope='module')
def compared(tmp_path_factory):
  """Runs the comparison with a real SIGTERM to compare while fixed/seed1 trains (after
  its first checkpoint, step 3 of 6), runs the same command again, and trains that run
  uninterrupted in another workdir (the same command) for reference."""
  wd = str(tmp_path_factory.mktemp('compare'))
  cache = tmp_path_factory.mktemp('jax_cache')
  site = tmp_path_factory.mktemp('site')
  (site / 'sitecustomize.py').write_text(_TERM_COMPARE_AT_FIRST_SAVE)
  interrupted = os.path.join(wd, 'fixed', 'seed1')
  first = _compare(wd, dict(_env(cache, site), DHA_TEST_TERM_IN=interrupted))
  assert first.returncode == 1, first.stdout[-3000:] + first.stderr[-3000:]
  finished = {p: (os.stat(p).st_mtime_ns, open(p).read())
              for p in glob.glob(os.path.join(wd, '*', 'seed*', 'result.json'))}
  second = _compare(wd, _env(cache))
  ran = [l for l in open(os.path.join(interrupted, 'compare.log')) if l.startswith('$ ')]
  reference = os.path.join(str(tmp_path_factory.mktemp('uninterrupted')), 'run')
  cmd = [a if not a.startswith('--workdir=') else f'--workdir={reference}'
         for a in shlex.split(ran[0][2:])]
  again = subprocess.run(cmd, cwd=ROOT, env=_env(cache), capture_output=True, text=True,
                         timeout=300, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  return {'wd': wd, 'first': first, 'second': second, 'finished': finished,
          'interrupted': interrupted, 'reference': reference}


def test_sigterm_reaches_the_running_child_which_saves_and_no_other_run_starts(compared):
  """compare got a real SIGTERM while fixed/seed1 trained: the child got it too (its own
  message: it saved the next step, 4, and stopped), compare started nothing after it
  (sequential/seed1 never began) and reported the stop."""
  log = open(os.path.join(compared['interrupted'], 'compare.log')).read()
  assert 'SIGTERM: saved step 4' in log, log[-2000:]
  out = compared['first'].stdout + compared['first'].stderr
  assert 'stopped before the end (checkpoint saved, no result.json)' in out
  assert 'not started (compare was stopped)' in out
  assert set(compared['finished']) == {
      os.path.join(compared['wd'], v, 'seed0', 'result.json')
      for v in ('fixed', 'sequential', compare.SEARCH_HALF)}


def test_comparison_writes_the_table_with_intervals_and_the_picture(compared):
  wd = compared['wd']
  assert compared['second'].returncode == 0, compared['second'].stderr[-3000:]
  md = open(os.path.join(wd, 'comparison.md')).read()
  lines = md.splitlines()
  assert lines[0] == f'{CONFIG}, no time budget, seeds 0,1, reference fixed'
  assert lines[2] == (f'`python -m dha_jax.compare --config={CONFIG} --workdir={wd} '
                      '--variants=fixed,sequential --seeds=0,1`')
  table = _table_rows(md)
  assert table[0] == ['variant', 'test top-1 (95% CI)', 'seeds',
                      'Δ vs fixed (pp, paired 95% CI)', 'steps', 'wall time (min)',
                      'train time (min)', 'parameters (M)']
  assert [r[0] for r in table[1:]] == ['fixed', 'sequential']
  acc = {v: [_read(os.path.join(wd, v, f'seed{s}', 'result.json'))['test/accuracy']
             for s in SEEDS] for v in ('fixed', 'sequential')}
  for cells in table[1:]:
    mean, half, _ = stats.mean_interval(acc[cells[0]])
    assert cells[1:3] == [f'{100 * mean:.2f} ± {100 * half:.2f}%', '2/2']
    assert all(cells), cells  # wall and train time, steps, parameters: all there
  d_mean, d_half, _, _ = stats.paired_difference(dict(zip(SEEDS, acc['sequential'])),
                                                 dict(zip(SEEDS, acc['fixed'])))
  assert table[1][3] == '(reference)'
  assert table[2][3] in (f'{100 * d_mean:+.2f} ± {100 * d_half:.2f}' + m for m in ('', ' *'))
  assert table[2][4] == '6 + 6'  # search half + training half
  out = _read(os.path.join(wd, 'comparison.json'))
  assert out['variants']['fixed']['accuracy'] == dict(zip(SEEDS, acc['fixed']))
  assert out['variants']['sequential']['difference']['n'] == 2
  with open(os.path.join(wd, 'comparison.png'), 'rb') as f:
    png = f.read()
  assert png[:8] == b'\x89PNG\r\n\x1a\n'
  from PIL import Image  # pylint: disable=g-import-not-at-top
  assert Image.open(os.path.join(wd, 'comparison.png')).size[0] == 1100  # two panels


def test_every_run_has_its_seed_and_workdir(compared):
  wd = compared['wd']
  for v in ('fixed', 'sequential', compare.SEARCH_HALF):
    for s in SEEDS:
      assert _read(os.path.join(wd, v, f'seed{s}', 'config.json'))['seed'] == int(s), (v, s)


def test_interrupted_run_resumes_and_finished_runs_are_skipped(compared):
  """The same command again: only the stopped run and the ones never started run; the
  stopped one resumes from its SIGTERM checkpoint and ends bit-identical to an
  uninterrupted run of the same command (test loss and accuracy, every exported array)."""
  out = compared['second'].stdout
  assert 'comes from another command' not in compared['second'].stderr  # the same commands
  ran = [l for l in out.splitlines() if l.startswith('$ ')]
  wd = compared['wd']
  assert [re.search(r'--workdir=(\S+)', l).group(1) for l in ran] == [
      compared['interrupted'], os.path.join(wd, compare.SEARCH_HALF, 'seed1'),
      os.path.join(wd, 'sequential', 'seed1')], ran
  log = open(os.path.join(compared['interrupted'], 'compare.log')).read()
  assert f'resumed from {compared["interrupted"]}/checkpoints at step 4' in log
  result = _read(os.path.join(compared['interrupted'], 'result.json'))
  reference = _read(os.path.join(compared['reference'], 'result.json'))
  assert result['steps'] == reference['steps'] == 6
  for k in ('test/loss', 'test/accuracy'):
    assert result[k] == reference[k], k
  from dha_jax.io import export  # pylint: disable=g-import-not-at-top
  got = export.load_model(os.path.join(compared['interrupted'], 'model')).variables
  want = export.load_model(os.path.join(compared['reference'], 'model')).variables
  import jax  # pylint: disable=g-import-not-at-top
  paths = jax.tree_util.tree_structure(got)
  assert paths == jax.tree_util.tree_structure(want)
  for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
    assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all()
  for path, (mtime, text) in compared['finished'].items():
    assert os.stat(path).st_mtime_ns == mtime and open(path).read() == text, path


def test_sequential_trains_the_genotype_of_its_search_half(compared):
  wd = compared['wd']
  for s in SEEDS:
    searched = _read(os.path.join(wd, compare.SEARCH_HALF, f'seed{s}', 'result.json'))
    genotype = searched['architecture']['genotype']
    assert genotype and searched['search_end_step'] is not None
    second = os.path.join(wd, 'sequential', f'seed{s}')
    assert _read(os.path.join(second, 'config.json'))['nas']['genotype'] == genotype
    assert _read(os.path.join(second, 'result.json'))['architecture']['genotype'] == genotype
    log = open(os.path.join(second, 'compare.log')).read()
    assert compare.genotype_flag(
        searched, os.path.join(wd, compare.SEARCH_HALF, f'seed{s}')) in log
