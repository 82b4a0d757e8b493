"""Sparse theta updates (dha_jax/training/sparse_update.py): stepping the active weights of the full
tree equals the run's optimizer on a tree that holds only those weights, and the rest,
weights and optimizer state, stay bit-for-bit as they were; a traced mask (ISTA's traced
support) steps exactly as the static set of inactive weights does."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax import hpo as hpo_lib
from dha_jax.core import optim
from dha_jax.core.optim import set_hyperparams
from dha_jax.hpo import hypergrad
from dha_jax.training import sparse_update


def _trees(seed):
  rng = np.random.default_rng(seed)
  r = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)
  params = {'cell': {'op_a': {'kernel': r(3, 3, 2, 4), 'bias': r(4)},
                     'op_b': {'kernel': r(5, 5, 2, 4), 'scale': r(4)}},
            'head': {'kernel': r(4, 3)}}
  active = {'cell': {'op_a': {'kernel': True, 'bias': True},
                     'op_b': {'kernel': False, 'scale': False}},
            'head': {'kernel': True}}
  return params, active, r


def _only_active(tree):
  """The same weights without op_b: the independent reference tree."""
  return {'cell': {'op_a': tree['cell']['op_a']}, 'head': tree['head']}


def _on_data_axis(f):
  """f() as the step runs it: inside the 'data' axis (one device; 'train' pmeans)."""
  out = jax.vmap(lambda _: f(), axis_name='data')(jnp.zeros(1))
  return jax.tree_util.tree_map(lambda x: x[0], out)


def _config(objective=None):
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.optimizer.name, c.optimizer.momentum, c.optimizer.grad_clip_norm = 'sgd', 0.9, 1.0
  c.lr, c.weight_decay = 0.1, 0.01
  if objective:
    c.hpo = hypergrad.default_config()
    c.hpo.update(enabled=True, objective=objective, lr_bounds=(1e-3, 1.0),
                 wd_bounds=(1e-4, 0.1))
  return c


@pytest.mark.parametrize('objective', [None, 'lagged', 'train'])
def test_sparse_step_equals_the_optimizer_on_the_active_subtree(objective):
  """Three steps (momentum, the global-norm clip and, 'lagged', the eta tangent carried
  from step to step): active weights equal the reference to 1e-6, inactive weights and
  their momentum are unchanged exactly, their eta tangent is zero; eta itself equals
  the reference's."""
  config = _config(objective)
  hpo = hpo_lib.create(config)
  tx = optim.net_optimizer(config)
  params, active, r = _trees(0)
  inactive = sparse_update.inactive_paths(params, active)
  assert inactive == {('cell', 'op_b', 'kernel'), ('cell', 'op_b', 'scale')}
  hp = hpo.init()
  full = (params, tx.init(params), hp, hpo.init_opt_state(hp, params))
  ref_p = _only_active(params)
  ref = (ref_p, tx.init(ref_p), hp, hpo.init_opt_state(hp, ref_p))
  first = jax.tree_util.tree_map(lambda x: x, full)
  head_x = r(6, 4)
  for step in range(3):
    grads = jax.tree_util.tree_map(lambda x: r(*x.shape), params)  # op_b's must be ignored

    def hpo_loss(p):
      return jnp.mean((head_x @ p['head']['kernel']) ** 2) + jnp.sum(p['cell']['op_a']['bias'])

    def full_hpo_loss(p):
      assert p['cell']['op_b']['kernel'].shape == (5, 5, 2, 4)  # the full tree comes back
      return hpo_loss(p)

    train = objective == 'train'
    new_full = _on_data_axis(lambda: sparse_update.update_theta_and_eta(
        hpo, inactive, tx=tx, opt_state=full[1], params=full[0], grads=grads,
        hparams=full[2], hp_opt_state=full[3], eta_fn=hpo.values,
        hpo_loss=full_hpo_loss if train else None))
    new_ref = _on_data_axis(lambda: hpo.update_theta_and_eta(
        tx=tx, opt_state=ref[1], params=ref[0], grads=_only_active(grads), hparams=ref[2],
        hp_opt_state=ref[3], eta_fn=hpo.values, hpo_loss=hpo_loss if train else None))
    full, ref = new_full[:4], new_ref[:4]
    chex.assert_trees_all_close(_only_active(full[0]), ref[0], rtol=1e-6, atol=1e-6)
    chex.assert_trees_all_close(full[2], ref[2], rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(full[0]['cell']['op_b']['kernel'],
                                first[0]['cell']['op_b']['kernel'])
  np.testing.assert_array_equal(full[0]['cell']['op_b']['scale'],
                                first[0]['cell']['op_b']['scale'])
  assert np.abs(full[0]['head']['kernel'] - first[0]['head']['kernel']).max() > 1e-3
  # the momentum trace of op_b: still its initial zeros; op_a's moved
  traces = [(p, x) for p, x in jax.tree_util.tree_flatten_with_path(full[1])[0]
            if 'trace' in jax.tree_util.keystr(p)]
  assert len(traces) == 5
  for p, x in traces:
    moved = float(np.abs(x).max()) > 0
    assert moved == ('op_b' not in jax.tree_util.keystr(p)), jax.tree_util.keystr(p)
  if objective == 'lagged':
    for kind in hypergrad.KINDS:
      t = full[3]['tangent'][kind]
      assert float(np.abs(t['cell']['op_b']['kernel']).max()) == 0.0
      assert float(np.abs(t['head']['kernel']).max()) > 0.0
    assert not np.allclose(full[2]['lr'], first[2]['lr'])  # eta moved, like the reference's


@pytest.mark.parametrize('objective', [None, 'lagged', 'train'])
def test_traced_mask_equals_the_static_sparse_step(objective):
  """A traced mask (a strategy's active_mask: per weight None or traced bools) steps as
  the static inactive set does over 3 steps, the used op switching from op_a to op_b
  before the third: weights, momenta and eta (so the hypergradient of 'lagged' and
  'train') agree to 1e-6, the unused op's weights and momentum stay bit-for-bit as they
  were (a switched-off op keeps its momentum), its eta tangent is exactly zero.
  The traced side gets what a traced network's gradient holds for the unused op (exact
  zeros); the static side never looks at it."""
  config = _config(objective)
  hpo = hpo_lib.create(config)
  tx = optim.net_optimizer(config)
  params, _, r = _trees(3)
  mask = lambda flags: {'cell': {'op_a': {'kernel': flags[0], 'bias': flags[0]},
                                 'op_b': {'kernel': flags[1], 'scale': flags[1]}},
                        'head': {'kernel': None}}
  hp = hpo.init()
  static = masked = (params, tx.init(params), hp, hpo.init_opt_state(hp, params))
  head_x = r(6, 4)
  for step in range(3):
    use, idle = ('op_a', 'op_b') if step < 2 else ('op_b', 'op_a')
    inactive = frozenset(('cell', idle, k) for k in params['cell'][idle])
    grads = jax.tree_util.tree_map(lambda x: r(*x.shape), params)
    zeroed = {'head': grads['head'], 'cell': {use: grads['cell'][use], idle: jax.tree_util.
                                              tree_map(jnp.zeros_like, grads['cell'][idle])}}

    def hpo_loss(p, use=use):
      return jnp.mean((head_x @ p['head']['kernel']) ** 2) + jnp.sum(
          p['cell'][use]['kernel'] ** 2)

    loss = hpo_loss if objective == 'train' else None
    new_static = _on_data_axis(lambda: sparse_update.update_theta_and_eta(
        hpo, inactive, tx=tx, opt_state=static[1], params=static[0], grads=grads,
        hparams=static[2], hp_opt_state=static[3], eta_fn=hpo.values, hpo_loss=loss))
    new_masked = jax.jit(lambda flags: _on_data_axis(lambda: sparse_update.update_theta_and_eta(
        hpo, frozenset(), tx=tx, opt_state=masked[1], params=masked[0], grads=zeroed,
        hparams=masked[2], hp_opt_state=masked[3], eta_fn=hpo.values, hpo_loss=loss,
        mask=mask(flags))))(jnp.asarray([use == 'op_a', use == 'op_b']))
    for k in ('lr', 'hpo/grad_lr', 'hpo/grad_weight_decay'):
      if k in new_static[4]:
        np.testing.assert_allclose(new_masked[4][k], new_static[4][k], rtol=1e-6, atol=1e-9)
    old, static, masked = masked, new_static[:4], new_masked[:4]
    for tree_m, tree_s, tree_old in zip(masked, static, old):
      flat_m = jax.tree_util.tree_flatten_with_path(tree_m)[0]
      flat_s, flat_old = (jax.tree_util.tree_leaves(t) for t in (tree_s, tree_old))
      for (path, a), b, before in zip(flat_m, flat_s, flat_old):
        name = jax.tree_util.keystr(path)
        if f"'{idle}'" in name and 'tangent' in name:
          assert not np.any(np.asarray(a)), name  # an untouched weight: no eta tangent
        elif f"'{idle}'" in name:  # as it was (bit-exact), so as the static path's
          np.testing.assert_array_equal(a, before, err_msg=name)
          np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
          if step < 2:  # op_b, never used yet: both paths hold its initial values
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
          np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=name)
  moved = jax.tree_util.tree_leaves(jax.tree_util.tree_map(
      lambda a, b: bool(np.any(a != b)), masked[0]['cell'], params['cell']))
  assert all(moved)  # both ops were used at some step
  if objective:
    assert not np.allclose(masked[2]['lr'], hp['lr'])  # eta moved


def test_no_inactive_weights_is_the_plain_update():
  config = _config()
  hpo = hpo_lib.create(config)
  tx = optim.net_optimizer(config)
  params, _, r = _trees(1)
  grads = jax.tree_util.tree_map(lambda x: r(*x.shape), params)
  hp = hpo.init()
  opt = tx.init(params)
  a = sparse_update.update_theta_and_eta(hpo, frozenset(), tx=tx, opt_state=opt, params=params,
                                 grads=grads, hparams=hp, hp_opt_state=None,
                                 eta_fn=hpo.values, hpo_loss=None)
  updates, _ = tx.update(grads, set_hyperparams(opt, hpo.values(hp)), params)
  expected = jax.tree_util.tree_map(lambda p, u: p + u, params, updates)
  for x, y in zip(jax.tree_util.tree_leaves(a[0]), jax.tree_util.tree_leaves(expected)):
    np.testing.assert_array_equal(x, y)


def test_active_net_must_mirror_the_weights():
  params, active, _ = _trees(2)
  del active['head']
  with pytest.raises(ValueError, match='2 flags for 5 weights|4 flags for 5 weights'):
    sparse_update.inactive_paths(params, active)
