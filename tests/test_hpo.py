"""Learned eta: the exact one-step hypergradient against its closed form and finite
differences, 'lagged' against 'train', clamping, the digits behaviour, 1 vs 4 devices."""

import functools
import json
import math
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dha_jax.core import optim, parallel
from dha_jax.hpo import hypergrad, plot
from dha_jax.training import train
from dha_jax.training import steps as steps_lib


def _hpo_config(config, **fields):
  config.hpo = hypergrad.default_config()
  config.hpo.enabled = True
  for k, v in fields.items():
    config.hpo[k] = v
  return config


# ---- a toy network in float64, with a leaf of every parameter group -------------------
def _toy():
  k = jax.random.split(jax.random.PRNGKey(0), 6)
  params = {'conv': {'kernel': 0.5 * jax.random.normal(k[0], (3, 3, 1, 2)),
                     'bias': 0.1 * jax.random.normal(k[1], (2,))},
            'head': {'kernel': jax.random.normal(k[2], (2, 3)),
                     'bias': 0.1 * jax.random.normal(k[3], (3,))}}
  x = jax.random.normal(k[4], (8, 4, 4, 1))
  y = jax.random.randint(k[5], (8,), 0, 3)

  def loss(p, x=x, y=y):
    h = jax.lax.conv_general_dilated(x, p['conv']['kernel'], (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    h = jnp.mean(jnp.tanh(h + p['conv']['bias']), axis=(1, 2))
    logits = h @ p['head']['kernel'] + p['head']['bias']
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  x2 = jax.random.normal(jax.random.PRNGKey(7), x.shape)
  return params, loss, lambda p: loss(p, x2, (y + 1) % 3)   # train loss, L_hpo


def _setup(test_config, opt_name, **hpo):
  """Handler, the run's optax optimizer, and a state two steps into training (so the
  momentum / Adam moments are not trivial). Call inside jax.enable_x64(True)."""
  c = _hpo_config(test_config, objective='val', lr_bounds=(1e-3, 0.5),
                  wd_bounds=(1e-4, 1e-1), lr_init=0.05, wd_init=0.01, **hpo)
  c.optimizer.name = opt_name
  c.optimizer.grad_clip_norm = 1.0   # the clip is active: part of the exact update
  handler, tx = hypergrad.LearnedHparams(c), optim.net_optimizer(c)
  params, train_loss, hpo_loss = _toy()

  @jax.jit
  def warm_up(params):
    opt_state = tx.init(params)
    for _ in range(2):
      updates, opt_state = tx.update(jax.grad(train_loss)(params), opt_state, params)
      params = optax.apply_updates(params, updates)
    return params, opt_state, jax.grad(train_loss)(params)

  return handler, tx, *warm_up(params), hpo_loss


def _apply(handler, tx, params, opt_state, grads, hpo_loss, hparams=None, hp_state=None):
  """handler.update_theta_and_eta under a one-device 'data' axis (it pmeans)."""
  hparams = handler.init() if hparams is None else hparams
  hp_state = handler.init_opt_state(hparams, params) if hp_state is None else hp_state

  def f(opt_state, params, grads, hparams, hp_state):
    return handler.update_theta_and_eta(tx, opt_state, params, grads, hparams, hp_state,
                                handler.values, hpo_loss)

  add = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], t)
  out = jax.jit(jax.vmap(f, axis_name='data'))(
      *add((opt_state, params, grads, hparams, hp_state)))
  return jax.tree_util.tree_map(lambda a: a[0], out), hparams


def _start(handler):
  """eta to differentiate at: distinct values per group, so no test passes by symmetry."""
  if not handler.per_group:
    return handler.init()
  return {'lr': jnp.asarray([0.3, 0.5, 0.8]), 'weight_decay': jnp.asarray([0.2, 0.9, 0.6])}


def _eta(handler, hparams):
  v = handler.values(hparams)
  return v['learning_rate'], v['weight_decay']


