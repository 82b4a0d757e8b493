"""The DARTS cell space: genotypes, shapes of cells and networks, parameter counts, the
DARTS top-2 rule, the cell picture. Abstract evaluation only (no compiles): fast."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.layers import conv
from dha_jax.nas import darts, darts_ops, darts_space as ds


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
  spec = ds.Spec(channels=36, layers=20)
  with conv.use_impl('xla'):
    n = ds.count_params(spec, 10, ds.DARTS_V2.edges('normal'), ds.DARTS_V2.edges('reduce'),
                        (32, 32, 3))
  assert 3.2e6 < n < 3.45e6  # DARTS reports 3.3M for DARTS_V2 on CIFAR-10


def test_darts_top2_rule():
  p = np.full((darts.NUM_EDGES, 7), 0.1)
  p[0, 3] = p[1, 6] = 0.5            # node 0: inputs 0, 1
  p[2, 2], p[3, 4], p[4, 0] = 0.3, 0.6, 0.7  # node 1: inputs 1 and 2 win over input 0
  g = darts.top2_genotype(p, p)
  assert g.normal[:2] == (('sep_conv_3x3', 0), ('dil_conv_5x5', 1))
  assert g.normal[2:4] == (('sep_conv_5x5', 1), ('max_pool_3x3', 2))
  assert g.normal_weights[2:4] == (0.6, 0.7)
  for i in range(4):
    inputs = [j for _, j in g.reduce[2 * i: 2 * i + 2]]
    assert len(set(inputs)) == 2 and max(inputs) < i + 2


def test_supernet_is_differentiable_in_alpha():
  """DARTS' weighted sum: d logits / d alpha exists for every edge (abstractly traced)."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()
  c.nas = darts.darts_config()
  c.nas.update(channels=2, layers=1)
  s = darts.DARTS(c, 10)
  x = jnp.zeros((2, 8, 8, 1))
  with conv.use_impl('xla'):
    v = jax.eval_shape(lambda u: s.net.init(jax.random.PRNGKey(0), u, train=False), x)
    arch = {t: jnp.zeros((darts.NUM_EDGES, 7)) for t in ('normal', 'reduce')}
    g = jax.eval_shape(lambda p, b, a: jax.grad(lambda a: jnp.sum(s.apply(
        p, b, a, {}, x, None, False)[0]))(a), v['params'], v['batch_stats'], arch)
  assert g['reduce'].shape == (darts.NUM_EDGES, 7)
  assert darts.DARTS.arch_objective == 'val'


def test_genotype_figure_has_both_cells():
  fig = ds.genotype_figure(ds.DARTS_V2, 'DARTS_V2')
  assert [a.get_title() for a in fig.axes] == ['normal cell', 'reduce cell']
  labels = [t.get_text() for t in fig.axes[0].texts]
  assert labels.count('sep_conv_3x3') == 5 and 'dil_conv_3x3' in labels
