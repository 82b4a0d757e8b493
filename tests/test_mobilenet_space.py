"""The ProxylessNAS-style MobileNet space: its cost model against MobileNetV2 1.0 and the
modules' own counts, skip only where the identity fits, a DSNAS step on the small space
(and configs/imagenet.py's mobilenet variant's, reduced and traced), the child equal to the
supernet's path."""

import importlib
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.nas import choice_space, dsnas, mobilenet
from dha_jax.training import steps, train

import test_configs


def _tiny_config():
  from configs import test  # pylint: disable=g-import-not-at-top
  c = test.get_config()  # digits, 8x8x1
  c.nas = n = dsnas.default_config()
  n.space = 'mobilenet_small'
  n.stem_channels, n.stage_repeats, n.stage_channels, n.last_channels = 8, (2,), (16,), 16
  n.optimizer.lr = 0.1
  return c


def _param_count(space, genotype, image_shape, num_classes):
  """Parameters of the child module, from shapes alone (nothing compiled)."""
  net = choice_space.ChoiceNet(space, num_classes, tuple(genotype), bn_axis_name=None)
  x = jax.ShapeDtypeStruct((1,) + image_shape, jnp.float32)
  shapes = jax.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x), x)
  return choice_space.tree_size(shapes['params'])


def test_cost_model_gives_mobilenet_v2s_published_counts():
  macs, params = mobilenet.mobilenet_v2_costs()
  assert abs(macs / 300e6 - 1) < 0.02, macs        # Sandler et al.: 300M multiply-adds
  assert abs(params / 3504872 - 1) < 0.02, params  # torchvision's mobilenet_v2
  lay, genotype = mobilenet.mobilenet_v2_layout()
  assert len(lay.layers) == 16
  assert _param_count(mobilenet.space(lay), genotype, (224, 224, 3), 1000) == params


def test_analytic_costs_equal_the_modules_counts():
  lay = mobilenet.layout('mobilenet_small')
  space = mobilenet.space(lay, 'mobilenet_small')
  analytic = mobilenet.costs(lay, (16, 16, 3), 10)
  measured = choice_space.count_costs(space, (16, 16, 3), 10)  # abstract pass, intercepted
  np.testing.assert_array_equal(analytic.flops, measured.flops)
  np.testing.assert_array_equal(analytic.params, measured.params)
  assert (analytic.fixed_flops, analytic.fixed_params) == (measured.fixed_flops,
                                                          measured.fixed_params)
  assert not analytic.flops[:, mobilenet.SKIP].any() and not analytic.params[:, mobilenet.SKIP].any()
  # the full space at 224 px: a mixed genotype (skips included), child module vs analytic
  lay = mobilenet.layout('mobilenet')
  g = [(l % 7 if lay.allowed[l][l % 7] else 5) for l in range(len(lay.layers))]
  assert mobilenet.SKIP in g
  assert _param_count(mobilenet.space(lay), g, (224, 224, 3), 1000) == mobilenet.costs(
      lay, (224, 224, 3), 1000).of(g)[1]


def test_skip_only_where_the_identity_fits():
  for name, skips in (('mobilenet', 15), ('mobilenet_small', 4)):
    space = mobilenet.build(name)
    assert space.choices[mobilenet.SKIP] == 'skip' and space.num_choices == 7
    first = np.array([True] + [a.out_channels != b.out_channels or b.stride != 1
                               for a, b in zip(space.layers, space.layers[1:])])
    np.testing.assert_array_equal(space.mask[:, mobilenet.SKIP], ~first)
    assert space.mask[:, :mobilenet.SKIP].all() and space.mask[:, mobilenet.SKIP].sum() == skips
  assert len(mobilenet.build('mobilenet').layers) == 21
  # DSNAS draws random genotypes among the allowed candidates and refuses others
  config = _tiny_config()
  mask = mobilenet.build('mobilenet_small', 8, (2,), (16,), 16).mask
  np.testing.assert_array_equal(mask[:, 6], [False, True])
  config.nas.random_genotype = True
  draws = set()
  for seed in range(4):
    config.seed = seed
    draws.add(dsnas.DSNAS(config, 10, (8, 8, 1)).genotype)
  assert all(mask[l, k] for g in draws for l, k in enumerate(g)) and len(draws) > 1
  config.nas.random_genotype, config.nas.genotype = False, (6, 0)
  with pytest.raises(ValueError, match=r'layers \[0\] take a candidate'):
    dsnas.DSNAS(config, 10, (8, 8, 1))


