"""DSNAS (docs/method.md 3a): the estimator against the exact gradient of E_Z[L], single path
equals the fixed child, FLOPs against hand counts, early fix, 4-device agreement, a
bounded number of compilations over a run, and the exported child."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.nas import choice_space, dsnas, shufflenet
from dha_jax.training import train

import agreement
import slow


def tiny_config():
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.nas = n = dsnas.default_config()
  n.stem_channels, n.stage_repeats, n.stage_channels, n.last_channels = 8, (1, 2), (16, 32), 32
  n.optimizer.lr = 0.05
  c.recalibration_batches = 3
  return c


# ---------------------------------------------------------------- the estimator


C = np.array([[0.5, 1.0, 2.0, 1.5], [2.0, 0.7, 1.0, 1.2]])


def test_estimator_matches_the_exact_gradient_of_the_expected_loss():
  """Two choice layers whose chosen blocks scale the input by C[l, s_l]: the loss is
  C[0, s0] C[1, s1], E_Z[L] = (p0 . C0)(p1 . C1), and its alpha gradient is closed-form.
  The sampling, the value-1 scale z and the masking are the strategy's own."""
  s = dsnas.DSNAS(tiny_config(), 10, (8, 8, 1))
  L, _ = C.shape
  alpha = jnp.asarray([[0.3, -0.2, 0.5, 0.0], [0.1, 0.4, -0.3, 0.2]])
  nas_state = {'step': jnp.ones((), jnp.int32), 'epoch': jnp.ones((), jnp.int32),
               'fixed': jnp.zeros(L, bool), 'choice': jnp.zeros(L, jnp.int32)}

  def loss(arch, key):
    choices = s.choose(arch, nas_state, key)
    logp = jax.nn.log_softmax(s._learnable(arch, nas_state), -1)  # pylint: disable=protected-access
    logp_s = jnp.take_along_axis(logp, choices[:, None], -1)[:, 0]
    z = jnp.exp(logp_s - jax.lax.stop_gradient(logp_s))
    x = 1.0
    for l in range(L):  # the sampled path, each output times its z
      x = x * jnp.asarray(C[l])[choices[l]] * z[l]
    return x

  n = 20000
  keys = jax.random.split(jax.random.PRNGKey(0), n)
  g = jax.vmap(lambda k: jax.grad(loss)({'alpha': alpha}, k)['alpha'])(keys)
  p = np.asarray(jax.nn.softmax(alpha, -1))
  e = (p * C).sum(-1)  # E[C_l]
  exact = np.stack([e[1 - l] * (p[l] * C[l] - e[l] * p[l]) for l in range(L)])
  mean, stderr = np.asarray(g.mean(0)), np.asarray(g.std(0)) / np.sqrt(n)
  # Monte-Carlo mean within 4 standard errors of the closed form, every entry
  assert np.all(np.abs(mean - exact) <= 4 * stderr + 1e-6), (mean, exact, stderr)