@functools.partial(jax.jit, static_argnums=(0, 6))
def _next_params(tx, opt_state, params, grads, lr, wd, groups=None):
  """Reference theta_{t+1}: the plain optax optimizer with eta injected; per group, one
  full update per group's eta and that group's leaves taken from it."""
  if groups is None:
    eta = {'learning_rate': lr, 'weight_decay': wd}
    st = opt_state._replace(hyperparams={**opt_state.hyperparams, **eta})
    return optax.apply_updates(params, tx.update(grads, st, params)[0])
  full = [_next_params(tx, opt_state, params, grads, lr[i], wd[i]) for i in range(3)]
  return jax.tree_util.tree_map(lambda p, *alts: alts[hypergrad.group_index(p)], params,
                                *full)


def _rel(a, b):
  a, b = np.asarray(a), np.asarray(b)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _flat(metrics, name, per_group):
  if not per_group:
    return np.asarray([metrics[name]])
  return np.asarray([metrics[f'{name}/{g}'] for g in hypergrad.GROUPS])


# ---- exactness --------------------------------------------------------------------------
@pytest.mark.parametrize('per_group', [False, True])
def test_sgd_momentum_matches_closed_form(test_config, per_group):
  with jax.enable_x64(True):
    handler, tx, params, opt_state, grads, hpo_loss = _setup(
        test_config, 'sgd', per_group=per_group)
    (new_params, _, _, _, m), hparams = _apply(handler, tx, params, opt_state, grads,
                                               hpo_loss, _start(handler))
    lr, wd = (jnp.broadcast_to(v, (3,)) for v in _eta(handler, hparams))
    # v_t = mu * trace + clip(g) + wd theta_t ; theta_{t+1} = theta_t - lr v_t
    mu, trace = test_config.optimizer.momentum, optax.tree_utils.tree_get(opt_state, 'trace')
    scale = jnp.minimum(1.0, 1.0 / optax.tree.norm(grads))
    gid = jax.tree_util.tree_map(hypergrad.group_index, params)
    v = jax.tree_util.tree_map(lambda tr, g, p, i: mu * tr + scale * g + wd[i] * p,
                               trace, grads, params, gid)
    chex.assert_trees_all_close(
        new_params, jax.tree_util.tree_map(lambda p, v, i: p - lr[i] * v, params, v, gid),
        rtol=1e-12)
    g_hpo = jax.grad(hpo_loss)(new_params)

    def per_group_dot(a, b):
      out = np.zeros(3)
      for x, y, i in zip(*(jax.tree_util.tree_leaves(t) for t in (a, b, gid))):
        out[i] += float(jnp.sum(x * y))
      return out if per_group else out.sum(keepdims=True)

    want_lr = -per_group_dot(g_hpo, v)
    want_wd = -np.asarray(lr[:len(want_lr)]) * per_group_dot(g_hpo, params)
    err_lr = _rel(_flat(m, 'hpo/grad_lr', per_group), want_lr)
    err_wd = _rel(_flat(m, 'hpo/grad_weight_decay', per_group), want_wd)
    print(f'closed form, sgd, per_group={per_group}: rel err lr {err_lr:.1e} wd {err_wd:.1e}')
    assert err_lr < 1e-10 and err_wd < 1e-10


@pytest.mark.parametrize('opt_name,per_group,space', [
    ('adam', False, 'log'), ('nesterov', False, 'linear'), ('adamw', False, 'log'),
    ('adam', True, 'log')])
