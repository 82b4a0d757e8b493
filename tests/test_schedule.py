"""Label smoothing and the learning-rate schedule against their closed forms, and the lr
the real step uses: config.lr x warm-up/cosine x the learned multiplier (#33 item 10)."""

import math
import os

import jax
import numpy as np
import pytest

from dha_jax.core import optim
from dha_jax.hpo import hypergrad
from dha_jax.io import metrics_io
from dha_jax.training import steps, train


def test_label_smoothing_is_the_mixture_of_the_label_and_the_uniform_cross_entropy():
  """CE with labels (1 - e) onehot + e / C equals (1 - e) CE(y) + e mean_c(-log p_c)."""
  logits = jax.random.normal(jax.random.PRNGKey(0), (6, 5)) * 3
  labels = np.array([0, 4, 2, 2, 1, 3])
  logp = np.asarray(jax.nn.log_softmax(logits.astype(np.float64)))
  for eps in (0.0, 0.1, 0.3):
    want = -(1 - eps) * logp[np.arange(6), labels] - eps * logp.mean(-1)
    np.testing.assert_allclose(steps.cross_entropy(logits, labels, eps), want, rtol=1e-5)


def _factor(step, warmup, horizon):
  """Linear warm-up over `warmup` steps, then a cosine from 1 to 0 at `horizon`."""
  if step < warmup:
    return step / warmup
  return 0.5 * (1 + math.cos(math.pi * min(max((step - warmup) / (horizon - warmup), 0), 1)))


def test_schedule_factor_is_warmup_then_cosine_to_the_horizon(test_config):
  c = test_config
  c.warmup_epochs = 2.0
  f = optim.schedule_factor(c, steps_per_epoch=5, total_steps=40)
  for step in (0, 3, 9, 10, 11, 25, 39, 40, 45):
    assert float(f(step, 0)) == pytest.approx(_factor(step, 10, 40), abs=1e-6), step
    assert float(f(step, 30)) == pytest.approx(_factor(step, 10, 30), abs=1e-6), step
  c.schedule = 'constant'
  f = optim.schedule_factor(c, steps_per_epoch=5, total_steps=40)
  assert [float(f(s, 0)) for s in (0, 5, 10, 39)] == pytest.approx([0.0, 0.5, 1.0, 1.0])


def test_the_real_step_uses_base_lr_times_schedule_times_the_learned_multiplier(
    test_config, tmp_path):
  """A run with warm-up (1 epoch), label smoothing and eta learned as a multiplier
  ('lagged': the multiplier moves first, then theta steps with it): every logged lr is
  config.lr x the closed-form schedule at the step's start x the multiplier it logged."""
  c = test_config
  c.dataset.train_subset, c.num_epochs, c.warmup_epochs = 320, 2, 1.0  # 10 steps/epoch
  c.label_smoothing, c.log_every_steps, c.eval_every_epochs = 0.1, 1, 0
  c.recalibration_batches = 0
  c.hpo = hypergrad.default_config()
  c.hpo.update(enabled=True, objective='lagged', lr_mode='multiplier', learn_wd=False,
               optimizer={'name': 'adam', 'lr': 0.05, 'b1': 0.9, 'b2': 0.999})
  train.train_and_evaluate(c, str(tmp_path))
  rows = [r for r in metrics_io.read_rows(str(tmp_path)) if 'lr' in r]
  assert len(rows) == 20
  multipliers = [r['hpo/lr_multiplier'] for r in rows]
  assert max(abs(m - 1) for m in multipliers) > 1e-3  # it moved, so the product is tested
  for r in rows:  # row 'step' s + 1 holds the step that started at s
    want = c.lr * _factor(r['step'] - 1, 10, 20) * r['hpo/lr_multiplier']
    assert r['lr'] == pytest.approx(want, rel=1e-5, abs=1e-9), r['step']


def test_a_resume_with_more_steps_follows_the_cosine_to_the_new_horizon(test_config,
                                                                         tmp_path):
  """num_steps may grow on resume (checkpoint.MAY_DIFFER). The steps already taken keep
  the schedule they had (cosine to 6); from the resume on, the cosine is evaluated at the
  same step on the new horizon (10): the lr jumps from factor(5, 6) to factor(6, 10), it
  does not restart from the peak. keep_checkpoints = 2 keeps the two newest saves."""
  c = test_config
  c.num_steps, c.checkpoint_every_steps, c.keep_checkpoints = 6, 2, 2
  c.log_every_steps, c.eval_every_epochs, c.recalibration_batches = 1, 0, 0
  wd = str(tmp_path)
  saved = lambda: sorted(int(n) for n in os.listdir(os.path.join(wd, 'checkpoints'))
                         if n.isdigit())
  train.train_and_evaluate(c, wd)
  assert saved() == [4, 6]
  c.num_steps = 10
  train.train_and_evaluate(c, wd)
  assert saved() == [8, 10]
  rows = [r for r in metrics_io.read_rows(wd) if 'lr' in r]
  assert [r['step'] for r in rows] == list(range(1, 11))  # nothing logged twice
  for r in rows:  # row 'step' s + 1 holds the step that started at s
    horizon = 6 if r['step'] <= 6 else 10
    want = c.lr * _factor(r['step'] - 1, 0, horizon)
    assert r['lr'] == pytest.approx(want, rel=1e-5, abs=1e-9), r['step']
  assert rows[6]['lr'] > 5 * rows[5]['lr']  # the jump at the resume: 0.345 vs 0.067 x lr