def test_estimator_through_the_real_forward_equals_the_formula():
  """jax.grad through DSNAS.apply gives dL/dalpha_l = (dL/dZ_ls)(onehot(s) - p_l) for the
  sampled path, with dL/dZ_ls computed independently by scaling that block's output."""
  s = dsnas.DSNAS(tiny_config(), 10, (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), x)
  arch = {'alpha': arch['alpha'] + jax.random.normal(jax.random.PRNGKey(5), arch['alpha'].shape)}
  ns = dict(ns, step=jnp.ones((), jnp.int32))
  key = jax.random.PRNGKey(3)
  mesh = parallel.make_mesh(jax.devices()[:1])
  R = parallel.REPLICATED
  weights = jnp.arange(10.0)

  def via_apply(a):
    logits, _, aux = s.apply(net, bs, a, ns, x, key, True)
    return jnp.sum(logits * weights), aux

  def via_scales(zs, choices):
    logits, _ = s.forward(net, bs, choices, zs, x, True)
    return jnp.sum(logits * weights)

  def both(a):
    g, aux = jax.grad(via_apply, has_aux=True)(a)
    dz = jax.grad(via_scales)(jnp.ones(s.space.num_layers), aux['choice'])
    return g['alpha'], dz, aux['choice']

  g, dz, choice = parallel.data_parallel(both, mesh, (R,), R)(arch)
  p = jax.nn.softmax(arch['alpha'], -1)
  expected = dz[:, None] * (jax.nn.one_hot(choice, p.shape[-1]) - p)
  np.testing.assert_allclose(g, expected, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------- single path = child


def _state(net, bs, arch, ns):
  return types.SimpleNamespace(params={'net': net, 'arch': arch}, batch_stats=bs,
                               nas_state=ns)


@pytest.mark.parametrize('execution', ['switch_vjp', 'switch_remat', 'masked'])
def test_sampled_path_equals_the_fixed_child(execution):
  config = tiny_config()
  config.nas.execution = execution
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), x)
  mesh = parallel.make_mesh(jax.devices()[:1])
  R = parallel.REPLICATED

  def run(key):
    logits, new_bs, aux = s.apply(net, bs, arch, ns, x, key, True)
    return logits, aux['choice']

  for seed in range(3):
    logits, choice = parallel.data_parallel(run, mesh, (R,), R)(jax.random.PRNGKey(seed))
    g = [int(c) for c in choice]
    ns_fixed = dict(ns, fixed=jnp.ones_like(ns['fixed']), choice=jnp.asarray(g, jnp.int32))
    module, variables, genotype = s.child(_state(net, bs, arch, ns_fixed))
    assert genotype == g
    child_logits, _ = module.apply(variables, x, train=True, mutable=['batch_stats'])
    np.testing.assert_allclose(logits, child_logits, rtol=1e-5, atol=1e-5)
  # evaluation runs the argmax path with running statistics, as the child does
  logits = parallel.data_parallel(lambda: s.apply(net, bs, arch, ns, x, None, False)[0],
                                  mesh, (), R)()
  module, variables, g = s.child(_state(net, bs, arch, ns))
  assert g == [int(i) for i in np.argmax(arch['alpha'], -1)]
  np.testing.assert_allclose(logits, module.apply(variables, x, train=False), rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize('execution', [
    pytest.param('switch_vjp', marks=slow.opt_in(
        'its custom_vjp step compiles in ~1.5 CPU-minutes',
        'test_switch_vjp_gradients_equal_switch_remat_and_the_childs_on_one_layer (the '
        'same claim on one choice layer)')),
    'switch_remat'])
def test_theta_gradient_of_the_sampled_path_is_the_childs(execution):
  """The single-path executions (custom_vjp / remat around lax.switch) give theta exactly
  the child network's gradient on the sampled path, and zero to the unchosen blocks:
  each nonzero gradient leaf of the supernet equals one leaf of the child's (1e-5)."""
  config = tiny_config()
  config.nas.execution = execution
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
  y = jnp.arange(6) % 10
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), x)
  mesh = parallel.make_mesh(jax.devices()[:1])
  R = parallel.REPLICATED
  xent = lambda logits: jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(6), y])

  def search_grad(net):
    def loss(net):
      logits, _, aux = s.apply(net, bs, arch, ns, x, jax.random.PRNGKey(3), True)
      return xent(logits), aux['choice']
    return jax.grad(loss, has_aux=True)(net)

  grads, choice = parallel.data_parallel(search_grad, mesh, (R,), R)(net)
  ns_fixed = dict(ns, fixed=jnp.ones_like(ns['fixed']), choice=jnp.asarray(choice))
  _assert_theta_grad_is_the_childs(grads, *s.child(_state(net, bs, arch, ns_fixed))[:2],
                                   x, xent, more_than=10)