def test_hypergradient_matches_finite_differences(test_config, opt_name, per_group, space):
  with jax.enable_x64(True):
    handler, tx, params, opt_state, grads, hpo_loss = _setup(
        test_config, opt_name, per_group=per_group, space=space)
    (new_params, _, _, _, m), hparams = _apply(handler, tx, params, opt_state, grads,
                                               hpo_loss, _start(handler))
    lr, wd = (np.broadcast_to(np.asarray(v), (3,)) if per_group else np.asarray(v)
              for v in _eta(handler, hparams))
    groups = hypergrad.GROUPS if per_group else None
    chex.assert_trees_all_close(
        new_params, _next_params(tx, opt_state, params, grads, lr, wd, groups), rtol=1e-12)

    def fd(which, i):
      eta = [np.array(lr, np.float64), np.array(wd, np.float64)]
      h = 1e-5 * float(eta[which].flat[i])
      out = []
      for s in (1, -1):
        e = [a.copy() for a in eta]
        e[which].flat[i] += s * h
        out.append(float(hpo_loss(_next_params(tx, opt_state, params, grads, *e, groups))))
      return (out[0] - out[1]) / (2 * h)

    n = 3 if per_group else 1
    err = {}
    for which, name in enumerate(('lr', 'weight_decay')):
      want = np.asarray([fd(which, i) for i in range(n)])
      err[name] = _rel(_flat(m, f'hpo/grad_{name}', per_group), want)
    print(f'finite differences, {opt_name} per_group={per_group} {space}: rel err {err}')
    assert max(err.values()) < 1e-6


def test_per_group_with_equal_eta_is_the_global_update(test_config):
  with jax.enable_x64(True):
    outs = []
    for per_group in (False, True):
      handler, tx, params, opt_state, grads, hpo_loss = _setup(
          test_config, 'adamw', per_group=per_group)
      (new_params, _, new_hp, _, m), _ = _apply(handler, tx, params, opt_state, grads,
                                                hpo_loss)
      outs.append((new_params, m))
    chex.assert_trees_all_close(outs[0][0], outs[1][0], rtol=1e-15)
    total = sum(outs[1][1][f'hpo/grad_lr/{g}'] for g in hypergrad.GROUPS)
    np.testing.assert_allclose(total, outs[0][1]['hpo/grad_lr'], rtol=1e-10)
    chex.assert_shape([new_hp['lr'], new_hp['weight_decay']], (3,))


# ---- bounds and config -----------------------------------------------------------------
def test_eta_is_clamped_to_its_bounds(test_config):
  handler, tx, params, opt_state, grads, hpo_loss = _setup(test_config, 'sgd')
  handler.tx = optax.adam(10.0)   # first step 10 x sign(g): must stop on the bounds
  (_, _, new_hp, _, m), _ = _apply(handler, tx, params, opt_state, grads, hpo_loss)
  for k, (lo, hi) in handler.bounds.items():
    v = float(handler.values(new_hp)[hypergrad.OPT_NAMES[k]])
    assert lo * (1 - 1e-6) <= v <= hi * (1 + 1e-6)
    assert min(abs(v - lo), abs(v - hi)) <= 1e-6 * hi
    assert m[f'hpo/at_bound_{k}'] == 1.0 and m[f'hpo/{k}'] == pytest.approx(v)
  assert float(new_hp['lr']) in (0.0, 1.0)


def test_init_midpoint_and_config_errors(test_config):
  h = hypergrad.LearnedHparams(_hpo_config(test_config, lr_bounds=(1e-3, 1e-1)))
  assert float(h.values(h.init())['learning_rate']) == pytest.approx(1e-2, rel=1e-6)
  with pytest.raises(ValueError, match='lr_init=1.0 lies outside'):
    hypergrad.LearnedHparams(_hpo_config(test_config, lr_init=1.0))
  with pytest.raises(ValueError, match='wd_bounds'):
    hypergrad.LearnedHparams(_hpo_config(test_config, wd_bounds=(0.0, 1e-3)))
  with pytest.raises(ValueError, match='objective'):
    hypergrad.LearnedHparams(_hpo_config(test_config, objective='test'))
  c = _hpo_config(test_config)
  c.hpo.unlock()
  c.hpo.lr_bound = (0.1, 0.2)
  with pytest.raises(ValueError, match='lr_bound is unknown'):
    hypergrad.LearnedHparams(c)


