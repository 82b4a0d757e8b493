"""Cell spaces are pluggable (cell_space.py): a toy space registered here, 3 ops and 2
nodes, is searched by ISTA through the real compiled train step and set up by DARTS and
a fixed random genotype, with nothing but config.nas.cell_space naming it; an unknown
name and a duplicate are refused."""

import jax
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.nas import cell_packed, cell_space, darts, darts_space, ista
from dha_jax.training import steps, train

# no skip_connect: the one op the DARTS code had a special case for (drop-path spares
# identities), so the traced cell compiles its drop-path without one
TOY_OPS = ('sep_conv_3x3', 'max_pool_3x3', 'avg_pool_3x3')


@pytest.fixture
def toy():
  """A new space: one CellSpace and one register() line, removed again afterwards."""
  space = cell_space.register(cell_space.CellSpace('toy_test', TOY_OPS, num_nodes=2))
  try:
    yield space
  finally:
    if space.name in cell_space.SPACES:
      cell_space.SPACES.unregister(space.name)


def _config(test_config, nas):
  nas.channels, nas.layers = 4, 3  # a normal cell, then two reduction cells
  nas.auxiliary_weight = 0.0  # a smaller step to compile
  nas.cell_space = 'toy_test'
  test_config.nas = nas
  test_config.batch_size = 16
  test_config.conv_impl = 'xla'  # compiles fastest; the maths does not depend on it
  return test_config


def _one_step(config):
  """(strategy, initial state (host), state after one compiled train step (on the
  device, as the loop has it), its metrics)."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, init, _, _ = train.setup(config, mesh)
  init = jax.device_get(init)  # the step donates its input state
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = parallel.shard_batch(next(train.Batches(ds, comps, config)), mesh)
  state, m = train_step(parallel.replicate(init, mesh), batch)
  return comps.strategy, init, state, jax.device_get(m)


def _check_genotype(g, space):
  """Every pair an op of `space` on 2 distinct valid inputs; the nodes concatenated."""
  for cell in ('normal', 'reduce'):
    pairs = getattr(g, cell)
    assert len(pairs) == 2 * space.num_nodes
    assert {op for op, _ in pairs} <= set(space.ops)
    for i in range(space.num_nodes):
      inputs = [j for _, j in pairs[2 * i: 2 * i + 2]]
      assert len(set(inputs)) == 2 and all(0 <= j < i + 2 for j in inputs)
    assert getattr(g, cell + '_concat') == (2, 3)
    g.edges(cell, space)  # in the space (raises otherwise)
  with pytest.raises(ValueError, match="'darts' space needs 2"):
    g.edges('normal')  # 2 nodes: not a genotype of the 'darts' space


def test_ista_searches_a_registered_toy_space(test_config, toy):
  config = _config(test_config, ista.default_config())
  s, init, state, m = _one_step(config)
  assert s.space is toy and s.spec.space is toy
  ns = init.nas_state
  # per cell type: 2 nodes, M = 3 measurements, N_MAX = 3 inputs x 3 ops = 9 columns
  assert ns['A'].shape == (2, 2, 3, 9) and init.params['arch']['b'].shape == (2, 2, 3)
  assert ns['x'].shape == (2, 2, 9) and ns['support'].shape == (2, 2, 2)
  assert ns['frozen'].shape == (2, 2)
  np.testing.assert_array_equal(ns['A'][:, 0, :, 6:], 0)  # node 0: 2 inputs, 6 columns
  assert np.isfinite(float(m['train/loss']))
  assert not np.allclose(state.params['arch']['b'], init.params['arch']['b'])  # b learned
  # the traced network's weights (packed per op over a cell's edges) are the toy ops with
  # weights: the sep conv (the pools have none), in every cell
  net = state.params['net']
  packed = [{k.split('_', 1)[1] for k in net[f'cell{k}'][cell_packed.OPS_KEY]}
            for k in range(3)]
  assert packed == [{'sep_conv_3x3'}] * 3
  # the host side on the toy shapes: recovery, support, freezing
  after = s.end_of_epoch(state, 2)
  support = np.asarray(after.nas_state['support'])
  assert support.shape == (2, 2, 2)
  assert np.all(support[:, 0] < ista.valid_columns(toy, 0)) and np.all(support < 9)
  g = s.genotype_of(after.params['arch'], after.nas_state)
  _check_genotype(g, toy)
  assert s.summary(after.params['arch'], after.nas_state)['architecture']['space'] == (
      'toy_test')


def test_darts_and_a_random_genotype_in_a_registered_toy_space(test_config, toy):
  """DARTS' alpha, weighted sum and top-2 rule and the fixed strategy's random draw in
  the toy space (shapes and sizes only: the compiled step is the ISTA test's)."""
  config = _config(test_config, darts.darts_config())
  s = darts.DARTS(config, 10, (8, 8, 1))
  assert s.space is toy
  _, _, arch, _ = s.init(jax.random.PRNGKey(0), jax.numpy.zeros((2, 8, 8, 1)))
  # alpha: one row per (node, input) edge (2 + 3), one column per op
  assert arch['normal'].shape == arch['reduce'].shape == (5, 3)
  # per node a weight for each of the supernet's columns, summing to 1 per input edge
  w = s.edge_weights(arch)
  assert [v.shape for v in w[0]] == [(6,), (9,)] and s.net.normal == toy.all_edges()
  np.testing.assert_allclose(np.asarray(w[1][1]).reshape(3, 3).sum(-1), 1.0, rtol=1e-6)
  g = s.genotype_of(arch, {})
  _check_genotype(g, toy)
  # the size of a child is the sum of the supernet's op sizes (count_params), in this space
  net = darts_space.child_net(s.spec, 10, g)
  own = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x, train=False),
                       jax.ShapeDtypeStruct((1, 8, 8, 1), jax.numpy.float32))['params']
  assert s.num_child_params(g) == sum(int(np.prod(a.shape))
                                      for a in jax.tree_util.tree_leaves(own))
  config.nas = darts.fixed_config()
  config.nas.update(channels=4, layers=3, cell_space='toy_test', genotype='random')
  fixed = darts.DartsFixed(config, 10, (8, 8, 1))
  _check_genotype(fixed.genotype, toy)
  assert fixed.net.spec.space is toy


def test_an_unknown_cell_space_names_the_field_and_the_registered_ones(test_config):
  config = test_config
  config.nas = ista.default_config()
  config.nas.cell_space = 'no_such_space'
  with pytest.raises(ValueError, match='config.nas.cell_space') as e:
    ista.ISTA(config, 10, (8, 8, 1))
  assert "'no_such_space'" in str(e.value) and str(sorted(cell_space.SPACES)) in str(e.value)
  assert 'darts' in str(e.value)


def test_a_name_is_registered_once():
  other = cell_space.CellSpace('darts', TOY_OPS, num_nodes=2)
  with pytest.raises(ValueError, match="'darts' is already registered"):
    cell_space.register(other)
  assert cell_space.get('darts') is darts_space.DARTS
  # the 'darts' space's sizes: 14 edges, 35 columns at the last node, c = j * 7 + o
  assert darts_space.DARTS.num_edges == 14 and darts_space.DARTS.max_columns == 35
  assert darts_space.DARTS.column('skip_connect', 2) == 16
  assert darts_space.DARTS.pair(16) == ('skip_connect', 2)