def _assert_theta_grad_is_the_childs(grads, module, variables, x, xent, more_than):
  """Each nonzero leaf of the supernet's theta gradient equals one leaf of the child's
  (1e-5; matched by shape and norm), and there are as many as the child has."""
  child = jax.grad(lambda p: xent(module.apply(dict(variables, params=p), x, train=True,
                                               mutable=['batch_stats'])[0]))(
                                                   variables['params'])
  key = lambda g: (g.shape, float(jnp.linalg.norm(g)))
  got = sorted((g for g in jax.tree_util.tree_leaves(grads) if jnp.any(g != 0)), key=key)
  want = sorted(jax.tree_util.tree_leaves(child), key=key)
  assert len(got) == len(want) > more_than
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_switch_vjp_gradients_equal_switch_remat_and_the_childs_on_one_layer():
  """The default execution on GPU/TPU (custom_vjp around lax.switch), by default on a
  one-choice-layer net (its compile is what makes the two-layer row opt-in): theta's
  gradient equals switch_remat's and, on the sampled path, the child's (1e-5); alpha's
  gradient equals switch_remat's (1e-5). Both executions sample the same path from the key."""
  def grads(execution):
    config = tiny_config()
    n = config.nas
    n.stem_channels, n.stage_repeats, n.stage_channels, n.last_channels = 4, (1,), (8,), 16
    n.execution = execution
    s = dsnas.DSNAS(config, 10, (8, 8, 1))
    x = jax.random.normal(jax.random.PRNGKey(1), (6, 8, 8, 1))
    y = jnp.arange(6) % 10
    net, bs, arch, ns = s.init(jax.random.PRNGKey(0), x)
    arch = {'alpha': arch['alpha'] + jax.random.normal(jax.random.PRNGKey(5),
                                                       arch['alpha'].shape)}
    ns = dict(ns, step=jnp.ones((), jnp.int32))
    mesh = parallel.make_mesh(jax.devices()[:1])
    R = parallel.REPLICATED
    xent = lambda logits: jnp.mean(-jax.nn.log_softmax(logits)[jnp.arange(6), y])

    def loss(net, arch):
      logits, _, aux = s.apply(net, bs, arch, ns, x, jax.random.PRNGKey(3), True)
      return xent(logits), aux['choice']

    (g_net, g_arch), choice = parallel.data_parallel(
        lambda n, a: jax.grad(loss, (0, 1), has_aux=True)(n, a), mesh, (R, R), R)(net, arch)
    ns_fixed = dict(ns, fixed=jnp.ones_like(ns['fixed']), choice=jnp.asarray(choice))
    module, variables, _ = s.child(_state(net, bs, arch, ns_fixed))
    return g_net, g_arch, [int(c) for c in choice], (module, variables, x, xent)

  vjp_net, vjp_arch, vjp_choice, child = grads('switch_vjp')
  remat_net, remat_arch, remat_choice, _ = grads('switch_remat')
  assert vjp_choice == remat_choice
  for a, b in zip(jax.tree_util.tree_leaves(vjp_net), jax.tree_util.tree_leaves(remat_net)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vjp_arch['alpha'], remat_arch['alpha'], rtol=1e-5, atol=1e-6)
  assert np.any(np.asarray(vjp_arch['alpha']) != 0)
  _assert_theta_grad_is_the_childs(vjp_net, *child, more_than=5)


# -------------------------------------------------------------------------- FLOPs


def test_flops_and_params_against_hand_counts():
  space = shufflenet.build('shufflenet_small', 8, (1, 1), (16, 32), 32)
  costs = choice_space.count_costs(space, (8, 8, 1), 10)
  # stem 3x3 1->8 at 8x8 ; head 1x1 32->32 at 2x2 (two stride-2 stages) + dense 32->10
  # (the first stage has stride 1 in the small space: 8x8 -> 8x8 -> 4x4)
  assert costs.fixed_flops == 64 * 9 * 8 + 16 * 32 * 32 + 32 * 10
  # layer 0: 8 -> 16 at 8x8, stride 1 but widening: projection branch. shuffle3:
  #   main  pw 8->8 (mid = 8), dw3 on 8, pw 8->8 (out - in = 8)
  #   proj  dw3 on 8, pw 8->8
  hw = 64
  main = hw * 8 * 8 + hw * 9 * 8 + hw * 8 * 8
  proj = hw * 9 * 8 + hw * 8 * 8
  assert costs.flops[0, 0] == main + proj
  # shuffle7 only changes the depthwise taps
  assert costs.flops[0, 2] == main + proj + 2 * hw * (49 - 9) * 8
  # layer 1: 16 -> 32, stride 2, output 4x4 = 16 positions. xception (k=3):
  #   main dw3/2 on 16 -> pw 16->16 -> dw3 -> pw 16->16 -> dw3 -> pw 16->16 (out - in = 16)
  #   proj dw3/2 on 16 -> pw 16->16
  o = 16
  xc = o * 9 * 16 + o * 16 * 16 + o * 9 * 16 + o * 16 * 16 + o * 9 * 16 + o * 16 * 16
  assert costs.flops[1, 3] == xc + o * 9 * 16 + o * 16 * 16
  # parameters of shuffle3 in layer 0: convs (no bias) + BN scale and bias per conv
  conv = 8 * 8 + 9 * 8 + 8 * 8 + 9 * 8 + 8 * 8
  assert costs.params[0, 0] == conv + 2 * (8 + 8 + 8 + 8 + 8)