# ---- the real step ---------------------------------------------------------------------
class _Run:
  """A compiled train step on a mesh (one device unless told), fed like train.py."""

  def __init__(self, config, devices=None):
    self.config = config
    self.mesh = parallel.make_mesh(devices or jax.devices()[:1])
    self.ds, self.comps, state, _, _ = train.setup(config, self.mesh)
    self.state = parallel.replicate(state, self.mesh)
    self.step, _ = steps_lib.compile_steps(self.comps, self.mesh)

  def batches(self, seed):
    return self.ds.train_iterator('train', self.config.batch_size, seed)

  def __call__(self, batch, hpo_batch=None):
    b = dict(batch)
    if hpo_batch is not None:
      b.update(hpo_image=hpo_batch['image'], hpo_label=hpo_batch['label'])
    self.state, m = self.step(self.state, parallel.shard_batch(b, self.mesh))
    return jax.device_get(m)


@pytest.mark.parametrize('objective', ['train', 'val'])
def test_hypergradient_in_the_compiled_step_equals_finite_differences(test_config,
                                                                       objective):
  """hpo/grad_lr of the real compiled step == central differences of the real L_hpo: the
  same step run at lr(u +- d) gives theta_{t+1}(lr), whose loss on the HPO batch (the
  step's own un-augmented forward) is taken outside the step."""
  test_config.preprocess.kind = 'none'
  c = _hpo_config(test_config, objective=objective, learn_wd=False)
  run = _Run(c)
  comps, start = run.comps, run.state
  it = run.batches(0)
  a, b = next(it), next(it)
  keep = lambda st: jax.tree_util.tree_map(jnp.array, st)  # the step donates its input

  def l_hpo(net, batch):
    logits, _, _ = comps.strategy.apply(net, start.batch_stats, start.params['arch'],
                                        start.nas_state, comps.prepare_eval(batch['image']),
                                        None, train=True)
    return parallel.pmean(jnp.mean(steps_lib.cross_entropy(logits, batch['label'])))

  l_hpo = parallel.data_parallel(l_hpo, run.mesh, (parallel.REPLICATED, parallel.SHARDED),
                                 parallel.REPLICATED)
  hb = parallel.shard_batch({'image': b['image'], 'label': b['label']}, run.mesh)
  u0 = float(jax.device_get(start.hparams['lr']))
  run.state = keep(start)
  exact = run(a, b)['hpo/grad_lr']
  loss, value = {}, {}
  for sign in (1, -1):
    u = u0 + sign * 5e-3
    hp = dict(start.hparams, lr=jnp.full_like(start.hparams['lr'], u))
    value[sign] = float(comps.hpo.values(hp)['learning_rate'])
    run.state = parallel.replicate(keep(start).replace(hparams=hp), run.mesh)
    run(a, b)  # (donates hp)
    loss[sign] = float(l_hpo(run.state.params['net'], hb))
  fd = (loss[1] - loss[-1]) / (value[1] - value[-1])
  np.testing.assert_allclose(exact, fd, rtol=2e-2)
  assert abs(exact) > 1e-3


def test_lagged_equals_train_on_the_same_batch(test_config):
  """The real step: lagged at step 1 (training gradient of batch B at theta_1) == train
  at step 0 (HPO batch B). Un-augmented training batches make them the same loss."""
  test_config.preprocess.kind = 'none'
  grads = {}
  for objective in ('train', 'lagged'):
    run = _Run(_hpo_config(test_config.copy_and_resolve_references(), objective=objective))
    it = run.batches(0)
    a, b = next(it), next(it)
    if objective == 'train':
      m = run(a, b)
    else:
      assert run(a)['hpo/grad_lr'] == 0.0   # no tangent yet
      m = run(b)
    grads[objective] = {k: v for k, v in m.items() if k.startswith('hpo/grad_')}
  for k, v in grads['train'].items():
    np.testing.assert_allclose(grads['lagged'][k], v, rtol=2e-5, err_msg=k)


