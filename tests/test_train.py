"""The training program: outputs, exact resume after SIGTERM, refusals of bad runs."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dha_jax.io import checkpoint
from dha_jax.training import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40


def _cli(workdir, *overrides):
  return [sys.executable, '-m', 'dha_jax.main', '--config=configs/test.py',
          f'--workdir={workdir}', f'--config.num_steps={STEPS}',
          '--config.checkpoint_every_steps=1000', '--config.log_every_steps=1', *overrides]


def _losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  return {r['step']: r['train/loss'] for r in rows if 'train/loss' in r}


def _final_params(workdir):
  mgr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  tree = mgr.restore(mgr.latest_step(), args=ocp.args.StandardRestore())
  mgr.close()
  return mgr.latest_step(), tree['params']


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """An uninterrupted run, in-process (same 4 fake devices as the subprocesses)."""
  from configs import test  # pylint: disable=g-import-not-at-top
  config = test.get_config()
  config.num_steps, config.checkpoint_every_steps, config.log_every_steps = STEPS, 1000, 1
  workdir = str(tmp_path_factory.mktemp('reference'))
  result = train.train_and_evaluate(config, workdir)
  return config, workdir, result


def test_outputs_of_a_run(reference_run):
  _, workdir, result = reference_run
  for name in ('config.json', 'metrics.jsonl', 'result.json'):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(n.startswith('events.out.tfevents') for n in os.listdir(workdir))
  with open(os.path.join(workdir, 'result.json')) as f:
    saved = json.load(f)
  for key in ('test/accuracy', 'test/loss', 'num_params', 'wall_time_s', 'hparams'):
    assert key in saved, key
  assert saved['test/accuracy'] == result['test/accuracy'] and 0 <= saved['test/accuracy'] <= 1
  assert saved['steps'] == STEPS
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    first = json.loads(f.readline())
  for key in ('step', 'epoch', 'train/loss', 'train/accuracy', 'lr', 'weight_decay',
              'steps_per_sec'):
    assert key in first, key


def test_sigterm_then_resume_is_exact(reference_run, tmp_path):
  _, ref_dir, ref_result = reference_run
  workdir = str(tmp_path / 'killed')
  env = dict(os.environ, PYTHONUNBUFFERED='1')
  proc = subprocess.Popen(_cli(workdir), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics = os.path.join(workdir, 'metrics.jsonl')
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(metrics) and len(open(metrics).readlines()) >= 8:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGUSR1)  # every thread's stack, and the run goes on
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=240)
  assert proc.returncode == 0, out
  assert '(most recent call first)' in out and 'dha_jax/training/train.py' in out, out
  assert 'SIGTERM: saved step' in out, out
  killed_at = int(out.split('SIGTERM: saved step ')[1].split()[0])
  assert 0 < killed_at < STEPS
  assert not os.path.exists(os.path.join(workdir, 'result.json'))
  done = subprocess.run(_cli(workdir), cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'resumed from' in done.stdout + done.stderr
  # bit-identical to the uninterrupted run: every logged loss, final params, test result
  assert _losses(workdir) == _losses(ref_dir)
  step_a, params_a = _final_params(workdir)
  step_b, params_b = _final_params(ref_dir)
  assert step_a == step_b == STEPS
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_a, params_b)
  with open(os.path.join(workdir, 'result.json')) as f:
    resumed = json.load(f)
  assert resumed['test/loss'] == ref_result['test/loss']
  assert resumed['test/accuracy'] == ref_result['test/accuracy']


def test_a_config_run_again_in_the_process_reuses_its_compiled_steps(reference_run, tmp_path,
                                                                    monkeypatch):
  """The loop keeps its compiled steps by config (train._RunSteps): the same config in a new
  workdir traces nothing again and computes the same run bit for bit; another config
  compiles its own."""
  from dha_jax.training import steps  # pylint: disable=g-import-not-at-top
  config, ref_dir, ref_result = reference_run
  built = []
  compile_steps = steps.compile_steps
  monkeypatch.setattr(steps, 'compile_steps', lambda *a: built.append(1) or compile_steps(*a))
  again = train.train_and_evaluate(config, str(tmp_path / 'again'))
  assert not built
  assert _losses(str(tmp_path / 'again')) == _losses(ref_dir)
  assert again['test/loss'] == ref_result['test/loss']
  other = config.copy_and_resolve_references()
  other.num_steps = 2
  train.train_and_evaluate(other, str(tmp_path / 'other'))
  assert len(built) == 1


def test_time_budget_continues_across_a_resume(reference_run, tmp_path):
  """The training time spent before a checkpoint is saved with it; a resumed run goes on
  from it, so a budget already spent stops the resumed run at once (a fresh clock would
  train on)."""
  import shutil  # pylint: disable=g-import-not-at-top
  config, ref_dir, _ = reference_run
  workdir = str(tmp_path / 'resumed')
  shutil.copytree(ref_dir, workdir)
  spent = checkpoint.Checkpointer(workdir, config, 1000, 2).elapsed_at(STEPS)
  with open(os.path.join(ref_dir, 'metrics.jsonl')) as f:
    logged = [json.loads(l) for l in f if 'train_time_s' in l]
  assert 0 < logged[-1]['train_time_s'] <= spent  # the last log precedes the final save
  config = config.copy_and_resolve_references()
  config.num_steps, config.time_budget_s = 2 * STEPS, spent / 2
  config.time_budget_sets_horizon = False  # the budget as a cap on num_steps (the clock's test)
  result = train.train_and_evaluate(config, workdir)
  assert result['steps'] == STEPS  # not one step more
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    events = [json.loads(l) for l in f if '"time_budget"' in l]
  assert len(events) == 1 and events[0]['step'] == STEPS
  assert events[0]['train_time_s'] >= spent
  config.time_budget_clock = 'cpu'
  with pytest.raises(ValueError, match="time_budget_clock='cpu'"):
    train.train_and_evaluate(config, str(tmp_path / 'bad'))


def test_incompatible_checkpoint_is_refused(reference_run):
  config, workdir, _ = reference_run
  config = config.copy_and_resolve_references()
  config.model.widths = (4, 4)
  with pytest.raises(checkpoint.IncompatibleCheckpoint, match='model.widths'):
    train.train_and_evaluate(config, workdir)


def test_a_checkpoint_of_other_shapes_is_refused_at_restore(reference_run, tmp_path):
  """Past the config check (config.json edited to the new widths, as a hand-copied
  workdir might be), the restore itself refuses parameters of other shapes, naming the
  checkpoint, and writes nothing."""
  import shutil  # pylint: disable=g-import-not-at-top
  config, workdir, _ = reference_run
  copy = str(tmp_path / 'copy')
  shutil.copytree(workdir, copy)
  config = config.copy_and_resolve_references()
  config.model.widths = (4, 4)
  with open(os.path.join(copy, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort())
  before = sorted(os.listdir(os.path.join(copy, 'checkpoints')))
  with pytest.raises(checkpoint.IncompatibleCheckpoint,
                     match=rf"checkpoint {re.escape(copy)}/checkpoints/{STEPS} does not match"):
    train.train_and_evaluate(config, copy)
  assert sorted(os.listdir(os.path.join(copy, 'checkpoints'))) == before


def test_resume_may_change_the_freeze_threshold_but_not_the_search():
  """ISTA's freeze threshold only steers decisions still to come: it may change on
  resume; the search's own settings may not."""
  old = {'nas': {'freeze_threshold': 2e-2, 'lam': 1e-5}, 'num_epochs': 15}
  new = {'nas': {'freeze_threshold': 0.1, 'lam': 1e-5}, 'num_epochs': 12}
  assert checkpoint.config_differences(old, new) == []
  new['nas']['lam'] = 1e-4
  assert checkpoint.config_differences(old, new) == ['nas.lam']