def test_reference_architecture_flops_at_224():
  """The DiffAutoML/SPOS final architecture: ~320M multiply-adds (323.3M counted here)."""
  costs = choice_space.count_costs(shufflenet.build('shufflenet'), (224, 224, 3), 1000)
  flops, params = costs.of([0, 0, 3, 0, 3, 2, 0, 0, 3, 3, 2, 3, 3, 3, 2, 0, 0, 3, 3, 0])
  assert 310e6 <= flops <= 335e6, flops
  assert 3.3e6 <= params <= 3.7e6, params


def test_resource_penalty_only_when_over_budget():
  config = tiny_config()
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  x = jnp.zeros((2, 8, 8, 1))
  _, _, arch, ns = s.init(jax.random.PRNGKey(0), x)
  ns = dict(ns, step=jnp.ones((), jnp.int32))
  table, fixed = s.costs.table('flops')
  cheap = np.argmin(table, -1)
  budget = fixed + table[np.arange(len(table)), cheap].sum()
  config.nas.budget = float(budget)
  s2 = dsnas.DSNAS(config, 10, (8, 8, 1))
  s2.costs = s.costs
  under = s2.arch_loss(arch, ns, {'choice': jnp.asarray(cheap, jnp.int32)})
  dear = jnp.asarray(np.argmax(table, -1), jnp.int32)
  over, g = jax.value_and_grad(lambda a: s2.arch_loss(a, ns, {'choice': dear}))(arch)
  assert float(under) == 0.0
  p = np.asarray(jax.nn.softmax(arch['alpha'], -1))
  assert float(over) == pytest.approx((fixed + (p * table).sum()) / budget, rel=1e-5)
  # the penalty pushes probability towards cheaper blocks: d/dalpha = p (cost - E cost)
  expected = p * (table - (p * table).sum(-1, keepdims=True)) / budget
  np.testing.assert_allclose(g['alpha'], expected, rtol=1e-4, atol=1e-9)


# ------------------------------------------------------------------------ early fix


def test_early_fix_and_end_of_search():
  config = tiny_config()
  config.nas.search_epochs = 5
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  x = jnp.zeros((2, 8, 8, 1))
  mesh = parallel.make_mesh(jax.devices()[:1])
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), x)
  L = s.space.num_layers
  alpha = np.zeros((L, 4), np.float32)
  alpha[0] = [0, 0, 2.0, 0]     # p = [.09 .09 .70 .09]: top1 - top2 = 0.60 -> fixed to 2
  alpha[1] = [0.3, 0, 0, 0]     # 0.30 vs 0.22: gap 0.08 -> not fixed
  state = _state(net, bs, {'alpha': jnp.asarray(alpha)}, ns)
  state = parallel.replicate(
      train.state_lib.TrainState(step=jnp.zeros((), jnp.int32), params=state.params,
                                 hparams={}, batch_stats=bs, opt_state={}, nas_state=ns,
                                 rng=jax.random.PRNGKey(0),
                                 horizon=jnp.zeros((), jnp.int32)), mesh)
  state = s.end_of_epoch(state, 1)
  got = jax.device_get(state.nas_state)
  assert list(got['fixed']) == [True] + [False] * (L - 1)
  assert int(got['choice'][0]) == 2
  assert bool(s.searching(state.nas_state))
  # a fixed layer is never sampled otherwise, and its alpha row no longer moves
  for seed in range(20):
    assert int(s.choose(state.params['arch'], state.nas_state, jax.random.PRNGKey(seed))[0]) == 2
  moved = {'alpha': state.params['arch']['alpha'] + 1.0}
  kept = s.keep_fixed(state.params['arch'], moved, state.nas_state)['alpha']
  np.testing.assert_array_equal(kept[0], state.params['arch']['alpha'][0])
  np.testing.assert_array_equal(kept[1:], moved['alpha'][1:])
  # at search_epochs every layer is fixed to its argmax and the search phase ends
  state = s.end_of_epoch(state, 5)
  got = jax.device_get(state.nas_state)
  assert got['fixed'].all() and not bool(s.searching(state.nas_state))
  assert list(got['choice']) == list(np.argmax(alpha, -1))


# ---------------------------------------------------------------- in the real step