@pytest.mark.parametrize('opt_name,per_group', [('adam', True), ('nesterov', False)])
def test_lagged_equals_train_exactly_in_float64(test_config, opt_name, per_group):
  """The handler alone: the stored tangent contracted with g(theta_1) is the hypergradient
  of 'val'/'train' (per group too, which rests on the per-leaf structure of the update)."""
  with jax.enable_x64(True):
    handler, tx, params, opt_state, grads, hpo_loss = _setup(test_config, opt_name,
                                                             per_group=per_group)
    start = _start(handler)
    (theta1, _, _, _, m_train), _ = _apply(handler, tx, params, opt_state, grads, hpo_loss,
                                           start)
    test_config.hpo.objective = 'lagged'   # _setup filled config.hpo: same bounds and eta
    lagged = hypergrad.LearnedHparams(test_config)
    out0, _ = _apply(lagged, tx, params, opt_state, grads, None, start)
    chex.assert_trees_all_close(out0[0], theta1, rtol=1e-15)   # step 0: the same theta_1
    assert all(v == 0 for k, v in out0[4].items() if k.startswith('hpo/grad_'))
    out1, _ = _apply(lagged, tx, out0[0], out0[1], jax.grad(hpo_loss)(out0[0]), None,
                     out0[2], out0[3])
    for k, v in m_train.items():
      if k.startswith('hpo/grad_'):
        np.testing.assert_allclose(out1[4][k], v, rtol=1e-10, err_msg=k)


def test_one_and_four_devices_give_the_same_eta_everywhere(test_config):
  c = _hpo_config(test_config, objective='val', per_group=True)
  c.hpo.optimizer.lr = 0.05
  out = []
  for devices in (jax.devices()[:1], jax.devices()):
    run = _Run(c, devices)
    it, hit = run.batches(0), run.batches(1)
    for _ in range(5):
      run(next(it), next(hit))
    shards = [np.asarray(s.data) for s in run.state.hparams['lr'].addressable_shards]
    assert len(shards) == len(devices)
    for s in shards[1:]:
      np.testing.assert_array_equal(s, shards[0])
    out.append(jax.device_get(run.state.hparams))
  assert np.all(out[0]['lr'] != 0.5)   # it moved
  chex.assert_trees_all_close(out[0], out[1], rtol=1e-4)


def test_digits_lr_rises_from_too_low_and_falls_from_too_high(test_config):
  """Greedy hypergradients on the digits demo: lr far too low rises; lr so high that the
  loss climbs falls (same compiled step, two starting points)."""
  c = _hpo_config(test_config, objective='train', lr_bounds=(1e-5, 20.0),
                  lr_init=1e-4)
  c.optimizer.grad_clip_norm = 0.0
  c.hpo.optimizer.lr = 0.02
  run = _Run(c)
  start = jax.device_get(run.state)
  traj = {}
  for lr0 in (1e-4, 10.0):
    run.state = parallel.replicate(start.replace(hparams={
        **start.hparams, 'lr': jnp.float32(run.comps.hpo.to_unit('lr', lr0))}), run.mesh)
    it, hit = run.batches(0), run.batches(1)
    traj[lr0] = [run(next(it), next(hit)) for _ in range(30)]
  lrs = {k: [m['lr'] for m in v] for k, v in traj.items()}
  losses = {k: [m['train/loss'] for m in v] for k, v in traj.items()}
  print('lr from 1e-4:', lrs[1e-4][0], '->', lrs[1e-4][-1],
        '| lr from 10:', lrs[10.0][0], '->', lrs[10.0][-1], 'loss', losses[10.0][:4])
  assert lrs[1e-4][-1] > 3 * lrs[1e-4][0]
  assert lrs[10.0][-1] < lrs[10.0][0] / 3


