"""A newcomer extends dha_jax without editing it (docs/extending.md): a data source, a
network, an augmentation policy, an augmentation op and an architecture strategy are each
defined here with one decorator and used by real training runs, by name from the config
(the strategy also through the comparison variants: its search, its random control and
the sequential pipeline's hand-over of its genotype). More toy ops: test_op_registry.

The toy task: 8x8 grey images bright in their top or their bottom half, plus noise; a
linear classifier on the pixels separates them, and nothing else in the project knows
them, so the run's accuracy shows that the source and the network were the ones used.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from PIL import Image
from sklearn.datasets import load_sample_images

from dha_jax import data, hpo, models, nas
from dha_jax.augment import ops
from dha_jax.augment import base as policy_base
from dha_jax.comparison import experiments
from dha_jax.data import base as data_base
from dha_jax.nas import base as nas_base
from dha_jax.training import train

TRACED = []  # the toy policy's augment, each time the train step is traced
TRACED_OPS = []  # the toy op, each time ops.apply is traced with it
# The toy strategy's choice: a bias only (first, so an alpha that never moved picks it),
# or a linear map of the pixels.
CANDIDATES = ('blind', 'pixels')


@pytest.fixture
def toys():
  jax.clear_caches()  # an ops.apply traced before the toy op registered would not know it
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

  # Lift: PIL's point(lambda v: min(255, v + 48 |m|)) as a table; the halves stay apart
  @ops.register('Lift', 'table')
  def _lift(m, hist, lo, hi):
    del hist, lo, hi
    TRACED_OPS.append(m.shape)
    up = jnp.round(48 * jnp.abs(m)).astype(jnp.int32)[:, None, None]
    return jnp.minimum(255, jnp.arange(256, dtype=jnp.int32) + up)

  @nas_base.STRATEGIES.register('toy_pick')
  class PickOne(nas_base.Search, nas_base.FixedGenotype, nas_base.Strategy):
    """Searches which of CANDIDATES heads the network (the softmax(alpha)-weighted sum
    of both, DARTS-like, alpha on the training loss); with config.nas.genotype set it
    trains that one alone, so it is its own fixed counterpart (as DSNAS is): it mixes in
    the Search and FixedGenotype parts (nas/base.py)."""
    fixed_counterpart = 'toy_pick'

    @classmethod
    def default_config(cls):
      return ml_collections.ConfigDict(
          {'strategy': 'toy_pick', 'genotype': '', 'random_genotype': False})

    @classmethod
    def configure_random(cls, nas_config):
      nas_config.random_genotype = True

    @classmethod
    def configure_derived(cls, nas_config):
      nas_config.genotype = CANDIDATES[0]

    @classmethod
    def genotype_flag(cls, genotype):
      return f'--config.nas.genotype={genotype}'

    def __init__(self, config, num_classes, image_shape):
      del image_shape
      n = config.nas
      drawn = CANDIDATES[np.random.default_rng([config.seed, 5]).integers(2)]
      self.genotype = drawn if n.random_genotype else n.genotype or None
      self.num_classes = num_classes

    def program_key(self):
      return self.genotype  # drawn from config.seed, which the step's key leaves out

    def init(self, rng, dummy):
      params = Heads(self.num_classes).init(rng, dummy, jnp.ones(2))['params']
      return params, {}, ({} if self.genotype else {'alpha': jnp.zeros(2)}), {}

    def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
      weights = jax.nn.softmax(arch['alpha']) if not self.genotype else jnp.asarray(
          [c == self.genotype for c in CANDIDATES], jnp.float32)
      return Heads(self.num_classes).apply({'params': net}, images, weights), batch_stats, {}

    def optimizer(self):
      return optax.adam(0.05)

    def searching(self, nas_state):
      return jnp.asarray(not self.genotype)

    def _chosen(self, arch):
      return self.genotype or CANDIDATES[int(np.argmax(jax.device_get(arch['alpha'])))]

    def child(self, state):
      genotype = self._chosen(state.params['arch'])
      return self.child_module(genotype), {'params': state.params['net']}, genotype

    def child_module(self, genotype):
      return Heads(self.num_classes, genotype)

    def summary(self, arch, nas_state):
      return {'architecture': {'genotype': self._chosen(arch)}}

  try:
    yield
  finally:
    data.SOURCES.unregister('halves')
    models.MODELS.unregister('pixel_linear')
    policy_base.POLICIES.unregister('dim')
    nas_base.STRATEGIES.unregister('toy_pick')
    ops.unregister('Lift')
    jax.clear_caches()  # ops.apply reads the op registry when it traces


class Heads(nn.Module):
  """Both candidates' outputs weighted (the search), or the `only` one (the child)."""
  num_classes: int
  only: str = ''

  @nn.compact
  def __call__(self, x, weights=None, train=False):
    del train
    pixels = nn.Dense(self.num_classes, name='pixels')(x.reshape(x.shape[0], -1))
    blind = jnp.broadcast_to(self.param('blind', nn.initializers.zeros, (self.num_classes,)),
                             pixels.shape)
    if self.only:
      return pixels if self.only == 'pixels' else blind
    return weights[0] * blind + weights[1] * pixels


def _halves_config(arg=''):
  """configs/test.py on the toy task; `arg` a comparison variant of the toy strategy
  (what a dataset config's get_config does with it, its search settings given here)."""
  from configs import test  # pylint: disable=g-import-not-at-top
  config = test.get_config()
  config.dataset.source, config.dataset.val_size = 'halves', 64
  config.dataset.mean, config.dataset.std = (0.5,), (0.3,)
  config.preprocess.kind, config.preprocess.flip = 'none', False
  config.num_steps, config.eval_every_epochs = 40, 0
  if arg:
    experiments.apply(config, arg, search={'toy_pick': {}})
    config.policy.name = 'none'  # the strategy alone (a learned tau is other tests')
  return config


