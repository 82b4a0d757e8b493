"""The DARTS cell space: genotypes, shapes of cells and networks, parameter counts, the
DARTS top-2 rule, the cell picture. Abstract evaluation only (no compiles): fast."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.layers import conv
from dha_jax.nas import darts, darts_ops
from dha_jax.nas import darts_space as ds


def test_genotype_json_roundtrip_and_text():
  g = ds.DARTS_V2._replace(normal_weights=tuple(np.linspace(0.1, 0.8, 8)))
  back = ds.Genotype.from_json(json.dumps(g.to_json()))
  assert back == g and ds.parse_genotype('DARTS_V2') == ds.DARTS_V2
  text = str(ds.DARTS_V2)
  assert 'n5 = skip_connect(0) + dil_conv_3x3(2)' in text and text.startswith('normal:')
  assert ds.DARTS_V2.edges('reduce')[1] == (ds.column('skip_connect', 2),
                                           ds.column('max_pool_3x3', 1))
  bad = ds.DARTS_V2._replace(normal=(('sep_conv_3x3', 3),) + ds.DARTS_V2.normal[1:])
  with pytest.raises(ValueError, match='not in the DARTS space'):
    bad.edges('normal')


@pytest.mark.parametrize('op', darts_ops.OPS)
@pytest.mark.parametrize('stride', [1, 2])
def test_every_op_keeps_channels_and_halves_at_stride_2(op, stride):
  m = darts_ops.make_op(op, 6, stride)
  x = jax.ShapeDtypeStruct((2, 7, 7, 6), jnp.float32)  # odd size: factorized reduce pads
  with conv.use_impl('xla'):
    out = jax.eval_shape(lambda v: m.init_with_output(jax.random.PRNGKey(0), v)[0], x)
  assert out.shape == (2, 4 if stride == 2 else 7, 4 if stride == 2 else 7, 6)


@pytest.mark.parametrize('stem,size,final', [('cifar', 32, 8), ('imagenet', 64, 2)])
def test_network_shapes_and_auxiliary_head(stem, size, final):
  spec = ds.Spec(channels=4, layers=6, stem=stem)
  net = ds.child_net(spec, 10, ds.DARTS_V2)
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  shapes = {}

  def capture(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, ds.Cell):
      shapes[context.module.name] = out.shape
    return out

  with conv.use_impl('xla'), __import__('flax').linen.intercept_methods(capture):
    v, (logits, aux) = jax.eval_shape(
        lambda u: net.init_with_output(jax.random.PRNGKey(0), u, with_aux=True)[::-1], x)
  assert spec.reductions() == (2, 4) and logits.shape == (2, 10)
  # 4 nodes concatenated: 4C, doubled at each reduction; 3 resolutions
  first = size if stem == 'cifar' else size // 8
  assert shapes['cell0'] == (2, first, first, 16)
  assert shapes['cell2'] == (2, first // 2, first // 2, 32)
  assert shapes['cell5'] == (2, final, final, 64)
  assert 'aux_head' in v['params'] and aux.shape == (2, 10)  # built at init
  n = ds.count_params(spec, 10, ds.DARTS_V2.edges('normal'), ds.DARTS_V2.edges('reduce'),
                      (size, size, 3))
  total = sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(v['params']))
  aux_n = sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(v['params']['aux_head']))
  assert n == total - aux_n  # the budget counts the network without its auxiliary head


def test_cifar_size_darts_v2_is_about_3_3m_parameters():
  """DARTS reports 3.3M for DARTS_V2 on CIFAR-10 (20 cells, C = 36): the network's own
  parameters without its auxiliary head. count_params (the budget's sum over the
  supernet's ops) equals the network's own count on every genotype (the next test; here
  3,349,342 both): tracing the CIFAR-size supernet for it is 18 s alone, the child 2 s."""
  net = ds.child_net(ds.Spec(channels=36, layers=20), 10, ds.DARTS_V2)
  shapes = conv.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x, train=False),
                           jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))['params']
  assert 'aux_head' not in shapes  # built only when asked for (with_aux)
  n = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes))
  assert 3.2e6 < n < 3.45e6


def test_child_size_by_sum_equals_the_childs_own_init():
  """count_params sums the supernet's op sizes; each child network initialised on its own
  must have exactly that many parameters."""
  spec = ds.make_spec(_tiny_darts_config().nas, 0.9)
  gen = np.random.default_rng(0)
  for _ in range(4):
    g = darts.random_genotype(ds.DARTS, gen)
    net = ds.DartsNet(spec, 10, g.edges('normal'), g.edges('reduce'), bn_axis_name=None)
    shapes = jax.eval_shape(lambda x, net=net: net.init(jax.random.PRNGKey(0), x,
                                                        train=False),
                            jax.ShapeDtypeStruct((1, 8, 8, 1), jnp.float32))['params']
    own = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(shapes))
    assert ds.count_params(spec, 10, g.edges('normal'), g.edges('reduce'), (8, 8, 1)) == own


def test_darts_top2_rule():
  p = np.full((ds.DARTS.num_edges, 7), 0.1)
  p[0, 3] = p[1, 6] = 0.5            # node 0: inputs 0, 1
  p[2, 2], p[3, 4], p[4, 0] = 0.3, 0.6, 0.7  # node 1: inputs 1 and 2 win over input 0
  g = darts.top2_genotype(ds.DARTS, p, p)
  assert g.normal[:2] == (('sep_conv_3x3', 0), ('dil_conv_5x5', 1))
  assert g.normal[2:4] == (('sep_conv_5x5', 1), ('max_pool_3x3', 2))
  assert g.normal_weights[2:4] == (0.6, 0.7)
  for i in range(4):
    inputs = [j for _, j in g.reduce[2 * i: 2 * i + 2]]
    assert len(set(inputs)) == 2 and max(inputs) < i + 2


def _tiny_darts_config():
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.nas = darts.darts_config()
  c.nas.update(channels=2, layers=1, auxiliary_weight=0.0)
  return c


def test_alpha_gradient_equals_finite_differences():
  """DARTS' weighted-sum supernet: jax.grad of a loss in alpha against central
  differences along random directions, on the real (tiny) network."""
  s = darts.DARTS(_tiny_darts_config(), 10, (8, 8, 1))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  w = jax.random.normal(jax.random.PRNGKey(2), (4, 10))
  with conv.use_impl('xla'):
    v = s.net.init(jax.random.PRNGKey(0), x, train=False)
    arch = {t: 0.5 * jax.random.normal(jax.random.PRNGKey(3 + i), (ds.DARTS.num_edges, 7))
            for i, t in enumerate(('normal', 'reduce'))}
    loss = jax.jit(lambda a: jnp.sum(w * s.apply(v['params'], v['batch_stats'], a, {}, x,
                                                 None, False)[0]))
    g = jax.jit(jax.grad(loss))(arch)
    eps = 1e-2
    for k in range(3):
      d = {t: jax.random.normal(jax.random.PRNGKey(10 * k + i), a.shape)
           for i, (t, a) in enumerate(arch.items())}
      step = lambda sign, d=d: {t: arch[t] + sign * eps * d[t] for t in arch}
      fd = (loss(step(1)) - loss(step(-1))) / (2 * eps)
      exact = sum(jnp.vdot(g[t], d[t]) for t in arch)
      np.testing.assert_allclose(exact, fd, rtol=2e-2, atol=1e-4)
      assert abs(float(exact)) > 1e-3  # alpha really moves the loss
  assert darts.DARTS.arch_objective == 'val'


def test_a_darts_train_step_moves_alpha_on_the_held_out_batch(test_config):
  """The compiled step with the 'val' objective: alpha's gradient is taken on the arch
  batch, so a different arch batch gives alpha's optimizer other moments after the same
  step (its first Adam step is sign-like, so alpha itself may agree)."""
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from dha_jax.training import steps, train  # pylint: disable=g-import-not-at-top
  c = _tiny_darts_config()
  c.nas.cell_space = 'darts_small'  # the bi-level step, not the space, is the point here
  mesh = parallel.make_mesh(jax.devices()[:2])
  dset, comps, state, _, _ = train.setup(c, mesh)
  assert comps.feeds_arch_batch
  train_step, _ = steps.compile_steps(comps, mesh)
  it = dset.train_iterator('train', c.batch_size, 0)
  b, v1, v2 = next(it), next(it), next(it)
  alphas, moments = [], []
  for v in (v1, v2):
    st = parallel.replicate(jax.tree_util.tree_map(jnp.array, state), mesh)
    batch = dict(b, arch_image=v['image'], arch_label=v['label'])
    st, metrics = train_step(st, parallel.shard_batch(batch, mesh))
    assert np.isfinite(float(metrics['train/loss']))
    alphas.append(np.asarray(jax.device_get(st.params['arch']['normal'])))
    moments.append([np.asarray(x) for x in jax.tree_util.tree_leaves(
        jax.device_get(st.opt_state['arch'])) if np.size(x) > 1])
  assert not np.allclose(alphas[0], np.asarray(state.params['arch']['normal']))
  assert moments[0] and any(not np.allclose(a, b) for a, b in zip(*moments))


def test_genotype_figure_has_both_cells():
  fig = ds.genotype_figure(ds.DARTS_V2, 'DARTS_V2')
  assert [a.get_title() for a in fig.axes] == ['normal cell', 'reduce cell']
  labels = [t.get_text() for t in fig.axes[0].texts]
  assert labels.count('sep_conv_3x3') == 5 and 'dil_conv_3x3' in labels