def test_train_and_evaluate_writes_eta_and_its_plot(test_config, tmp_path):
  c = _hpo_config(test_config, objective='val', use_schedule=True)
  c.num_steps, c.log_every_steps = 20, 1
  result = train.train_and_evaluate(c, str(tmp_path), devices=jax.devices()[:2])
  assert set(result['hparams']) == {'learning_rate', 'weight_decay'}
  rows = [json.loads(l) for l in open(tmp_path / 'metrics.jsonl')]
  logged = [r for r in rows if 'hpo/lr' in r]
  assert len(logged) == 20 and all(math.isfinite(r['hpo/grad_lr']) for r in logged)
  # use_schedule: the optimizer's lr is the learned lr the step started with (under 'val'
  # the one logged a step before; at first the bounds' log midpoint) times the cosine
  # factor 1/2 (1 + cos(pi s / 20)) of that step s (row 'step' s + 1)
  lo, hi = c.hpo.lr_bounds
  held = [math.sqrt(lo * hi)] + [r['hpo/lr'] for r in logged[:-1]]
  for r, lr in zip(logged, held):
    cosine = 0.5 * (1 + math.cos(math.pi * (r['step'] - 1) / 20))
    assert r['lr'] == pytest.approx(lr * cosine, rel=1e-5), r['step']
  assert logged[-1]['hpo/lr'] != pytest.approx(held[0], rel=1e-3)  # eta moved
  png = plot.plot_hparams(str(tmp_path / 'metrics.jsonl'), str(tmp_path / 'hparams.png'))
  assert png and os.path.getsize(png) > 1000


# ---- lr as a multiplier of the hand-set schedule, weight decay fixed (docs/method.md 4) ------
def test_multiplier_with_fixed_wd_matches_closed_form(test_config):
  with jax.enable_x64(True):
    handler, tx, params, opt_state, grads, hpo_loss = _setup(
        test_config, 'sgd', lr_mode='multiplier', learn_wd=False)
    base, wd = test_config.lr, test_config.weight_decay
    assert handler.kinds == ('lr',) and handler.use_schedule
    assert handler.bounds['lr'] == pytest.approx((base / 4, base * 4))
    hp = handler.init()
    assert set(hp) == {'lr'}
    lr0, wd0 = _eta(handler, hp)
    assert float(lr0) == pytest.approx(base, rel=1e-12) and float(wd0) == wd  # m = 1
    (new_params, _, new_hp, _, m), _ = _apply(handler, tx, params, opt_state, grads,
                                              hpo_loss)
    mu, trace = test_config.optimizer.momentum, optax.tree_utils.tree_get(opt_state, 'trace')
    scale = jnp.minimum(1.0, 1.0 / optax.tree.norm(grads))
    v = jax.tree_util.tree_map(lambda tr, g, p: mu * tr + scale * g + wd * p, trace, grads,
                               params)
    chex.assert_trees_all_close(
        new_params, jax.tree_util.tree_map(lambda p, v: p - base * v, params, v), rtol=1e-12)
    want = -sum(float(jnp.sum(a * b)) for a, b in zip(
        jax.tree_util.tree_leaves(jax.grad(hpo_loss)(new_params)),
        jax.tree_util.tree_leaves(v)))
    assert _rel(m['hpo/grad_lr'], want) < 1e-10
    assert 'hpo/grad_weight_decay' not in m and float(m['weight_decay']) == wd
    assert float(m['hpo/lr_multiplier']) == pytest.approx(
        float(handler.values(new_hp)['learning_rate']) / base, rel=1e-12)
    # clamped to [1/4, 4] of the schedule
    handler.tx = optax.adam(10.0)
    (_, _, new_hp, _, m), _ = _apply(handler, tx, params, opt_state, grads, hpo_loss)
    assert float(m['hpo/lr_multiplier']) == pytest.approx(4.0 if want < 0 else 0.25)


def test_multiplier_lagged_keeps_one_tangent_and_bounds_are_checked(test_config):
  c = _hpo_config(test_config, objective='lagged', lr_mode='multiplier', learn_wd=False)
  h = hypergrad.LearnedHparams(c)
  params, _, _ = _toy()
  state = h.init_opt_state(h.init(), params)
  assert set(state['tangent']) == {'lr'}
  with pytest.raises(ValueError, match='must contain 1'):
    hypergrad.LearnedHparams(_hpo_config(test_config, lr_mode='multiplier',
                                         lr_multiplier_bounds=(2.0, 4.0)))
  with pytest.raises(ValueError, match="lr_mode='times'"):
    hypergrad.LearnedHparams(_hpo_config(test_config, lr_mode='times'))