def test_a_run_uses_a_source_a_network_and_a_policy_defined_outside_the_library(
    toys, tmp_path):
  config = _halves_config()
  config.model.name, config.policy.name = 'pixel_linear', 'dim'
  TRACED.clear()
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result['num_params'] == 8 * 8 * 2 + 2  # the toy network's kernel and bias
  # the toy policy ran inside the step, on each device's share of the batch
  assert TRACED and TRACED[0] == (config.batch_size // jax.device_count(), 8, 8, 1)
  # 128 test images of the toy task; chance is 0.5 and a network that ignored the
  # pixels could not pass (measured 1.0)
  assert result['test/accuracy'] >= 0.95, result


def test_an_op_defined_here_equals_pil_and_is_drawn_inside_the_train_step(toys, tmp_path):
  """The toy op against PIL's point() on a photo, then TrivialAugment over (Identity,
  Lift) in a training run: the op is traced into the step, and the task still learnt."""
  photo = Image.fromarray(load_sample_images().images[0]).convert('L').resize((40, 30))
  x = np.asarray(photo, np.float32)[None, :, :, None] / 255.0
  for m in (0.0, 0.4, -1.0):
    up = round(48 * abs(m))
    expected = np.asarray(photo.point(lambda v, up=up: min(255, v + up)), np.float32)
    out = ops.apply(x, np.full(1, ops.index('Lift'), np.int32), np.full(1, m, np.float32))
    np.testing.assert_allclose(np.asarray(out)[0, :, :, 0], expected / 255.0, rtol=0,
                               atol=1e-6, err_msg=f'm={m}')
  config = _halves_config()
  config.model.name, config.policy.name = 'pixel_linear', 'trivialaugment'
  config.policy.ops = ('Identity,Lift',)
  TRACED_OPS.clear()
  result = train.train_and_evaluate(config, str(tmp_path))
  assert TRACED_OPS, 'the toy op was not traced into the train step'
  assert result['test/accuracy'] >= 0.95, result


def test_a_strategy_defined_here_searches_and_hands_its_genotype_on(toys, tmp_path):
  """The toy strategy through the comparison variants: 'nas' finds the candidate that can
  solve the task (the bias-only one cannot: chance is 0.5), 'sequential' trains it alone
  from the flag its fixed counterpart writes, and 'random' draws from the seed."""
  searched = train.train_and_evaluate(_halves_config('nas/toy_pick'), str(tmp_path / 'nas'))
  assert searched['architecture']['genotype'] == 'pixels', searched
  assert searched['num_params'] == 8 * 8 * 2 + 2 + 2  # the pixels head and the bias
  flag = experiments.genotype_flag('toy_pick', searched['architecture']['genotype'])
  assert flag == '--config.nas.genotype=pixels'
  config = _halves_config('sequential/toy_pick')
  assert config.nas.genotype == 'blind' and config.hpo.enabled  # configure_derived, HPO
  field, value = flag[2:].split('=', 1)
  assert field == 'config.nas.genotype'
  config.nas.genotype = value
  second = train.train_and_evaluate(config, str(tmp_path / 'sequential'))
  assert second['architecture']['genotype'] == 'pixels'
  assert second['test/accuracy'] >= 0.95, second
  drawn = set()
  for seed in range(8):
    config = _halves_config('random/toy_pick')
    config.seed = seed
    strategy = nas.create(config, 2, (8, 8, 1))
    assert strategy.program_key() == strategy.genotype  # one compiled step per draw
    drawn.add(strategy.genotype)
  assert drawn == set(CANDIDATES)  # 8 draws of 2: both (a miss has chance 2^-7)


def test_the_registries_list_the_toys_and_errors_name_the_valid_ones(toys):
  assert 'toy_pick' in nas.STRATEGIES.names() and 'toy_pick' in experiments.searchable()
  assert 'Lift' in ops.registered()
  assert hpo.HANDLERS.names() == ['fixed', 'hypergrad']
  config = _halves_config()
  config.hpo.enabled, config.hpo.handler = True, 'hypergrd'
  with pytest.raises(ValueError, match=r"config.hpo.handler='hypergrd' is unknown \(did "
                     r"you mean hypergrad\?\)"):
    hpo.create(config)
  with pytest.raises(ValueError, match=r"config.nas.strategy='toy_pik' is unknown \(did "
                     r"you mean toy_pick\?\).*'dsnas'"):
    nas.STRATEGIES.get('toy_pik')
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


def test_importing_the_packages_registers_every_component_without_matplotlib():
  """Each package imports its modules so they register, but not the plotting ones: a
  notebook importing dha_jax keeps its matplotlib backend (they set 'Agg')."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  code = ('import sys, dha_jax.training.train\n'
          'from dha_jax import hpo, nas\n'
          "assert 'matplotlib' not in sys.modules, sorted(m for m in sys.modules if 'plot' in m)\n"
          "print(nas.STRATEGIES.names(), hpo.HANDLERS.names())")
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=False)
  assert out.returncode == 0, out.stderr[-2000:]
  assert "['choice_fixed', 'darts', 'darts_fixed', 'dsnas', 'ista', 'none'] ['fixed', 'hypergrad']" in out.stdout