def test_non_finite_loss_stops_and_keeps_good_checkpoint(test_config, tmp_path):
  """lr 1e30 blows the parameters up within a few steps, while the save of the step before
  is still being written in the background: the run waits for it before raising."""
  test_config.lr = 1e30
  test_config.optimizer.grad_clip_norm = 0.0
  test_config.num_steps = 12
  test_config.checkpoint_every_steps = 1
  with pytest.raises(train.NonFiniteLoss, match='non-finite|became') as err:
    train.train_and_evaluate(test_config, str(tmp_path))
  stopped = int(re.search(r'step (\d+)', str(err.value)).group(1))
  names = os.listdir(os.path.join(tmp_path, 'checkpoints'))
  assert any(n.isdigit() for n in names), names
  assert not any('tmp' in n for n in names), names  # no save left half-written
  step, params = _final_params(str(tmp_path))
  assert 1 <= step < 12
  # the latest checkpoint is the last good one, not just some earlier one: a save every
  # step, each after checking the parameters, so it is the stopping step or the one before
  assert stopped - 1 <= step <= stopped, (step, str(err.value))
  assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(params))


# dha_jax.main with orbax's commit of a save (the rename of its temporary directory)
# preceded by a SIGSTOP of the process itself at the N-th save: the parent knows, by
# waitpid, the moment a save is half-written, without polling the file system.
_STOP_AT_SAVE = """
import os, runpy, signal, sys
from orbax.checkpoint._src.path import atomicity
n, commit = [0], atomicity.AtomicRenameTemporaryPath.finalize
async def finalize(self, *args, **kwargs):
  n[0] += 1
  if n[0] == int(os.environ['DHA_TEST_STOP_AT_SAVE']):
    os.kill(os.getpid(), signal.SIGSTOP)
  return await commit(self, *args, **kwargs)
atomicity.AtomicRenameTemporaryPath.finalize = finalize
sys.argv = ['dha_jax.main', *sys.argv[1:]]
runpy.run_module('dha_jax.main', run_name='__main__')
"""