def _one_layer(groups):
  """tiny_config on one choice layer (a third of its compile), alpha by SGD (see
  test_path_groups_...), config.nas.path_groups = groups."""
  c = tiny_config()
  c.nas.stage_repeats, c.nas.stage_channels = (1,), (16,)
  c.nas.path_groups = groups
  c.nas.optimizer = {'name': 'sgd', 'lr': 0.5}
  return c


@pytest.fixture(scope='module')
def path_per_device():
  """3 real steps of the one-layer search on 4 devices, a path per device (path_groups =
  0), as agreement.run_steps gives them, with the 4 paths each step drew and each step's
  alpha as every device holds it after the step."""
  paths, alphas = [], []

  def observe(comps, before, after):
    k_arch = jax.random.split(jax.random.fold_in(before.rng, before.step), 3)[2]
    paths.append({tuple(np.asarray(comps.strategy.choose(
        before.params['arch'], before.nas_state, jax.random.fold_in(k_arch, d))))
                  for d in range(4)})
    alphas.append([np.asarray(s.data) for s in after.params['arch']['alpha'].addressable_shards])

  config = _one_layer(0)
  _, _, init, _, _ = train.setup(config, parallel.make_mesh(jax.devices()[:1]))
  run = agreement.run_steps(config, jax.devices(), observe=observe)
  return run, paths, alphas, np.asarray(init.params['arch']['alpha'])


def test_four_devices_agree_on_alpha_while_sampling_different_paths(path_per_device):
  _, paths, alphas, alpha0 = path_per_device
  for shards in alphas:
    assert len(shards) == 4
    for other in shards[1:]:
      np.testing.assert_array_equal(shards[0], other)
  assert any(len(p) > 1 for p in paths), 'the 4 devices sampled the same path at every step'
  assert not np.allclose(alpha0, alphas[-1][0]), 'alpha did not move'


def _float64_steps(config, devices, monkeypatch, n_steps=3):
  """The real compiled train step in float64 (x64 on, every float leaf of the state and
  the batch cast, the networks' compute dtype float64): [(state, loss)] per step."""
  from dha_jax.layers import precision  # pylint: disable=g-import-not-at-top
  f64 = lambda t: jax.tree_util.tree_map(
      lambda a: np.asarray(a, np.float64) if np.issubdtype(np.asarray(a).dtype, np.floating)
      else np.asarray(a), t)
  with jax.enable_x64(True), monkeypatch.context() as m:
    m.setattr(precision, 'compute_dtype', lambda: jnp.float64)
    mesh = parallel.make_mesh(devices)
    ds, comps, state, _, _ = train.setup(config, mesh)
    state = parallel.replicate(f64(jax.device_get(state)), mesh)
    step, _ = train.StepCache(comps, mesh)(state)
    it, out = train.Batches(ds, comps, config), []
    for _ in range(n_steps):
      state, metrics = step(state, parallel.shard_batch(f64(next(it)), mesh))
      out.append((jax.device_get(state), float(metrics['train/loss'])))
  return out


def test_path_groups_make_one_and_four_devices_compute_the_same_steps(path_per_device,
                                                                     monkeypatch):
  """config.nas.path_groups = 4: four paths a step, each on a quarter of the global
  batch, drawn from global group indices. On 4 devices (one group each) that is the same
  draw as a path per device (path_groups = 0): the same 3 steps at test_step.py's
  tolerances. On 1 device the 4 groups run in turn with their own BatchNorm statistics:
  1 and 4 devices compute the same 3 steps to 1e-12 in float64 (measured 2.2e-16 on this
  one-layer net, 1.1e-16 on tiny_config's three layers). In float32 the three-layer
  trajectories grew apart to 1.1e-4 by step 3 (alpha 3.7e-5 after step 2, with equal
  losses; 6e-8 here): round-off of the two reduction orders, amplified by BatchNorm over
  8-sample groups at 1-4 px, as float64 shows (it is not a difference in what is
  computed). alpha steps by SGD here: Adam's first steps are lr * sign(g), which turns a
  round-off difference of a near-zero gradient into a whole step."""
  config = _one_layer(4)
  four = agreement.run_steps(config, jax.devices())
  per_device = path_per_device[0]
  tol = {'train/loss': {'rtol': 1e-5}}
  agreement.assert_agree(four, per_device, tol, ('params', 'batch_stats'))
  one, four = (_float64_steps(config, jax.devices()[:n], monkeypatch) for n in (1, 4))
  for (s1, l1), (s4, l4) in zip(one, four):
    assert s1.params['net']['stem']['Conv_0']['kernel'].dtype == np.float64
    np.testing.assert_allclose(l1, l4, rtol=1e-12)
    for tree in ('params', 'batch_stats'):
      assert (jax.tree_util.tree_structure(getattr(s1, tree)) ==
              jax.tree_util.tree_structure(getattr(s4, tree)))
      for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(getattr(s1, tree)),
                              jax.tree_util.tree_leaves(getattr(s4, tree))):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-12,
                                   err_msg=jax.tree_util.keystr(path))
  # the groups did draw different paths (the strategy's own draw, from the step's key)
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  _, _, state, _, _ = train.setup(config, parallel.make_mesh(jax.devices()[:1]))
  k_arch = jax.random.split(jax.random.fold_in(state.rng, state.step), 3)[2]
  paths = {tuple(np.asarray(s.choose(state.params['arch'], state.nas_state,
                                     jax.random.fold_in(k_arch, g)))) for g in range(4)}
  assert len(paths) > 1
  with pytest.raises(ValueError, match='path_groups=3 must be a multiple of the 4 devices'):
    config.nas.path_groups = 3
    agreement.run_steps(config, jax.devices(), n_steps=1)


