"""dha_jax/io/checkpoint.py on its own, without a training run (seconds): the save cadence,
save / restore of a small state, the config check that refuses a different run, the
training clock kept beside the saves, what a checkpoint older than a field means, and a
half-written save left by a kill removed when the next run opens the directory."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dha_jax.io import checkpoint


def _config(**fields):
  c = ml_collections.ConfigDict({'lr': 0.1, 'num_steps': 10,
                                 'nas': {'lam': 1e-5, 'freeze_threshold': 2e-2}})
  for k, v in fields.items():
    c[k] = v
  return c


def _state(scale=1.0):
  return {'params': {'w': scale * jnp.arange(6.0).reshape(2, 3), 'b': jnp.ones(3)},
          'step': jnp.asarray(3, jnp.int32)}


def test_should_save_every_n_steps_and_never_when_off(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), _config(), every_steps=3, keep=2)
  assert [s for s in range(10) if ckpt.should_save(s)] == [0, 3, 6, 9]
  ckpt.close()
  each = checkpoint.Checkpointer(str(tmp_path / 'each'), _config(), every_steps=1, keep=2)
  assert all(each.should_save(s) for s in range(10))
  each.close()
  never = checkpoint.Checkpointer(str(tmp_path / 'off'), _config(), every_steps=0, keep=2)
  assert not any(never.should_save(s) for s in range(10))
  never.close()


def test_save_restore_round_trip_and_keep(tmp_path):
  """No save: restore returns the given state and False. Three saves with keep=2: the
  latest restores exactly (True), the two newest steps stay on disk."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=2)
  template = _state(0.0)
  same, restored = ckpt.restore(template)
  assert restored is False and same is template
  assert ckpt.latest_step() is None
  for step in (1, 2, 3):
    ckpt.save(_state(float(step)), step)
  ckpt.wait()
  assert ckpt.latest_step() == 3
  got, restored = ckpt.restore(template)
  assert restored is True
  jax.tree_util.tree_map(np.testing.assert_array_equal, got, _state(3.0))
  ckpt.close()
  steps = sorted(int(n) for n in os.listdir(tmp_path / 'checkpoints') if n.isdigit())
  assert steps == [2, 3]
  again = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=2)
  assert again.latest_step() == 3   # a new run in the workdir finds the saves
  with pytest.raises(checkpoint.IncompatibleCheckpoint, match='does not match'):
    again.restore({**template, 'params': {'w': jnp.zeros((3, 3)), 'b': jnp.ones(3)}})
  again.close()


def test_the_config_is_written_and_a_different_run_is_refused(tmp_path):
  """config.json is written (always: no checkpoint yet, any config may take the
  workdir); once a checkpoint exists a config differing in a field that changes the
  maths is refused, naming the field and both values, and one differing only in a
  MAY_DIFFER field is accepted."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=2)
  with open(tmp_path / 'config.json') as f:
    assert json.load(f) == json.loads(_config().to_json_best_effort())
  ckpt.close()
  # no checkpoint yet: another config takes the workdir over
  checkpoint.Checkpointer(workdir, _config(lr=0.2), every_steps=1, keep=2).close()
  with open(tmp_path / 'config.json') as f:
    assert json.load(f)['lr'] == 0.2
  ckpt = checkpoint.Checkpointer(workdir, _config(lr=0.2), every_steps=1, keep=2)
  ckpt.save(_state(), 1)
  ckpt.close()
  with pytest.raises(checkpoint.IncompatibleCheckpoint, match=r'lr: 0\.2 -> 0\.3'):
    checkpoint.Checkpointer(workdir, _config(lr=0.3), every_steps=1, keep=2)
  more = _config(lr=0.2, num_steps=20)
  more.nas.freeze_threshold = 0.1
  checkpoint.Checkpointer(workdir, more, every_steps=1, keep=2).close()  # may differ


def test_the_training_clock_is_kept_per_saved_step(tmp_path):
  """elapsed_s given to save is read back by a new Checkpointer in the workdir (as a
  float), per step; a step saved without it, or never saved, reads 0; an unreadable
  clock file reads as empty."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=3)
  ckpt.save(_state(), 1, elapsed_s=12.5)
  ckpt.save(_state(), 2, elapsed_s=30)
  ckpt.save(_state(), 3)
  ckpt.close()
  again = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=3)
  assert again.elapsed_at(1) == 12.5 and again.elapsed_at(2) == 30.0
  assert isinstance(again.elapsed_at(2), float)
  assert again.elapsed_at(3) == 0.0 and again.elapsed_at(7) == 0.0
  again.close()
  with open(tmp_path / 'checkpoints' / 'train_time.json', 'w') as f:
    f.write('{not json')
  broken = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=3)
  assert broken.elapsed_at(1) == 0.0
  broken.close()


def test_a_half_written_save_is_removed_when_the_next_run_opens(tmp_path):
  """A save cut short by SIGKILL leaves '<step>.orbax-checkpoint-tmp' beside the last
  finished one; the next Checkpointer resumes from the finished save and removes it (in
  the background, done before its first save)."""
  workdir = str(tmp_path)
  ckpt = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=3)
  ckpt.save(_state(), 4)
  ckpt.close()
  half = tmp_path / 'checkpoints' / '5.orbax-checkpoint-tmp'
  half.mkdir()
  (half / 'partial').write_text('x')
  again = checkpoint.Checkpointer(workdir, _config(), every_steps=1, keep=3)
  assert again.latest_step() == 4
  again.save(_state(), 5)
  again.wait()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4', '5']
  assert not (half / 'partial').exists()
  again.close()


def test_every_added_field_means_the_old_behaviour_at_its_default():
  """A checkpoint written before any of the ADDED_FIELDS existed (its config.json
  lacking them all) resumes under today's defaults: each added field's recorded value is
  its default (configs/default.py; the NAS fields in the default config of the strategy
  whose field it is). Any other value of one of them is a different run."""
  from configs import default  # pylint: disable=g-import-not-at-top
  from dha_jax.nas import darts, darts_space, dsnas  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.nas = ml_collections.ConfigDict({'cell_space': darts_space.space_config().cell_space,
                                          'path_groups': dsnas.default_config().path_groups,
                                          'execution': darts.fixed_config().execution})
  new = json.loads(config.to_json_best_effort())
  old = json.loads(json.dumps(new))
  for key in checkpoint.added_fields():
    *path, field = key.split('.')
    section = old
    for p in path:
      section = section[p]
    del section[field]
  assert checkpoint.config_differences(old, new) == []
  for key, value in checkpoint.added_fields().items():
    *path, field = key.split('.')
    changed = json.loads(json.dumps(new))
    section = changed
    for p in path:
      section = section[p]
    section[field] = value + [0] if isinstance(value, list) else (
        not value if isinstance(value, bool) else value + 1 if isinstance(value, (int, float))
        else value + '_other')
    assert checkpoint.config_differences(old, changed) == [key], key
