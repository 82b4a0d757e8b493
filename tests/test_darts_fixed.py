"""A fixed genotype of a cell space runs with the genotype as data ('traced', the
default): two genotypes share one compiled step, and each computes what the genotype's
own (static) network computes."""

import json

import jax
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.nas import cell_space, darts, darts_space
from dha_jax.training import train
from dha_jax.training import steps as steps_lib


def _config(test_config, genotype, execution='traced'):
  c = test_config
  c.nas = darts.fixed_config()
  c.nas.update(cell_space='darts_small', channels=4, layers=3, execution=execution,
               genotype=json.dumps(genotype.to_json()), drop_path=0.2)
  c.batch_size = 16
  return c


def _genotypes():
  """Two different random genotypes of the 'darts_small' space."""
  small = cell_space.get('darts_small')
  rng = np.random.default_rng(3)
  out = []
  while len(out) < 2:
    g = darts.random_genotype(small, rng)
    if g not in out:
      out.append(g)
  return out


def _one_step(config, cache, mesh):
  """(state before, state after, metrics) of one loop-compiled train step."""
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  before = jax.device_get(state)
  shapes = jax.tree_util.tree_map(lambda a: (a.shape, str(a.dtype)), state)
  steps = train.StepCache(comps, mesh, shared=(ds.num_examples('train'), ds.num_classes,
                                               shapes))
  train_step, _ = steps(state)
  batch = parallel.shard_batch(next(train.Batches(ds, comps, config)), mesh)
  after, metrics = train_step(state, batch)
  cache.append(steps)
  return comps, before, jax.device_get(after), jax.device_get(metrics), batch


def _child_variables(strategy, params, stats):
  """The genotype's network's variables out of a traced (packed supernet) state."""
  net = darts_space.child_net(strategy.spec, strategy.num_classes, strategy.genotype)
  x = jax.ShapeDtypeStruct((1,) + strategy.image_shape, np.float32)
  tmpl = jax.eval_shape(lambda v: net.init(jax.random.PRNGKey(0), v, train=False,
                                           with_aux=True), x)
  return (darts_space.restrict(strategy.unpack(params), tmpl['params']),
          darts_space.restrict(strategy.unpack(stats), tmpl.get('batch_stats', {})))


def test_two_genotypes_share_one_step_and_each_equals_its_static_network(test_config):
  mesh = parallel.make_mesh(jax.devices()[:1])
  g1, g2 = _genotypes()
  kept = []
  _one_step(_config(test_config.copy_and_resolve_references(), g1), kept, mesh)
  compiles = train.CompileLog.now()[1]
  results = {}
  for g in (g1, g2):
    results[g] = _one_step(_config(test_config.copy_and_resolve_references(), g), kept,
                           mesh)
  # the second genotype (and the first again) ran the step compiled for the first: no
  # XLA compile at all (setting up a state traces a few eager ops, from JAX's caches)
  assert train.CompileLog.now()[1] == compiles
  assert kept[1].steps is kept[2].steps is kept[0].steps

  for g in (g1, g2):
    comps, before, after, metrics, batch = results[g]
    s = comps.strategy
    assert s.packed and s.genotype == g
    static_cfg = _config(test_config.copy_and_resolve_references(), g, 'static')
    ds, scomps, sstate, _, _ = train.setup(static_cfg, mesh)
    assert not scomps.strategy.packed
    # the static network's state: the traced run's initial variables, restricted
    p, bs = _child_variables(s, before.params['net'], before.batch_stats)
    sstate = sstate.replace(params=dict(sstate.params, net=p), batch_stats=bs,
                            opt_state=jax.tree_util.tree_map(
                                np.zeros_like, sstate.opt_state))
    sstate = parallel.replicate(sstate, mesh)
    sstep, _ = steps_lib.compile_steps(scomps, mesh)
    safter, smetrics = jax.device_get(sstep(sstate, batch))
    np.testing.assert_allclose(metrics['train/loss'], smetrics['train/loss'], rtol=1e-5)
    p_after, bs_after = _child_variables(s, after.params['net'], after.batch_stats)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                                   atol=1e-6),
                           (p_after, bs_after), (safter.params['net'], safter.batch_stats))
    # the step moved the genotype's weights, and kept every other op's exactly
    moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), p, p_after)
    assert any(jax.tree_util.tree_leaves(moved))
    mask = s.traced_mask(before.params['net'], before.nas_state['support'])
    for (path, old), new, m in zip(
        jax.tree_util.tree_flatten_with_path(before.params['net'])[0],
        jax.tree_util.tree_leaves(after.params['net']),
        jax.tree_util.tree_leaves(mask, is_leaf=lambda x: x is None)):
      if m is not None:
        off = ~np.broadcast_to(np.asarray(m), old.shape)
        np.testing.assert_array_equal(np.asarray(new)[off], np.asarray(old)[off],
                                      err_msg=jax.tree_util.keystr(path))
  # the two genotypes are different networks: their losses differ
  assert results[g1][3]['train/loss'] != results[g2][3]['train/loss']


def test_an_unknown_execution_names_the_field(test_config):
  with pytest.raises(ValueError, match="config.nas.execution='sparse'"):
    darts.DartsFixed(_config(test_config, _genotypes()[0], 'sparse'), 10, (8, 8, 1))