def test_a_dsnas_step_on_the_small_space_and_the_child_equals_its_path():
  """Two layers (8 -> 16 channels: skip forbidden; 16 -> 16: skip allowed) at 8 px."""
  config = _tiny_config()
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh)
  s = comps.strategy
  assert s.space.name == 'mobilenet_small' and state.params['arch']['alpha'].shape == (2, 7)
  alpha0 = np.asarray(state.params['arch']['alpha'])
  assert (alpha0[~s.mask] == dsnas.FORBIDDEN).all()
  # forbidden candidates have probability 0 and are never sampled; skip is where allowed
  uniform = {'alpha': jnp.where(s.mask, 0.0, alpha0)}
  draws = np.asarray(jax.jit(jax.vmap(lambda k: s.choose(uniform, state.nas_state, k)))(
      jax.random.split(jax.random.PRNGKey(1), 400)))
  assert set(draws[:, 0]) == set(range(6)) and set(draws[:, 1]) == set(range(7))
  state = parallel.replicate(state, mesh)
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = next(ds.train_iterator('train', config.batch_size, config.seed))
  state, metrics = train_step(state, parallel.shard_batch(batch, mesh))
  assert np.isfinite(float(metrics['train/loss']))
  alpha = np.asarray(jax.device_get(state.params['arch']['alpha']))
  assert not np.allclose(alpha0[s.mask], alpha[s.mask])
  assert (alpha[~s.mask] < -1e8).all()
  # eval mode: the argmax path of the supernet (running statistics) is the derived child
  host = jax.device_get(state)
  alpha = np.where(s.mask, 0.0, alpha)
  alpha[[0, 1], [3, 6]] = 1.0  # k5_e6, skip
  st = types.SimpleNamespace(params={'net': host.params['net'], 'arch': {'alpha': alpha}},
                             batch_stats=host.batch_stats, nas_state=host.nas_state)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 8, 8, 1))  # init's shape: ops cached
  logits = jax.jit(lambda net, bs, arch, ns: s.apply(net, bs, arch, ns, x, None, False)[0])(
      st.params['net'], st.batch_stats, st.params['arch'], st.nas_state)
  module, variables, genotype = s.child(st)
  assert genotype == [3, 6] and 'layer1' not in variables['params']
  child_logits = module.apply(variables, x, train=False)
  np.testing.assert_allclose(logits, child_logits, rtol=1e-5, atol=1e-5)


def test_imagenet_config_mobilenet_variant_runs_a_step_reduced():
  """configs/imagenet.py:nas/dsnas/mobilenet: the ProxylessNAS space; one step on mock
  ImageNet at 32 px with one narrow stage of two layers, traced as test_configs.py traces
  the paper configs' steps (compiled with DHA_SLOW_TESTS=1: the small space's DSNAS step
  above is compiled and run)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  imagenet = importlib.import_module('configs.imagenet')
  config = imagenet.get_config('nas/dsnas/mobilenet')
  n = config.nas
  assert n.strategy == 'dsnas' and n.space == 'mobilenet' and n.budget == 330e6
  assert config.num_epochs == 240 and imagenet.get_config('dha/dsnas/mobilenet').policy.name \
      == 'learned'
  with pytest.raises(ValueError, match='space'):
    imagenet.get_config('nas/ista/mobilenet')
  n.stem_channels, n.stage_repeats, n.stage_channels, n.last_channels = 8, (2,), (16,), 32
  config.batch_size, config.eval_batch_size = 8, 8
  config.dataset.load_size, config.preprocess.image_size = 40, 32
  config.dataset.train_size, config.dataset.val_size = 40, 8
  config.conv_impl = 'xla'
  with tfds.testing.mock_data(num_examples=40):
    ds, comps = test_configs.one_step(config)
  assert comps.strategy.space.name == 'mobilenet' and ds.num_classes == 1000
