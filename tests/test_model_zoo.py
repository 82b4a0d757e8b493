"""The fixed-network zoo of DiffAutoML's Table 2: parameter counts against the papers
(eval_shape only), ShakeDrop against hand computations, and one DA+HPO step of each zoo
config on mock data at reduced depth and width (ResNet-200's traced only by default)."""

import importlib
from typing import ClassVar, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from dha_jax import models
from dha_jax.core import parallel
from dha_jax.layers import conv
from dha_jax.models import common, pyramidnet, shakedrop
from dha_jax.nas import fixed
from dha_jax.training import train

import slow
import test_configs

# (name, classes, image side, published parameters, the figure's rounding unit): ResNet-200
# (He et al. 2016b), WRN (Zagoruyko & Komodakis), PyramidNet-272 alpha 200 (Han et al.),
# all given to 0.1M; ResNet-50's exact torchvision count is the test after
PUBLISHED = [('resnet200', 1000, 224, 64.7e6, 1e5), ('wrn28_10', 10, 32, 36.5e6, 1e5),
             ('wrn40_2', 10, 32, 2.2e6, 1e5), ('pyramidnet272', 10, 32, 26.0e6, 1e5)]


@pytest.mark.parametrize('name,classes,side,published,unit', PUBLISHED)
def test_param_count_matches_the_paper(name, classes, side, published, unit):
  """Within 1%, or within the published figure's rounding (WRN-40-2's "2.2M" allows
  2.15-2.25M, which is 2.3%) where that is wider."""
  n = models.param_count(name, classes, side, default.get_config().model)
  assert abs(n - published) <= max(0.01 * published, unit / 2), (name, n)


def test_param_count_is_torchvisions_resnet50_exactly():
  """25,557,032: BN running means and variances are not parameters (they would add
  53,120), BN scales and biases are."""
  assert models.param_count('resnet50', 1000, 224, default.get_config().model) == 25_557_032


def test_shakedrop_scales_forward_by_alpha_and_gradient_by_beta_by_hand():
  x = jnp.arange(1.0, 7.0).reshape(3, 2)
  b = jnp.array([1.0, 0.0, 0.0])
  alpha = jnp.array([-0.5, 0.25, -0.75])
  beta = jnp.array([0.3, 0.8, 0.1])
  w = jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 4.0]])
  y = shakedrop.scale(x, b, alpha, beta)
  # b = 1 keeps the branch both ways; b = 0 gives alpha forward, beta backward
  np.testing.assert_allclose(y, np.array([[1.0], [0.25], [-0.75]]) * np.asarray(x),
                             rtol=1e-6)
  g = jax.grad(lambda v: jnp.sum(w * shakedrop.scale(v, b, alpha, beta)))(x)
  np.testing.assert_allclose(g, np.array([[1.0], [0.8], [0.1]]) * np.asarray(w), rtol=1e-6)


