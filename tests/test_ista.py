"""ISTA-NAS: the recovery against sklearn, W and its gradient, the support rule, freezing,
stop_search, the parameter budget, sparse and traced == fixed network, the traced step ==
the static one (compiled once across support changes), 1 vs 4 devices, and a search that
freezes and trains on through the train loop."""

import copy
import dataclasses
import json
import os
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import lasso_path

from dha_jax.core import parallel
from dha_jax.layers import conv
from dha_jax.nas import darts, ista, sparse_recovery
from dha_jax.nas import darts_space as ds
from dha_jax.training import sparse_update, steps, train

import exported
import slow


def _static(strategy, nas_state):
  """The strategy specialised to the support in nas_state ('static' execution)."""
  return strategy.specialize(ista.edges_of(jax.device_get(nas_state['support'])))


def _objective(A, b, x, lam):
  return 0.5 * np.sum((A @ x - b) ** 2) + lam * np.sum(np.abs(x))


def _reference_lasso(A, b, lam):
  """sklearn's coordinate descent (objective 1/(2m) ||A x - b||^2 + alpha ||x||_1, so
  alpha = lam / m, no intercept), warm-started down 30 penalties from ||A^T b||_inf to
  lam: cold-started at lam = 1e-5 (max_iter 1e5, even polished by L-BFGS-B on the split
  form) it stopped up to 2% above the optimum on these underdetermined problems and chose
  another support in 8 of the 200 below, in 96 s; warm-started, 1.6 s and within 3e-10."""
  m = A.shape[0]
  top = np.max(np.abs(A.T @ b)) / m
  if lam / m >= top:
    return np.zeros(A.shape[1])
  alphas = np.geomspace(top, lam / m, 30)
  with warnings.catch_warnings():  # the path's points before the last need not converge
    warnings.simplefilter('ignore', ConvergenceWarning)
    return lasso_path(A, b, alphas=alphas, tol=1e-14, max_iter=10 ** 4)[1][:, -1]


@pytest.mark.parametrize('lam,n', [(1e-1, 21), (1e-2, 35), (1e-3, 14), (1e-5, 28)])
def test_lasso_matches_sklearn(lam, n):
  rng = np.random.default_rng(n)
  A, b = rng.standard_normal((7, n)) / np.sqrt(7), rng.standard_normal(7)
  x = sparse_recovery.lasso(A, b, lam)
  f, f_ref = _objective(A, b, x, lam), _objective(A, b, _reference_lasso(A, b, lam), lam)
  assert f <= f_ref * (1 + 1e-9), (f, f_ref)
  gap, primal = sparse_recovery.duality_gap(A, b, x, lam)
  assert gap <= 1e-9 * primal  # within 1e-9 (relative) of the optimum, certified
  # batched over leading dimensions, zero columns (the strategy's padding) left at 0
  padded = np.concatenate([A, np.zeros((7, 35 - n))], 1)
  xs = sparse_recovery.lasso(np.stack([padded, padded]).astype(np.float32), np.stack([b, b]), lam)
  assert xs.shape == (2, 35) and not np.any(xs[:, n:])
  np.testing.assert_allclose(xs[1, :n], sparse_recovery.lasso(padded.astype(np.float32)[:, :n], b, lam))


def test_recovery_on_the_ista_shapes_matches_an_independent_solver():
  """50 random problems of each node's shape (A 7 x (i+2)*7 with N(0, 1/7) entries, b ~
  N(0, 0.1^2), the default lam = 1e-5): the objective within 1e-9 (relative) of sklearn's,
  our duality-gap certificate below 1e-9 of the objective, and the same support
  (select_support) in all 200 (measured: <= 5e-16 apart, certificate <= 3e-11). The
  float32 FISTA the recovery ran before stopped up to 0.37% above the optimum and picked
  another support in 6 of these 200 (2026-12-01)."""
  rng = np.random.default_rng(0)
  lam = ista.default_config().lam
  for i in range(4):
    n = ista.valid_columns(ds.DARTS, i)
    for _ in range(50):
      A, b = rng.standard_normal((7, n)) / np.sqrt(7), 0.1 * rng.standard_normal(7)
      x, ref = sparse_recovery.lasso(A, b, lam), _reference_lasso(A, b, lam)
      f, f_ref = _objective(A, b, x, lam), _objective(A, b, ref, lam)
      assert f <= f_ref * (1 + 1e-9), (i, f, f_ref)
      gap, primal = sparse_recovery.duality_gap(A, b, x, lam)
      assert gap <= 1e-9 * primal, (i, gap, primal)
      codes = np.zeros((2, 2, 4, 35))
      codes[0, 0, i, :n], codes[1, 0, i, :n] = x, ref
      ours, theirs = (ista.select_support(ds.DARTS, c)[0, i] for c in codes)
      np.testing.assert_array_equal(ours, theirs)