def test_sigkill_during_a_save_loses_only_the_unsaved_steps(reference_run, tmp_path):
  """SIGKILL while a checkpoint is half-written: the process is stopped (SIGSTOP) just
  before orbax commits its 3rd save, its temporary directory is seen beside the last
  finished save, then it is killed. The next run resumes from that save, the temporary
  directory is gone, and the run ends bit-identical to the uninterrupted one."""
  _, ref_dir, ref_result = reference_run
  workdir = str(tmp_path / 'killed')
  cmd = _cli(workdir, '--config.checkpoint_every_steps=1')
  env = dict(os.environ, DHA_TEST_STOP_AT_SAVE='3')
  proc = subprocess.Popen([sys.executable, '-c', _STOP_AT_SAVE, *cmd[3:]], cwd=ROOT,
                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  _, status = os.waitpid(proc.pid, os.WUNTRACED)  # blocks until stopped (or ended)
  assert os.WIFSTOPPED(status), f'the run ended (status {status}) before its 3rd save'
  ckpts = os.path.join(workdir, 'checkpoints')
  names = os.listdir(ckpts)
  finished = max(int(n) for n in names if n.isdigit())
  assert f'{finished + 1}.orbax-checkpoint-tmp' in names, names  # the next, half-written
  proc.kill()
  proc.wait(timeout=60)
  done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f'resumed from {ckpts} at step {finished}' in done.stdout + done.stderr
  assert not any('tmp' in n for n in os.listdir(ckpts)), os.listdir(ckpts)
  assert _losses(workdir) == _losses(ref_dir)
  step_a, params_a = _final_params(workdir)
  assert step_a == STEPS
  jax.tree_util.tree_map(np.testing.assert_array_equal, params_a, _final_params(ref_dir)[1])
  with open(os.path.join(workdir, 'result.json')) as f:
    assert json.load(f)['test/loss'] == ref_result['test/loss']


def test_config_typo_fails_with_the_field_name(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'dha_jax.main', '--config=configs/test.py',
                        f'--workdir={tmp_path}', '--config.batchsize=8'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode != 0
  assert 'batchsize' in out.stderr


def test_a_checkpoint_older_than_a_field_resumes_with_its_old_meaning():
  """A field added since the checkpoint was written (absent from its config.json) is
  compatible at the value meaning the old behaviour, and only at it."""
  from configs import default  # pylint: disable=g-import-not-at-top
  new = json.loads(default.get_config().to_json_best_effort())
  old = json.loads(json.dumps(new))
  for group, field in (('model', 'depth'), ('model', 'widen'), ('policy', 'ops')):
    del old[group][field]
  assert checkpoint.config_differences(old, new) == []  # the defaults: the old behaviour
  new['policy']['ops'] = ['ShearX', 'ShearY']
  new['model']['depth'] = 20
  assert checkpoint.config_differences(old, new) == ['model.depth', 'policy.ops']
  del old['model']['name']  # a field missing for another reason still differs
  assert 'model.name' in checkpoint.config_differences(old, new)