def test_shakedrop_train_uses_the_keys_coefficients_and_eval_the_expectation():
  p, n = 0.7, 20000
  key = jax.random.PRNGKey(3)
  x = jax.random.normal(jax.random.PRNGKey(4), (n, 2))
  b, alpha, beta = (np.asarray(v) for v in shakedrop.coefficients(key, n, p))
  fwd, bwd = b + alpha * (1 - b), b + beta * (1 - b)
  y, vjp = jax.vjp(lambda v: shakedrop.shake_drop(v, p, key), x)
  np.testing.assert_allclose(y, fwd[:, None] * np.asarray(x), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(vjp(jnp.ones_like(x))[0], np.repeat(bwd[:, None], 2, 1),
                             rtol=1e-6)
  # the draws: keep rate p, alpha ~ U[-1, 1], beta ~ U[0, 1] (sd of these means over
  # 20000 draws: 0.0032, 0.0041, 0.0020; the bounds are 5-15 sd)
  assert abs(b.mean() - p) < 0.02
  assert alpha.min() >= -1 and alpha.max() <= 1 and abs(alpha.mean()) < 0.03
  assert beta.min() >= 0 and beta.max() <= 1 and abs(beta.mean() - 0.5) < 0.03
  # the inference rule is the train forward's mean scale, E[b + alpha (1 - b)] = p (sd 0.004)
  assert abs(fwd.mean() - p) < 0.02
  np.testing.assert_allclose(shakedrop.shake_drop(x, p), p * np.asarray(x), rtol=1e-6)


def test_shakedrop_module_same_key_same_output_other_key_other_output():
  x = jnp.ones((64, 3))
  m = shakedrop.ShakeDrop(0.5)
  run = lambda seed: m.apply({}, x, train=True, rngs={'shakedrop': jax.random.PRNGKey(seed)})
  np.testing.assert_array_equal(run(0), run(0))
  assert float(jnp.max(jnp.abs(run(0) - run(1)))) > 0.1
  # eval, or train without the stream (BN recalibration): p x exactly
  np.testing.assert_array_equal(m.apply({}, x, train=False), 0.5 * x)
  np.testing.assert_array_equal(m.apply({}, x, train=True), 0.5 * x)


def test_pyramid_block_at_eval_is_padded_shortcut_plus_p_times_branch():
  """Closed form: keep_prob is no parameter, so one set of weights gives
  out(p) = shortcut(x) + p F(x), with shortcut = 2x2 mean pool, zero-padded channels."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 5))
  block = lambda p: pyramidnet.PyramidBottleneck(3, 2, p, common.partial_bn(False, None, 0.9))
  ps = (0.0, 0.6, 1.0)
  with conv.use_impl('xla'):  # the cheapest to compile; the formulations: test_conv.py
    v = jax.jit(lambda k, u: block(1.0).init(k, u, False))(jax.random.PRNGKey(1), x)
    outs = jax.jit(lambda v, u: [block(p).apply(v, u, False) for p in ps])(v, x)
  out = dict(zip(ps, (np.asarray(o) for o in outs)))
  pooled = np.asarray(x).reshape(2, 3, 2, 3, 2, 5).mean(axis=(2, 4))
  shortcut = np.concatenate([pooled, np.zeros((2, 3, 3, 7))], axis=-1)
  np.testing.assert_allclose(out[0.0], shortcut, atol=1e-6)
  branch = out[1.0] - shortcut
  assert np.abs(branch).max() > 0.1  # the branch is not trivially zero
  np.testing.assert_allclose(out[0.6], shortcut + 0.6 * branch, atol=1e-5)


class _Shaken(nn.Module):
  """The smallest model with a ShakeDrop stream: BN (FixedNetwork's train call updates
  batch statistics), dense, ShakeDrop."""
  rng_streams: ClassVar[Tuple[str, ...]] = (shakedrop.STREAM,)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train)(x.reshape(x.shape[0], -1))
    return shakedrop.ShakeDrop(0.5)(nn.Dense(4)(x), train)


def test_fixed_network_feeds_the_step_key_to_shakedrop_in_training_only():
  """FixedNetwork.apply passes its rng as the model's named streams in training (same
  key, same logits; another key, others) and none in eval (the key is unused); its init
  needs no stream. (The PyramidNet itself runs so in the config step test below.)"""
  s = fixed.FixedNetwork(default.get_config(), 4, (3, 3, 1))
  s.model = _Shaken()
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 3, 3, 1))
  net, bs, _, _ = s.init(jax.random.PRNGKey(1), x[:2])
  run = lambda key, train: np.asarray(s.apply(net, bs, {}, {}, x, key, train)[0])
  k5, k6 = jax.random.PRNGKey(5), jax.random.PRNGKey(6)
  np.testing.assert_array_equal(run(k5, True), run(k5, True))
  assert np.abs(run(k5, True) - run(k6, True)).max() > 1e-3
  np.testing.assert_array_equal(run(k5, False), run(k6, False))
  np.testing.assert_array_equal(run(None, False), run(k5, False))
  # eval by hand: BN at its initial running statistics (0, 1), dense, times p = 0.5
  h = np.asarray(x).reshape(16, -1) / np.sqrt(1 + 1e-5)
  dense = net['Dense_0']
  np.testing.assert_allclose(run(None, False),
                             0.5 * (h @ np.asarray(dense['kernel']) + np.asarray(dense['bias'])),
                             rtol=1e-5, atol=1e-6)
  # the zoo: only PyramidNet asks for a stream (the others, and small_cnn, get none)
  c = default.get_config()
  streams = {}
  for name in ('pyramidnet272', 'wrn40_2', 'resnet50', 'small_cnn'):
    c.model.name = name
    streams[name] = getattr(fixed.FixedNetwork(c, 10, (32, 32, 3)).model, 'rng_streams', ())
  assert streams == {'pyramidnet272': ('shakedrop',), 'wrn40_2': (), 'resnet50': (),
                     'small_cnn': ()}


def _one_step(config):
  """One specialised train step as the loop runs it, with the 'val' batch of the eta
  hypergradient; checks the loss is finite and theta moved. Returns (data, new state)."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  before = jax.device_get(state.params['net'])
  train_step, _ = train.StepCache(comps, mesh)(state)
  batch = next(ds.train_iterator('train', config.batch_size, config.seed))
  extra = next(ds.train_iterator('val', config.batch_size, config.seed + 1))
  batch.update({'hpo_image': extra['image'], 'hpo_label': extra['label']})
  state, metrics = train_step(state, parallel.shard_batch(batch, mesh))
  assert np.isfinite(float(metrics['train/loss']))
  moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))),
                                 jax.device_get(state.params['net']), before)
  assert max(jax.tree_util.tree_leaves(moved)) > 0
  return ds, state