def test_lasso_recovers_a_sparse_code_exactly_when_well_posed():
  rng = np.random.default_rng(0)
  A = rng.standard_normal((30, 10))
  x0 = np.zeros(10)
  x0[[2, 7]] = (1.5, -0.8)
  x = sparse_recovery.lasso(A, A @ x0, 1e-8)
  np.testing.assert_allclose(x, x0, atol=1e-7)


def test_weights_formula_and_gradient_through_A():
  rng = np.random.default_rng(1)
  A = ista.measurement_matrices(ds.DARTS, 3)
  b = rng.standard_normal((2, 4, 7)).astype(np.float32)
  x = np.asarray(sparse_recovery.lasso(A, b, 1e-5))
  support = ista.select_support(ds.DARTS, x)
  W = np.asarray(ista.edge_weights(jnp.asarray(b), A, x, support))
  c = rng.standard_normal(W.shape).astype(np.float32)
  grad = np.asarray(jax.grad(lambda v: jnp.sum(c * ista.edge_weights(v, A, x, support)))(
      jnp.asarray(b)))
  for t in range(2):
    for i in range(4):
      A_S, x_S = A[t, i][:, support[t, i]], x[t, i][support[t, i]]
      direct = b[t, i] @ A_S - (A_S.T @ A_S - np.eye(2)) @ x_S
      np.testing.assert_allclose(W[t, i], direct, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(grad[t, i], A_S @ c[t, i], rtol=1e-5, atol=1e-6)
  # with b = A x exactly and x supported on S, W is x_S
  x2 = np.zeros_like(x)
  np.put_along_axis(x2, support, rng.standard_normal(support.shape), -1)
  b2 = np.einsum('tnmk,tnk->tnm', A, x2)
  W2 = ista.edge_weights(jnp.asarray(b2), A, x2, support)
  np.testing.assert_allclose(W2, np.take_along_axis(x2, support, -1), atol=1e-5)


def test_support_rule_distinct_edges_every_op_reachable():
  x = np.zeros((2, 4, 35), np.float32)
  x[0, 0, [0, 3]] = (5.0, 4.0)          # both strongest on input 0: second goes to input 1
  x[0, 0, 7 + 6] = 1.0                  # dil_conv_5x5 on input 1
  x[0, 3, 4 * 7 + 6] = -9.0             # node 3, input 4, dil_conv_5x5 (negative counts)
  x[0, 3, 2 * 7 + 2] = 3.0
  s = ista.select_support(ds.DARTS, x)
  assert tuple(s[0, 0]) == (0, 13)
  assert tuple(s[0, 3]) == (16, 34)
  g = ds.Genotype.from_edges(*ista.edges_of(s))
  assert g.normal[0:2] == (('max_pool_3x3', 0), ('dil_conv_5x5', 1))
  assert ('dil_conv_5x5', 4) in g.normal[6:8]
  rand = ista.select_support(ds.DARTS, np.random.default_rng(0).standard_normal((2, 4, 35)))
  for t in range(2):
    for i in range(4):
      j = rand[t, i] // 7
      assert j[0] != j[1] and j.max() < i + 2


# ---------------------------------------------------------------- strategy level


def _config(test_config, **nas):
  n = ista.default_config()
  n.channels, n.layers = 4, 3
  n.update(nas)
  test_config.nas = n
  test_config.batch_size = 16
  test_config.conv_impl = 'xla'  # compiles fastest; the maths does not depend on it
  return test_config


@pytest.fixture(scope='module')
def small():
  """One initialised tiny ISTA strategy (init traces the supernet: seconds)."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = _config(test.get_config(), freeze_threshold=1e-4)
  s = ista.ISTA(c, 10, (8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  return c, s, net, bs, arch, ns


class _State:
  """The fields of TrainState that end_of_epoch reads and writes."""

  def __init__(self, params, nas_state, batch_stats=None):
    self.params, self.nas_state, self.batch_stats = params, nas_state, batch_stats

  def replace(self, **kw):
    return _State(kw.get('params', self.params), kw.get('nas_state', self.nas_state),
                  kw.get('batch_stats', self.batch_stats))


def test_keep_fixed_and_freezing(small):
  _, s, net, _, arch, ns = small
  state = _State({'net': net, 'arch': arch}, ns)
  # b unchanged since the last recovery: x does not move, but epoch 1 never freezes
  after1 = s.end_of_epoch(state, 1)
  assert not np.any(after1.nas_state['frozen'])
  assert bool(s.searching(after1.nas_state))
  after2 = s.end_of_epoch(after1, 2)
  assert np.all(after2.nas_state['frozen']) and not bool(s.searching(after2.nas_state))
  # a moved code is not frozen; frozen ones stay exactly where they were
  frozen = np.zeros((2, 4), bool)
  frozen[0, 1] = frozen[1, 3] = True
  ns2 = dict(ns, frozen=jnp.asarray(frozen))
  moved = {'b': arch['b'] + 0.5}
  kept = s.keep_fixed(arch, moved, ns2)['b']
  np.testing.assert_array_equal(kept[frozen], arch['b'][frozen])
  np.testing.assert_array_equal(kept[~frozen], moved['b'][~frozen])
  after = s.end_of_epoch(_State({'net': net, 'arch': moved}, ns2), 3)
  np.testing.assert_array_equal(after.nas_state['frozen'], frozen)  # x moved: no new freeze
  np.testing.assert_array_equal(np.asarray(after.nas_state['x'])[frozen],
                                np.asarray(ns['x'])[frozen])
  np.testing.assert_array_equal(np.asarray(after.nas_state['support'])[frozen],
                                np.asarray(ns['support'])[frozen])
  assert int(after.nas_state['epoch']) == 3
  # the logged movement is ||x_new - x_last|| of each searching node, 0 for frozen ones
  x_new = s.recover(np.asarray(moved['b']), ns['A'])
  want = np.where(frozen, 0.0, np.linalg.norm(x_new - np.asarray(ns['x']), axis=-1))
  np.testing.assert_allclose(after.nas_state['moved'], want, rtol=1e-6)
  assert want[~frozen].min() > s.cfg.freeze_threshold  # so the no-freeze above is exercised
  m = s.metrics(moved, after.nas_state)
  assert m['nas/max_code_move'] == pytest.approx(want.max(), rel=1e-6)
  assert m['nas/code_moves'].startswith('normal ') and '| reduce ' in m['nas/code_moves']


def test_stop_search_freezes_every_node_at_its_support(small):
  """stop_search (the loop's search cap, config.nas.max_search_fraction of the run)
  freezes the nodes still searching and changes nothing else; the codes then stay, and a
  later epoch end keeps x and the support."""
  _, s, net, _, arch, ns = small
  assert ista.default_config().max_search_fraction == 0.3
  frozen = np.zeros((2, 4), bool)
  frozen[0, 2] = True
  state = _State({'net': net, 'arch': arch}, dict(ns, frozen=jnp.asarray(frozen)))
  assert bool(s.searching(state.nas_state))
  out = s.stop_search(state)
  assert np.all(out.nas_state['frozen']) and not bool(s.searching(out.nas_state))
  assert out.nas_state['frozen'].dtype == bool
  for k, v in state.nas_state.items():
    if k != 'frozen':
      np.testing.assert_array_equal(out.nas_state[k], v, err_msg=k)
  moved = {'b': arch['b'] + 0.5}
  np.testing.assert_array_equal(s.keep_fixed(arch, moved, out.nas_state)['b'], arch['b'])
  later = s.end_of_epoch(out.replace(params={'net': net, 'arch': moved}), 5)
  for k in ('x', 'support', 'frozen'):
    np.testing.assert_array_equal(later.nas_state[k], out.nas_state[k], err_msg=k)


def test_budget_rejects_a_larger_support(small, monkeypatch):
  c, s, net, _, arch, ns = small
  # make every node prefer a big op (dil_conv_5x5 on inputs 0 and 1) after recovery
  x_big = np.zeros((2, 4, 35), np.float32)
  x_big[:, :, [6, 13]] = (1.0, 0.9)
  b_big = np.einsum('tnmk,tnk->tnm', np.asarray(ns['A']), x_big)
  candidate = ista.select_support(s.space, s.recover(b_big, ns['A']))
  size, old_size = s.params_of(candidate), s.params_of(np.asarray(ns['support']))
  assert size > old_size
  state = _State({'net': net, 'arch': {'b': jnp.asarray(b_big)}}, ns)
  monkeypatch.setitem(s.cfg, 'budget_mparams', (size - 1) / 1e6)
  out = s.end_of_epoch(state, 1)
  np.testing.assert_array_equal(out.nas_state['support'], ns['support'])
  assert int(out.nas_state['rejected']) == 1
  monkeypatch.setitem(s.cfg, 'budget_mparams', size / 1e6)
  out = s.end_of_epoch(state, 1)
  np.testing.assert_array_equal(out.nas_state['support'], candidate)
  assert int(out.nas_state['rejected']) == 0


def test_sparse_network_equals_the_fixed_genotype_network(small):
  with conv.use_impl('xla'):
    _sparse_equals_fixed(*small)


def test_active_net_is_exactly_the_derived_networks_weights(small):
  """The sparse theta update (sparse_update.py) steps the leaves the support's network
  has: those of the genotype's child network (built independently) plus the auxiliary
  head; every other op's weights are inactive. Unspecialised ('traced', 'masked'): all
  active (the traced step masks them: active_mask)."""
  _, s, packed, _, arch, ns = small
  sparse, net = _static(s, ns), s.unpack(packed)
  s.image_shape = sparse.image_shape = (8, 8, 1)
  flags = jax.tree_util.tree_flatten_with_path(sparse.active_net(net))[0]
  active = {jax.tree_util.keystr(p) for p, f in flags if f}
  module = ds.child_net(s.spec, 10, s.genotype_of(arch, ns))
  tmpl = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v),
                        jnp.zeros((1, 8, 8, 1)))
  child = {jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(ds.restrict(net, tmpl['params']))[0]}
  aux = {jax.tree_util.keystr(p) for p, _ in
         jax.tree_util.tree_flatten_with_path(net.get('aux_head', {}))[0]}
  assert active - {"['aux_head']" + a for a in aux} == child
  assert len(flags) - len(active) > len(child)  # most op weights are off the support
  assert all(jax.tree_util.tree_leaves(s.active_net(packed)))


def _sparse_equals_fixed(c, s, packed, packed_bs, arch, ns):
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  sparse = _static(s, ns)
  net, bs = s.unpack(packed), s.unpack(packed_bs)  # the supernet's layout
  g = s.genotype_of(arch, ns)
  c.nas = darts.fixed_config()
  c.nas.update(channels=4, layers=3, genotype=json.dumps(g.to_json()), execution='static')
  fixed = darts.DartsFixed(c, 10, (8, 8, 1))
  module = ds.child_net(fixed.spec, 10, g)
  tmpl = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v), x)
  sub = {k: ds.restrict(v, tmpl[k]) for k, v in (('params', net), ('batch_stats', bs))}
  y_sparse = jax.jit(lambda *a: sparse.apply(*a, None, False)[0])(net, bs, arch, ns, x)
  y_fixed = jax.jit(lambda p, b, v: fixed.apply(p, b, {}, {}, v, None, False)[0])(
      sub['params'], sub['batch_stats'], x)
  np.testing.assert_allclose(y_sparse, y_fixed, rtol=1e-5, atol=1e-6)
  assert float(jnp.abs(y_sparse).max()) > 1e-3
  # the traced support (the default execution) runs the same network
  assert s.static_key(jax.device_get(ns)) is None and s.specialize(None) is s
  y_traced = jax.jit(lambda *a: s.apply(*a, None, False)[0])(packed, packed_bs, arch, ns, x)
  np.testing.assert_allclose(y_traced, y_sparse, rtol=1e-5, atol=1e-6)
  # the exported child: the same outputs from the same (restricted) variables
  s.image_shape = (8, 8, 1)
  child, variables, gj = s.child(_State({'net': packed, 'arch': arch}, ns, packed_bs))
  y_child = jax.jit(lambda v, u: child.apply(v, u, train=False))(variables, x)
  np.testing.assert_allclose(y_child, y_sparse, rtol=1e-5, atol=1e-6)
  assert ds.Genotype.from_json(gj) == g and s.child_module(gj) == child


# --------------------------------------------------------------- the train step


def _run(config, devices, n_steps=2):
  mesh = parallel.make_mesh(devices)
  data, comps, init, _, _ = train.setup(config, mesh)
  init = jax.device_get(init)  # the step donates its input state
  state = parallel.replicate(init, mesh)
  if comps.strategy.cfg.execution == 'static':
    comps.strategy = _static(comps.strategy, state.nas_state)
  train_step, _ = steps.compile_steps(comps, mesh)
  it = data.train_iterator('train', config.batch_size, config.seed)
  losses = []
  for _ in range(n_steps):
    state, m = train_step(state, parallel.shard_batch(next(it), mesh))
    losses.append(float(m['train/loss']))
  return jax.device_get(state), losses, init


@slow.opt_in("ISTA's cell network differentiated on 1 and 4 devices: 35-40 s",
             "test_dha.py::test_one_and_four_devices_agree_for_full_dha_on_ista (ISTA's "
             "full train step, theta, b and the BatchNorm statistics, on 1 and 4 devices)")
def test_gradients_one_and_four_devices_agree(small):
  """The specialised network's loss and gradients (theta and b, pmean'd, synchronised
  BN) are the same on 1 and 4 devices: what the train step averages."""
  c, s, net, bs, arch, ns = small
  sparse = copy.copy(_static(s, ns))
  sparse.spec = dataclasses.replace(s.spec, auxiliary=False)  # compiles 1.5x faster
  rng = np.random.default_rng(0)
  x = rng.standard_normal((8, 8, 8, 1)).astype(np.float32)
  y = rng.integers(0, 10, 8)
  R, S = parallel.REPLICATED, parallel.SHARDED
  # the sparse network reads only its ops' variables: restrict to them (fewer leaves)
  module = ds.child_net(s.spec, 10, s.genotype_of(arch, ns))
  tmpl = jax.eval_shape(lambda v: module.init(jax.random.PRNGKey(0), v), x)
  net, bs = (ds.restrict(s.unpack(v), tmpl[k]) for v, k in ((net, 'params'),
                                                              (bs, 'batch_stats')))

  def grads(params, images, labels):
    def loss(p):
      logits, new_bs, aux = sparse.apply(p['net'], bs, p['arch'], ns, images,
                                         jax.random.PRNGKey(0), True)
      ce = steps.cross_entropy(logits, labels)
      assert not aux
      return jnp.mean(ce), new_bs
    (value, new_bs), g = jax.value_and_grad(loss, has_aux=True)(params)
    return parallel.pmean((value, g, new_bs))

  out = []
  with conv.use_impl('xla'):
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = parallel.make_mesh(devices)
      f = parallel.data_parallel(grads, mesh, (R, S, S), R)
      out.append(jax.device_get(f({'net': net, 'arch': arch}, x, y)))
  (v1, g1, bs1), (v4, g4, bs4) = out
  np.testing.assert_allclose(v1, v4, rtol=1e-5)
  chex.assert_trees_all_close(g1, g4, atol=1e-5, rtol=1e-4)
  chex.assert_trees_all_close(bs1, bs4, atol=1e-5, rtol=1e-4)
  assert float(np.abs(g1['arch']['b']).max()) > 1e-6  # b gets a gradient through A_S


def _steps(train_step, state, batches):
  losses = []
  for batch in batches:
    state, m = train_step(state, batch)
    losses.append(float(m['train/loss']))
  return jax.device_get(state), losses


def _moved_ops(support):
  """The other op on each node's second edge (the next one): a support change."""
  other = np.asarray(support).copy()
  other[..., 1] = other[..., 1] // 7 * 7 + (other[..., 1] % 7 + 1) % 7
  return other


def _unpacked(strategy, state):
  """A traced run's state in the supernet's layout: theta, every subtree of the optimizer
  state shaped like it, and the BatchNorm statistics unpacked (ISTA.unpack)."""
  net = state.params['net']
  is_theta = lambda x: jax.tree_util.tree_structure(x) == jax.tree_util.tree_structure(net)
  leaves, outer = jax.tree_util.tree_flatten(state.opt_state, is_leaf=is_theta)
  opt = outer.unflatten([strategy.unpack(x) if is_theta(x) else x for x in leaves])
  return state.replace(params=dict(state.params, net=strategy.unpack(net)), opt_state=opt,
                       batch_stats=strategy.unpack(state.batch_stats))


@pytest.fixture(scope='module')
def two_ways():
  """One tiny ISTA search (C = 4, 3 cells, non-affine op BNs: fewer weights to compile)
  from one initialisation on the same batches: 2 steps specialised to the support
  ('static', SkipInactive), 2 traced steps through the loop's StepCache (the strategy
  counts how often its network is traced), then a support change and a third traced
  step; and one step of each from the state where the search ended (stop_search: the
  same support, frozen), where drop-path (0.3) acts. Traced states are given in the
  supernet's layout (_unpacked). Both compiles take ~1 min of the suite."""
  from configs import test  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh(jax.devices()[:1])
  out, batches = {}, None
  for execution in ('static', 'traced'):
    config = _config(test.get_config(), auxiliary_weight=0.0, affine=False,
                     execution=execution, drop_path=0.3)  # drop-path: after the search
    data, comps, init, _, _ = train.setup(config, mesh)
    init = jax.device_get(init)  # the steps donate their input state
    ended = jax.device_get(comps.strategy.stop_search(init))  # the same support, frozen
    if batches is None:
      it = data.train_iterator('train', config.batch_size, config.seed)
      batches = [parallel.shard_batch(next(it), mesh) for _ in range(3)]
    if execution == 'static':
      out['static_strategy'] = static = _static(comps.strategy, init.nas_state)
      step, _ = steps.compile_steps(comps.with_strategy(static), mesh)
      out['init'], out['ended'] = init, ended
      out['static'] = _steps(step, parallel.replicate(init, mesh), batches[:2])
      out['static_ended'] = _steps(step, parallel.replicate(ended, mesh), batches[:1])
      continue
    traces, strategy = [], comps.strategy
    counted = copy.copy(strategy)
    counted.apply = lambda *a, **k: traces.append(1) or strategy.apply(*a, **k)
    cache = train.StepCache(comps.with_strategy(counted), mesh)
    state = parallel.replicate(init, mesh)
    step, _ = cache(state)
    before, losses = _steps(step, state, batches[:2])
    out['traced'] = (_unpacked(strategy, before), losses)
    out['traces_search'] = len(traces)
    done, done_losses = _steps(step, parallel.replicate(ended, mesh), batches[:1])
    out['traced_ended'] = (_unpacked(strategy, done), done_losses)
    out['traces_before'] = len(traces)
    changed = before.replace(nas_state=dict(
        before.nas_state, support=_moved_ops(before.nas_state['support'])))
    state = parallel.replicate(changed, mesh)
    again, _ = cache(state)
    out['same_step'] = again is step and len(cache.steps) == 1
    after, _ = _steps(again, state, batches[2:])
    out['changed'], out['after'] = _unpacked(strategy, changed), _unpacked(strategy, after)
    out['traces_after'] = len(traces)
  return out


def _by_path(tree):
  return {sparse_update._names(p): np.asarray(x)  # pylint: disable=protected-access
          for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _ops(inactive):
  """The (cell, op) names of the node ops whose weights are in `inactive`."""
  return {p[:2] for p in inactive if len(p) > 2 and p[1].startswith('node')}


def _op_of(names):
  """The (cell, op) a weight, its optimizer state or its statistics belong to, or None."""
  for k in range(len(names) - 1):
    if names[k].startswith('cell') and names[k + 1].startswith('node'):
      return names[k:k + 2]
  return None


def test_traced_step_equals_the_static_step(two_ways):
  """Two steps from one state: the traced support's step (every weight through the call,
  the unused ones masked) and the specialised step (only the support's ops, unused
  weights kept outside the call: SkipInactive) give the same losses (1e-6 relative),
  weights, momenta, codes b and BatchNorm statistics of the used ops (1e-5 relative +
  1e-6; measured <= 1.1e-6 of a leaf's largest value, float32 rounding: in float64 they
  agree to 2e-14), and leave every unused op's weights, momentum and statistics
  bit-for-bit as they were. Through the 1-device mesh (no 'data' axis change)."""
  _assert_same_step(two_ways['static_strategy'], two_ways['init'], two_ways['static'],
                    two_ways['traced'])


def test_after_the_search_with_drop_path_the_traced_step_equals_the_static_step(two_ways):
  """The same comparison from the state where the search ended: drop-path is on (its
  masks are keyed by edge and op in both networks) and acts (the first step's loss
  differs from the search's on the same batch and weights); the traced program is the
  search's own (no new trace)."""
  _assert_same_step(two_ways['static_strategy'], two_ways['ended'],
                    two_ways['static_ended'], two_ways['traced_ended'])
  assert abs(two_ways['static_ended'][1][0] - two_ways['static'][1][0]) > 1e-4
  assert two_ways['traces_before'] == two_ways['traces_search']


def _assert_same_step(static_strategy, init, static_run, traced_run):
  """See test_traced_step_equals_the_static_step."""
  (s_static, l_static), (s_traced, l_traced) = static_run, traced_run
  np.testing.assert_allclose(l_traced, l_static, rtol=1e-6)
  net = init.params['net']
  unused = _ops(sparse_update.inactive_paths(
      net, static_strategy.active_net(net)))
  moved = 0
  for field in ('params', 'opt_state', 'batch_stats'):
    first, static, traced = (_by_path(getattr(s, field)) for s in (init, s_static, s_traced))
    for names, x in first.items():
      if _op_of(names) in unused:
        np.testing.assert_array_equal(traced[names], x, err_msg=str(names))
        np.testing.assert_array_equal(static[names], x, err_msg=str(names))
      elif x.dtype.kind == 'f':
        np.testing.assert_allclose(traced[names], static[names], rtol=1e-5, atol=1e-6,
                                   err_msg=str(names))
        moved += field == 'params' and bool(np.any(traced[names] != x))
  assert 0 < moved < len(jax.tree_util.tree_leaves(net)) / 2  # the support's weights


def test_traced_step_compiles_once_across_a_support_change(two_ways):
  """The loop's StepCache keeps one traced step for every support (static_key None); a
  support change does not trace the step again; after it, the ops that left the support
  keep their weights and momentum exactly, those that joined it move."""
  assert two_ways['same_step']
  assert two_ways['traces_before'] > 0
  assert two_ways['traces_after'] == two_ways['traces_before']  # no new trace
  changed, after = two_ways['changed'], two_ways['after']
  strategy = two_ways['static_strategy']
  net = changed.params['net']
  old, new = (_ops(sparse_update.inactive_paths(net, _static(strategy, ns).active_net(net)))
              for ns in (two_ways['traced'][0].nas_state, changed.nas_state))
  assert new - old and old - new  # some ops left the support, others joined it
  for field in ('params', 'opt_state', 'batch_stats'):
    first, last = _by_path(getattr(changed, field)), _by_path(getattr(after, field))
    for names, x in first.items():
      if _op_of(names) in new:
        np.testing.assert_array_equal(last[names], x, err_msg=str(names))
    moved = [np.any(last[n] != x) for n, x in first.items() if _op_of(n) in old - new]
    assert moved and all(moved), field


# ------------------------------------------------------------ the train loop


def test_moves_per_epoch_reads_the_rows_the_loop_writes():
  """A row at epoch e was logged after end_of_epoch(ceil(e) - 1); values round-trip."""
  m1, m2 = np.full((2, 4), 0.25), np.arange(8.0).reshape(2, 4) / 7
  rows = [{'step': 5, 'epoch': 0.5, 'nas/code_moves': ista.moves_string(np.zeros((2, 4)))},
          {'step': 10, 'epoch': 1.0, 'nas/code_moves': ista.moves_string(np.zeros((2, 4)))},
          {'step': 15, 'epoch': 1.5, 'nas/code_moves': ista.moves_string(m1)},
          {'step': 20, 'epoch': 2.0, 'nas/code_moves': ista.moves_string(m1)},
          {'step': 30, 'epoch': 3.0, 'nas/code_moves': ista.moves_string(m2)},
          {'step': 30, 'event': 'search_end'}]
  moves = ista.moves_per_epoch(rows)
  assert list(moves) == [1, 2]
  np.testing.assert_array_equal(moves[1], m1)
  np.testing.assert_allclose(moves[2], m2, rtol=5e-3)  # 3 significant digits


def test_search_freezes_and_the_same_network_trains_on(test_config, tmp_path):
  """Through train_and_evaluate: every node freezes at the first epoch end that may freeze
  (freeze_from_epoch = 1) under a threshold above any movement, the phase ends there, the
  derived network trains a second epoch, and the freezing picture and the genotype
  drawing are written."""
  config = _config(test_config, freeze_threshold=1e3, freeze_from_epoch=1,
                   auxiliary_weight=0.0, execution='static',  # the traced step: above
                   max_search_fraction=0.0,  # no cap: the freezing ends the search
                   cell_space='darts_small')  # the DARTS space's steps: the tests above
  config.nas.optimizer.lr = 1e-5  # b barely moves: the support, hence the step, is kept
  config.num_epochs, config.eval_every_epochs, config.recalibration_batches = 2, 0, 2
  config.batch_size, config.dataset.test_fraction = 64, 0.5  # 8 steps an epoch
  result = train.train_and_evaluate(config, str(tmp_path), jax.devices()[:1])
  steps_per_epoch = result['steps'] // config.num_epochs
  assert result['search_end_step'] == steps_per_epoch
  assert all(all(cell) for cell in result['architecture']['frozen'])
  with open(os.path.join(tmp_path, 'metrics.jsonl')) as f:
    rows = [json.loads(l) for l in f]
  moves = ista.moves_per_epoch(rows)
  assert list(moves) == [1] and np.all(moves[1] > 0)  # each froze with its own movement
  for name in ('freezing.png', 'genotype.png'):
    assert os.path.getsize(os.path.join(tmp_path, name)) > 1000, name
  exported.assert_reproduces_the_run(config, str(tmp_path), result)


def test_duality_gap_and_the_homotopy_path_match_closed_forms():
  """The certificate and the exact path on their own (lasso's FISTA fallback would
  otherwise hide a broken path, as tests/test_sparse_recovery.py shows it does):
  duality_gap at x = 0 is its closed form (theta = b min(1, lam / ||A^T b||_inf)), 0 once
  lam >= ||A^T b||_inf; on the path's first segment (one active column j, the largest
  |a_j^T b|) x_j = (a_j^T b - lam sign) / ||a_j||^2; and on random problems of every shape
  _homotopy alone reports success with a certified relative gap below 1e-11 (measured
  <= 2e-13 at these lam) and sklearn's objective."""
  rng = np.random.default_rng(11)
  A, b = rng.standard_normal((7, 21)) / np.sqrt(7), rng.standard_normal(7)
  corr = A.T @ b
  top = np.max(np.abs(corr))
  for lam in (1e-2, 0.5 * top):
    theta = b * min(1.0, lam / top)
    gap, primal = sparse_recovery.duality_gap(A, b, np.zeros(21), lam)
    assert primal == pytest.approx(0.5 * b @ b, rel=1e-14)
    assert gap == pytest.approx(0.5 * b @ b - (theta @ b - 0.5 * theta @ theta), rel=1e-12)
  assert sparse_recovery.duality_gap(A, b, np.zeros(21), 1.5 * top)[0] == 0.0
  x, ok = sparse_recovery._homotopy(A, b, 1.5 * top, 50 * 21)  # pylint: disable=protected-access
  assert ok and not np.any(x)
  j = int(np.argmax(np.abs(corr)))
  second = np.sort(np.abs(corr))[-2]
  lam = top - 1e-3 * (top - second)   # just below lam_max: only column j is active
  x, ok = sparse_recovery._homotopy(A, b, lam, 50 * 21)  # pylint: disable=protected-access
  want = np.zeros(21)
  want[j] = (corr[j] - lam * np.sign(corr[j])) / (A[:, j] @ A[:, j])
  assert ok
  np.testing.assert_allclose(x, want, rtol=1e-10, atol=1e-15)
  for lam in (1e-1, 1e-2):
    for m, n in ((7, 14), (7, 35), (20, 8), (12, 12)):
      for _ in range(3):
        A, b = rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(m)
        x, ok = sparse_recovery._homotopy(A, b, lam, 50 * n)  # pylint: disable=protected-access
        gap, primal = sparse_recovery.duality_gap(A, b, x, lam)
        assert ok and gap <= 1e-11 * primal, (lam, m, n, ok, gap, primal)
        f_ref = _objective(A, b, _reference_lasso(A, b, lam), lam)
        assert _objective(A, b, x, lam) <= f_ref * (1 + 1e-9), (lam, m, n)


def test_lasso_skips_only_zero_columns_and_warns_only_when_unsolved(monkeypatch):
  """lasso solves without the all-zero columns (left at 0) but with every other one, an
  all-ones column included (it is the active one here, as in the reference, 1e-8). When
  FISTA has to finish the problem (the path forced to fail), a problem it solves is
  silent at any scale of the objective (b x 1e3: primal ~4e4, its final gap above
  1e-6 / primal), and one it cannot solve within num_iters (1 iteration) is a
  RuntimeWarning naming it."""
  rng = np.random.default_rng(5)
  A = rng.standard_normal((7, 6)) / np.sqrt(7)
  A[:, 1], A[:, 4] = 1.0, 0.0
  b = 2.0 * A[:, 1] + 0.1 * rng.standard_normal(7)
  x = sparse_recovery.lasso(A, b, 1e-2)
  keep = [0, 1, 2, 3, 5]
  ref = _reference_lasso(A[:, keep], b, 1e-2)
  assert x[4] == 0.0 and abs(x[1]) > 1.0
  np.testing.assert_allclose(x[keep], ref, atol=1e-8)
  monkeypatch.setattr(sparse_recovery, '_homotopy', lambda A, b, lam, max_steps: (
      np.zeros(A.shape[1]), False))
  big = 1e3 * b
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    x = sparse_recovery.lasso(A, big, 10.0)
  gap, primal = sparse_recovery.duality_gap(A, big, x, 10.0)
  assert primal > 1e4 and 1e-6 / primal < gap <= 1e-10 * primal, (gap, primal)
  with pytest.warns(RuntimeWarning, match=r'LASSO: 1 of 1 problems .* after 1 FISTA'):
    sparse_recovery.lasso(A, big, 10.0, num_iters=1)
