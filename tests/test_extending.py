"""A newcomer extends dha_jax without editing it (docs/extending.md): a data source, a
network and an augmentation policy are each defined here with one decorator and used by
a real training run, by name from the config. (A toy augmentation op: test_op_registry.)

The toy task: 8x8 grey images bright in their top or their bottom half, plus noise; a
linear classifier on the pixels separates them, and nothing else in the project knows
them, so the run's accuracy shows that the source and the network were the ones used.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax import data, models, train
from dha_jax.augment import base as policy_base
from dha_jax.data import base as data_base

TRACED = []  # the toy policy's augment, each time the train step is traced


@pytest.fixture
def toys():
  @data.SOURCES.register('halves')
  def load_halves(cfg, seed):
    rng = np.random.default_rng([seed, 5])

    def split(n):
      labels = rng.integers(0, 2, n)
      images = rng.integers(0, 96, (n, 8, 8, 1))
      rows = np.arange(8)[None, :, None, None]
      bright = np.where(labels[:, None, None, None] == 0, rows < 4, rows >= 4)
      return data_base.Split((images + 128 * bright).astype(np.uint8), labels)

    tr, val = data_base.hold_out(split(256 + cfg.val_size), cfg.val_size, seed)
    return data_base.Dataset('halves', tr, val, split(128), 2)

  class PixelLinear(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train=False):
      del train
      return nn.Dense(self.num_classes)(x.reshape(x.shape[0], -1))

  @models.MODELS.register('pixel_linear')
  def from_config(cfg, num_classes, bn_axis_name):
    del cfg, bn_axis_name
    return PixelLinear(num_classes)

  @policy_base.POLICIES.register('dim')
  class Dim(policy_base.Policy):
    """Darkens each image by a random factor in [0.8, 1] (one key per sample)."""

    def augment(self, tau, images, step_key, sample_keys, searching):
      TRACED.append(images.shape)
      factor = jax.vmap(lambda k: jax.random.uniform(k, (), minval=0.8, maxval=1.0))(
          sample_keys)
      return images * factor[:, None, None, None], {}

  try:
    yield
  finally:
    data.SOURCES.unregister('halves')
    models.MODELS.unregister('pixel_linear')
    policy_base.POLICIES.unregister('dim')


def test_a_run_uses_a_source_a_network_and_a_policy_defined_outside_the_library(
    toys, tmp_path):
  from configs import test  # pylint: disable=g-import-not-at-top
  config = test.get_config()
  config.dataset.source, config.dataset.val_size = 'halves', 64
  config.dataset.mean, config.dataset.std = (0.5,), (0.3,)
  config.model.name, config.policy.name = 'pixel_linear', 'dim'
  config.preprocess.kind, config.preprocess.flip = 'none', False
  config.num_steps, config.eval_every_epochs = 40, 0
  TRACED.clear()
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result['num_params'] == 8 * 8 * 2 + 2  # the toy network's kernel and bias
  # the toy policy ran inside the step, on each device's share of the batch
  assert TRACED and TRACED[0] == (config.batch_size // jax.device_count(), 8, 8, 1)
  # 128 test images of the toy task; chance is 0.5 and a network that ignored the
  # pixels could not pass (measured 1.0)
  assert result['test/accuracy'] >= 0.95, result


def test_the_registries_list_the_toys_and_errors_name_the_valid_ones(toys):
  assert 'halves' in data.SOURCES.names() and 'digits' in data.SOURCES.names()
  assert 'pixel_linear' in models.MODELS.names()
  assert 'dim' in policy_base.POLICIES.names()
  with pytest.raises(ValueError, match=r"config.model.name='pixel_linar' is unknown \(did "
                     r"you mean pixel_linear\?\); choose one of \[.*'pixel_linear'"):
    models.MODELS.get('pixel_linar')
  with pytest.raises(ValueError, match=r"config.dataset.source='halfs' is unknown.*'halves'"):
    data.SOURCES.get('halfs')
  with pytest.raises(ValueError, match=r"'dim' is already registered"):
    policy_base.POLICIES.register('dim')(object)