def test_one_compilation_across_warm_up_fixing_and_the_end_of_search():
  """alpha's warm-up, early fixes and the end of the search are traced state: the
  compiled step is reused throughout (DSNAS has no static structure key). One choice
  layer (a third of tiny_config's compile): the phases, not the depth, are the claim."""
  config = tiny_config()
  config.nas.stage_repeats, config.nas.stage_channels = (1,), (16,)
  config.nas.warmup_steps, config.nas.search_epochs = 2, 2
  mesh = parallel.make_mesh(jax.devices()[:2])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  cache = train.StepCache(comps, mesh)
  it = ds.train_iterator('train', config.batch_size, config.seed)
  for epoch in (1, 2, 3):
    train_step, _ = cache(state)
    for _ in range(3):
      state, _ = train_step(state, parallel.shard_batch(next(it), mesh))
    state = comps.strategy.end_of_epoch(state, epoch)
  assert not bool(comps.strategy.searching(state.nas_state))
  assert list(cache.steps) == [None]
  assert cache.steps[None][0]._cache_size() == 1  # pylint: disable=protected-access


# -------------------------------------------------------------- BN recalibration


def test_recalibrated_statistics_on_four_devices_equal_the_whole_batch_on_one():
  """export.recalibrate_bn on a DSNAS child over 4 devices: the choice blocks' BatchNorm
  stays per device, the stem's and head's are synchronised; either way the result equals
  the plain average over batches of each BN's whole-batch mean and variance, computed by
  the child on one device outside any mesh (1e-6)."""
  from dha_jax.io import export  # pylint: disable=g-import-not-at-top
  from dha_jax.models import common  # pylint: disable=g-import-not-at-top
  s = dsnas.DSNAS(tiny_config(), 10, (8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), jnp.zeros((4, 8, 8, 1)))
  genotype = [1, 3, 2]
  ns_fixed = dict(ns, fixed=jnp.ones_like(ns['fixed']), choice=jnp.asarray(genotype))
  module, variables, g = s.child(_state(net, bs, arch, ns_fixed))
  assert g == genotype
  rng = np.random.default_rng(0)
  batches = [rng.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8) for _ in range(3)]
  prepare = lambda images: images.astype(jnp.float32) / 255.0 - 0.5
  got = export.recalibrate_bn(module, variables, batches, parallel.make_mesh(jax.devices()[:4]),
                              prepare)['batch_stats']

  def whole_batch(images):
    with common.override_bn_momentum(0.0):  # a train call returns the batch's statistics
      return module.apply(variables, prepare(jnp.asarray(images)), train=True,
                          mutable=['batch_stats'])[1]['batch_stats']

  per_batch = [whole_batch(b) for b in batches]
  want = jax.tree_util.tree_map(lambda *t: np.mean(np.stack(t), 0), *per_batch)
  paths = [p for p, _ in jax.tree_util.tree_leaves_with_path(want)]
  assert any('choice' in jax.tree_util.keystr(p) for p in paths)  # per-device BNs covered
  assert any('stem' in jax.tree_util.keystr(p) for p in paths)  # synchronised ones too
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(want),
                          jax.tree_util.tree_leaves(got)):
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6, err_msg=jax.tree_util.keystr(path))
  # and the per-device statistics alone would differ: the test can tell them apart
  one_shard = whole_batch(batches[0][:4])
  assert not all(np.allclose(a, b, atol=1e-3) for a, b in zip(
      jax.tree_util.tree_leaves(one_shard), jax.tree_util.tree_leaves(per_batch[0])))


