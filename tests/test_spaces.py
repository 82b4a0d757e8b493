"""A new choice space is a module plus one registration: a toy space, registered here,
is searched by DSNAS through the real compiled step and exported, with no other edit."""

from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax.core import parallel
from dha_jax.models import common
from dha_jax.nas import choice_space, dsnas
from dha_jax.training import steps, train


class _ConvBN(nn.Module):
  """conv, BatchNorm, relu (blocks: per-device statistics, as choice_space requires)."""
  channels: int
  kernel: int
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(self.channels, (self.kernel, self.kernel))(x)
    return nn.relu(common.batch_norm(train, self.bn_axis_name, 0.9)(x))


class _Head(nn.Module):
  num_classes: int
  bn_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x, train=False):
    x = common.batch_norm(train, self.bn_axis_name, 0.9)(x)
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


def _toy_space(nas_config, bn_momentum):
  """Two layers choosing a 1x1 or a 3x3 convolution (ignores ShuffleNet's fields)."""
  del nas_config, bn_momentum
  return choice_space.Space(
      name='toy', choices=('conv1', 'conv3'),
      layers=(choice_space.LayerSpec(4, 8, 1), choice_space.LayerSpec(8, 8, 1)),
      stem=lambda bn_axis_name, name=None: _ConvBN(4, 3, bn_axis_name, name=name),
      block=lambda spec, k, name=None: _ConvBN(spec.out_channels, (1, 3)[k], name=name),
      head=lambda num_classes, bn_axis_name, name=None: _Head(num_classes, bn_axis_name,
                                                              name=name))


@pytest.fixture
def toy_registered():
  choice_space.register('toy', _toy_space)
  yield
  choice_space.SPACES.unregister('toy')


def test_a_registered_space_is_searched_by_dsnas(toy_registered, test_config):
  test_config.nas = dsnas.default_config()
  test_config.nas.space = 'toy'
  test_config.nas.optimizer.lr = 0.1
  mesh = parallel.make_mesh(jax.devices()[:2])
  ds, comps, state, _, _ = train.setup(test_config, mesh)
  assert comps.strategy.space.choices == ('conv1', 'conv3')
  assert state.params['arch']['alpha'].shape == (2, 2)
  state = parallel.replicate(state, mesh)
  alpha0 = np.asarray(jax.device_get(state.params['arch']['alpha']))
  train_step, _ = steps.compile_steps(comps, mesh)
  it = ds.train_iterator('train', test_config.batch_size, test_config.seed)
  for _ in range(2):
    state, metrics = train_step(state, parallel.shard_batch(next(it), mesh))
  assert np.isfinite(float(metrics['train/loss']))
  assert not np.allclose(alpha0, jax.device_get(state.params['arch']['alpha']))
  module, variables, genotype = comps.strategy.child(jax.device_get(state))
  assert len(genotype) == 2 and all(g in (0, 1) for g in genotype)
  logits = module.apply(variables, jnp.zeros((3, 8, 8, 1)), train=False)
  assert logits.shape == (3, 10)


def test_an_unknown_space_names_the_registered_ones(test_config):
  test_config.nas = dsnas.default_config()
  test_config.nas.space = 'no_such_space'
  with pytest.raises(ValueError, match="config.nas.space='no_such_space'.*shufflenet_small"):
    dsnas.DSNAS(test_config, 10, (8, 8, 1))