# ---- the space, the start, the flags: edges the exactness tests do not reach -------------
# (tools/mutation.py, #33 item 13: each of these kills mutants of hpo/hypergrad.py that
# every test above let through)
def test_defaults_are_the_reference_settings(test_config):
  """default_config() (configs/default.py's config.hpo) holds the reference settings of
  docs/method.md section 4: eta off unless asked, lr in [1e-3, 0.05] and wd in [1e-4, 5e-4]
  learned from the midpoint of log space, eta's optimizer Adam at lr 1e-3 (its usual
  betas); the multiplier mode's [1/4, 4] x the schedule; the horizon fields at the values
  that mean the behaviour from before they existed (checkpoint.ADDED_FIELDS)."""
  from dha_jax.io import checkpoint  # pylint: disable=g-import-not-at-top
  d = hypergrad.default_config()
  assert not d.enabled and d.objective == 'train' and d.space == 'log'
  assert tuple(d.lr_bounds) == (1e-3, 0.05) and tuple(d.wd_bounds) == (1e-4, 5e-4)
  assert d.lr_init is None and d.wd_init is None
  assert not d.per_group and not d.use_schedule and d.learn_wd and d.lr_mode == 'absolute'
  assert tuple(d.lr_multiplier_bounds) == (0.25, 4.0)
  assert d.optimizer.to_dict() == {'name': 'adam', 'lr': 1e-3, 'b1': 0.9, 'b2': 0.999}
  for field in ('tangent_decay', 'every_steps', 'reset_tangent', 'handler'):
    assert d[field] == checkpoint.ADDED_FIELDS[f'hpo.{field}'], field
  h = hypergrad.LearnedHparams(_hpo_config(test_config))
  eta = h.values(h.init())
  assert float(eta['learning_rate']) == pytest.approx(math.sqrt(1e-3 * 0.05), rel=1e-6)
  assert float(eta['weight_decay']) == pytest.approx(math.sqrt(1e-4 * 5e-4), rel=1e-6)


@pytest.mark.parametrize('space,bounds', [('log', (1e-3, 0.5)), ('linear', (0.1, 0.5))])
def test_hpo_space_round_trip_and_derivative_match_closed_forms(test_config, space, bounds):
  """value(u) = low (high / low)^u ('log') or low + u (high - low) ('linear'); to_unit is
  its inverse (1e-12) and dvalue/du its derivative (central differences, 1e-7 relative).
  A parameter's group is its rank: >= 3-D conv, 2-D dense, else norm/bias."""
  with jax.enable_x64(True):
    h = hypergrad.LearnedHparams(_hpo_config(test_config, space=space, lr_bounds=bounds,
                                             wd_bounds=(0.0, 1e-3) if space == 'linear'
                                             else (1e-4, 1e-1)))
    lo, hi = bounds
    value = lambda u: float(h._value('lr', jnp.float64(u)))  # pylint: disable=protected-access
    slope = lambda u: float(h._dvalue_du('lr', jnp.float64(u)))  # pylint: disable=protected-access
    for u in (0.0, 0.3, 0.75, 1.0):
      want = lo * (hi / lo) ** u if space == 'log' else lo + u * (hi - lo)
      assert value(u) == pytest.approx(want, rel=1e-12)
      assert h.to_unit('lr', want) == pytest.approx(u, rel=1e-12, abs=1e-12)
      d = 1e-6
      assert slope(u) == pytest.approx((value(u + d) - value(u - d)) / (2 * d), rel=1e-7)
  assert [hypergrad.group_index(jnp.zeros((1,) * n)) for n in (5, 4, 3, 2, 1, 0)] == [
      0, 0, 0, 1, 2, 2]