# (module, argument, depth, widen, compiled): ResNet-200's step is traced only (as
# test_configs.py traces the paper configs': its compile was 43-53 s of the suite) unless
# DHA_SLOW_TESTS=1; PyramidNet's is compiled and run (ShakeDrop in the real step).
STEPS = [('cifar_zoo', 'pyramidnet272/da_hpo/cifar100', 11, 4, True),
         ('imagenet_resnet', 'resnet200/da_hpo', 14, 4, slow.ENABLED)]


def _reduced(module, arg, depth, widen):
  config = importlib.import_module(f'configs.{module}').get_config(arg)
  assert config.model.name == arg.split('/')[0] and config.policy.name == 'learned'
  assert config.hpo.enabled and config.hpo.objective == 'val'
  assert config.hpo.wd_init == config.weight_decay
  config.model.depth, config.model.widen = depth, widen
  config.batch_size = config.eval_batch_size = 8
  config.dataset.val_size = 8
  config.warmup_epochs = 0.0
  config.conv_impl = 'xla'  # compile-bound test; the CPU formulations: test_conv.py
  if module == 'imagenet_resnet':  # 32 px, the same streaming pipeline and 7x7 stem
    config.dataset.load_size, config.preprocess.image_size = 40, 32
    config.dataset.train_size = 40
  return config


@pytest.mark.parametrize('module,arg,depth,widen,compiled', STEPS)
def test_zoo_config_runs_a_da_hpo_step_at_reduced_size(module, arg, depth, widen, compiled):
  """The recipe's fields, then one step with learned tau and eta ('val' objective) on mock
  data, the network cut to its family's smallest depth: the theta step moves the weights
  (no warmup here: its first lr is 0). PyramidNet carries ShakeDrop through the real step;
  the WRNs and resnet50 differ only in recipe numbers (the test below) and in the network
  (the parameter counts), so they add no compile here."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = _reduced(module, arg, depth, widen)
  with tfds.testing.mock_data(num_examples=40):
    if compiled:
      ds, state = _one_step(config)
      assert int(state.step) == 1
    else:
      ds, _ = test_configs.one_step(config, compiled=False)
  assert ds.num_classes == (100 if 'cifar100' in arg else 1000)


def test_zoo_config_recipes_and_argument_errors():
  from configs import cifar_zoo, imagenet_resnet  # pylint: disable=g-import-not-at-top
  c = cifar_zoo.get_config('cifar100/wrn40_2')  # any order; variant defaults to fixed
  assert (c.model.name, c.dataset.name, c.weight_decay, c.policy.name) == (
      'wrn40_2', 'cifar100', 2e-4, 'none')
  c = cifar_zoo.get_config('pyramidnet272')
  assert (c.batch_size, c.num_epochs, c.lr, c.preprocess.cutout) == (64, 1800, 0.05, 16)
  c = imagenet_resnet.get_config('resnet50/hpo')
  assert (c.batch_size, c.lr, c.num_epochs, c.hpo.enabled) == (1024, 0.4, 270, True)
  with pytest.raises(ValueError, match='none of the networks'):
    cifar_zoo.get_config('wrn16_8')
  with pytest.raises(ValueError, match='names two networks'):
    cifar_zoo.get_config('wrn40_2/wrn28_10')
  with pytest.raises(ValueError, match='variant must be one of'):
    imagenet_resnet.get_config('resnet50/dha')
  with pytest.raises(ValueError, match='depth 6n'):
    c = cifar_zoo.get_config('wrn28_10')
    c.model.depth = 12
    models.param_count('wrn28_10', 10, 32, c.model)