# ---------------------------------------------------------------- warm-up, params


def test_warm_up_freezes_alpha_and_its_optimizer_while_theta_trains():
  """config.nas.warmup_steps = 2 through the real compiled step (test_one_compilation_...'s
  one-layer program, so the suite compiles it once): in the first 2 steps theta moves,
  alpha and Adam's state of alpha stay bit for bit (no gradient, frozen_while_zero); the
  3rd step is alpha's first Adam step (count 1), a move of at most lr per entry and at
  least half of it somewhere (|m_hat / sqrt(v_hat)| = 1 up to eps on a first step)."""
  config = tiny_config()
  config.nas.stage_repeats, config.nas.stage_channels = (1,), (16,)
  config.nas.warmup_steps, config.nas.search_epochs = 2, 2
  lr = config.nas.optimizer.lr
  mesh = parallel.make_mesh(jax.devices()[:2])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  train_step, _ = train.StepCache(comps, mesh)(state)
  it = ds.train_iterator('train', config.batch_size, config.seed)
  host = [jax.device_get(state)]
  for _ in range(4):
    state, _ = train_step(state, parallel.shard_batch(next(it), mesh))
    host.append(jax.device_get(state))
  alpha = [np.asarray(h.params['arch']['alpha']) for h in host]
  adam = [jax.tree_util.tree_leaves(h.opt_state['arch']) for h in host]
  theta = [jax.tree_util.tree_leaves(h.params['net']) for h in host]
  assert [int(h.nas_state['step']) for h in host] == [0, 1, 2, 3, 4]
  for t in (1, 2):  # warm-up
    np.testing.assert_array_equal(alpha[t], alpha[0])
    for a, b in zip(adam[t], adam[0]):
      np.testing.assert_array_equal(a, b)
    assert max(np.abs(a - b).max() for a, b in zip(theta[t], theta[t - 1])) > 1e-4
  for t in (3, 4):  # alpha learns
    assert np.abs(alpha[t] - alpha[t - 1]).max() > 1e-3
  first = np.abs(alpha[3] - alpha[2])
  assert first.max() <= lr * (1 + 1e-5) and first.max() >= lr / 2, (first, lr)
  counts = [np.asarray(l) for l in adam[3] if np.ndim(l) == 0 and
            np.issubdtype(np.asarray(l).dtype, np.integer)]
  assert counts and all(int(c) == 1 for c in counts)  # Adam's first step, not its third


def test_warm_up_waits_for_both_its_steps_and_its_epochs():
  """warmup_steps = 2 and warmup_epochs = 1: alpha learns only once both have passed. The
  strategy's guards of the update path: the gradient reaching alpha (here through the
  resource penalty, over budget) is zero and keep_fixed returns the old alpha until then;
  an epoch end inside the warm-up fixes no layer, however decided its alpha."""
  config = tiny_config()
  config.nas.warmup_steps, config.nas.warmup_epochs = 2, 1
  config.nas.budget = 1.0  # every path is over: the penalty always has a gradient
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  L = s.space.num_layers
  choice = {'choice': jnp.zeros(L, jnp.int32)}
  moved = {'alpha': arch['alpha'] + 1.0}

  def at(step, epoch):
    return dict(ns, step=jnp.asarray(step, jnp.int32), epoch=jnp.asarray(epoch, jnp.int32))

  for (step, epoch), live in {(1, 0): False, (1, 1): False, (2, 0): False, (5, 0): False,
                              (2, 1): True, (5, 3): True}.items():
    g = jax.grad(lambda a: s.arch_loss(a, at(step, epoch), choice))(arch)['alpha']
    kept = s.keep_fixed(arch, moved, at(step, epoch))['alpha']
    assert (np.abs(np.asarray(g)).max() > 1e-6) == live, (step, epoch)
    np.testing.assert_array_equal(kept, (moved if live else arch)['alpha'],
                                  err_msg=str((step, epoch)))
  # an alpha decided enough to be fixed (gap 0.6 >= fix_threshold 0.3) at every layer
  decided = np.tile(np.float32([0, 0, 2.0, 0]), (L, 1))
  mesh = parallel.make_mesh(jax.devices()[:1])

  def end_epoch(step, epoch):
    state = parallel.replicate(train.state_lib.TrainState(
        step=jnp.asarray(step, jnp.int32), params={'net': net, 'arch': {'alpha': decided}},
        hparams={}, batch_stats=bs, opt_state={}, nas_state=at(step, epoch - 1),
        rng=jax.random.PRNGKey(0), horizon=jnp.zeros((), jnp.int32)), mesh)
    return jax.device_get(s.end_of_epoch(state, epoch).nas_state)

  assert not end_epoch(1, 1)['fixed'].any()  # epoch 1 ends before step 2: still warm-up
  got = end_epoch(2, 1)
  assert got['fixed'].all() and list(got['choice']) == [2] * L and int(got['epoch']) == 1