def test_start_values_and_bound_errors_at_their_edges(test_config):
  """lr_init on a bound (or within 1e-6 of it, inclusive) starts exactly there (u 0 or
  1); past that tolerance it is refused. Bounds need low < high (0 < low in log space);
  the multiplier bounds may end at 1."""
  lo, hi = 1e-3, 0.5

  def start(**hpo):
    return hypergrad.LearnedHparams(_hpo_config(test_config, lr_bounds=(lo, hi), **hpo)).start

  assert start(lr_init=lo)['lr'] == 0.0 and start(lr_init=hi)['lr'] == 1.0
  for within in (8e-7, 1e-6):
    assert start(lr_init=lo * (1 - within))['lr'] == 0.0
    assert start(lr_init=hi * (1 + within))['lr'] == 1.0
    assert start(lr_init=hi * (1 + within), space='linear')['lr'] == 1.0
  for bad in (lo * (1 - 2e-6), lo / 2, hi * (1 + 2e-6)):
    with pytest.raises(ValueError, match='lr_init=.* lies outside'):
      start(lr_init=bad)
  with pytest.raises(ValueError, match='wd_init=.* lies outside'):
    start(wd_init=1.0)
  for bounds in ((0.1, 0.1), (0.2, 0.1), (-1e-3, 0.1)):
    with pytest.raises(ValueError, match='lr_bounds'):
      hypergrad.LearnedHparams(_hpo_config(test_config, space='linear', lr_bounds=bounds))
  assert start(space='linear', wd_bounds=(0.0, 1e-3))['weight_decay'] == 0.5
  for bounds in ((1.0, 4.0), (0.25, 1.0)):
    h = hypergrad.LearnedHparams(_hpo_config(test_config, lr_mode='multiplier',
                                             lr_multiplier_bounds=bounds))
    assert h.values(h.init())['learning_rate'] == pytest.approx(test_config.lr, rel=1e-6)


def test_at_bound_flags_and_per_group_metrics(test_config):
  """Per group, eta frozen (its optimizer's lr 0) at u = (0, 0.5, 1): the at-bound flags
  are (1, 0, 1); the metrics are exactly the documented scalars, the console's 'lr' /
  'weight_decay' the conv group's, and no multiplier outside the multiplier mode. Then
  eta's optimizer pushed hard either way stops on the bounds, flagged."""
  handler, tx, params, opt_state, grads, hpo_loss = _setup(test_config, 'sgd',
                                                           per_group=True)
  handler.tx = optax.sgd(0.0)
  u = {'lr': jnp.asarray([0.0, 0.5, 1.0]), 'weight_decay': jnp.asarray([1.0, 0.25, 0.0])}
  (_, _, new_u, _, m), _ = _apply(handler, tx, params, opt_state, grads, hpo_loss, u)
  chex.assert_trees_all_close(new_u, u)
  assert [float(m[f'hpo/at_bound_lr/{g}']) for g in hypergrad.GROUPS] == [1.0, 0.0, 1.0]
  assert [float(m[f'hpo/at_bound_weight_decay/{g}']) for g in hypergrad.GROUPS] == [
      1.0, 0.0, 1.0]
  names = {f'{s}/{g}' for s in ('lr', 'weight_decay', 'hpo/lr', 'hpo/weight_decay',
                                 'hpo/grad_lr', 'hpo/grad_weight_decay', 'hpo/at_bound_lr',
                                 'hpo/at_bound_weight_decay') for g in hypergrad.GROUPS}
  assert set(m) == names | {'lr', 'weight_decay', 'hpo/loss'}
  assert float(m['lr']) == float(m['lr/conv']) != float(m['lr/dense'])
  assert float(m['weight_decay']) == float(m['weight_decay/conv'])
  for step in (10.0, -10.0):   # adam's first step is lr x sign(g): past both bounds
    handler.tx = optax.adam(step)
    (_, _, new_u, _, m), _ = _apply(handler, tx, params, opt_state, grads, hpo_loss, u)
    for k in hypergrad.KINDS:
      got = np.asarray(new_u[k])
      assert np.all((got == 0.0) | (got == 1.0)), (step, k, got)
      assert all(float(m[f'hpo/at_bound_{k}/{g}']) == 1.0 for g in hypergrad.GROUPS)