def test_resource_penalty_on_parameters():
  """resource='params': the budget and the penalty count parameters (count_costs' table,
  itself equal to the child network's parameter count). Budget = the smallest network's
  parameters: its path has no penalty, while the FLOPs-cheapest path (another genotype
  here) is over and pays weight * E_p[params] / budget, with gradient
  weight * p (params - E params) / budget."""
  config = tiny_config()
  config.nas.resource, config.nas.penalty_weight = 'params', 2.5
  s = dsnas.DSNAS(config, 10, (8, 8, 1))
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  arch = {'alpha': arch['alpha'] + jax.random.normal(jax.random.PRNGKey(4), arch['alpha'].shape)}
  ns = dict(ns, step=jnp.ones((), jnp.int32))
  costs = choice_space.count_costs(s.space, (8, 8, 1), 10)
  rows = np.arange(s.space.num_layers)
  smallest, cheapest = np.argmin(costs.params, -1), np.argmin(costs.flops, -1)
  assert list(smallest) != list(cheapest)  # the two resources rank the paths differently
  for g in (smallest, cheapest):  # the table counts the child's parameters
    fixed_ns = dict(ns, fixed=jnp.ones_like(ns['fixed']), choice=jnp.asarray(g, jnp.int32))
    _, variables, _ = s.child(_state(net, bs, arch, fixed_ns))
    assert costs.fixed_params + costs.params[rows, g].sum() == choice_space.tree_size(
        variables['params'])
  budget = float(costs.fixed_params + costs.params[rows, smallest].sum())
  config.nas.budget = budget
  s2 = dsnas.DSNAS(config, 10, (8, 8, 1))
  under = s2.arch_loss(arch, ns, {'choice': jnp.asarray(smallest, jnp.int32)})
  over, grad = jax.value_and_grad(lambda a: s2.arch_loss(
      a, ns, {'choice': jnp.asarray(cheapest, jnp.int32)}))(arch)
  assert float(under) == 0.0
  p = np.asarray(jax.nn.softmax(arch['alpha'], -1), np.float64)
  expected = (costs.fixed_params + (p * costs.params).sum()) / budget
  assert float(over) == pytest.approx(2.5 * expected, rel=1e-5)
  want = 2.5 * p * (costs.params - (p * costs.params).sum(-1, keepdims=True)) / budget
  np.testing.assert_allclose(grad['alpha'], want, rtol=1e-4, atol=1e-9)


def test_a_genotype_under_the_dsnas_name_builds_the_fixed_child_class():
  """strategy 'dsnas' with config.nas.genotype (or random_genotype) constructs
  choice_fixed.ChoiceFixed, which has no search part; without, the DSNAS search; the
  fixed class alone needs a genotype."""
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  from dha_jax.nas import base, choice_fixed  # pylint: disable=g-import-not-at-top
  c = _one_layer(0)
  search = nas.create(c, 10, (8, 8, 1))
  assert type(search) is dsnas.DSNAS and search.search is search
  c.nas.genotype = (1,)
  child = nas.create(c, 10, (8, 8, 1))
  assert type(child) is choice_fixed.ChoiceFixed and child.search is base.NO_SEARCH
  assert child.genotype == (1,) and child.program_key() == (1,)
  c.nas.genotype, c.nas.random_genotype = (), True
  assert type(nas.create(c, 10, (8, 8, 1))) is choice_fixed.ChoiceFixed
  c.nas.random_genotype, c.nas.strategy = False, 'choice_fixed'
  with pytest.raises(ValueError, match='config.nas.genotype is empty'):
    nas.create(c, 10, (8, 8, 1))
