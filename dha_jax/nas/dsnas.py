"""DSNAS (docs/method.md 3a): single-path stochastic architecture search in the training step.

alpha in R^{L x K}. Each step every device (or, with config.nas.path_groups = G, each of
G equal groups of the global batch, keyed by its global index, so that the run does not
depend on the device count) draws Z_l ~ OneHot(softmax(alpha_l)), runs only the sampled
block of every layer and scales its output by
    z_l = exp(log p_{l,s} - stopgrad(log p_{l,s}))     (value 1)
so the one jax.grad of the step gives dL/dalpha_l = (dL/dZ_{l,s}) (onehot(s) - softmax(alpha_l)),
averaged over devices with theta's gradient. A layer whose top-1 minus top-2 probability
reaches `fix_threshold` is fixed to its argmax (host side, end_of_epoch); when every layer
is fixed, or at `search_epochs`, the search phase ends and the fixed child trains on.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dha_jax.core import config_util, optim, parallel
from dha_jax.nas import base, choice_space, host_init


def default_config():
  """Every field config.nas may hold for strategy 'dsnas', with its default."""
  n = ml_collections.ConfigDict()
  n.strategy = 'dsnas'
  n.space = 'shufflenet_small'  # choice_space.SPACES: 'shufflenet' (SPOS, 224 px) |
  #                               'shufflenet_small' (8-32 px) | 'mobilenet' (ProxylessNAS,
  #                               224 px) | 'mobilenet_small' (8-32 px)
  n.stem_channels = 0           # width / depth overrides of the space (0 or () = its default)
  n.stage_repeats = ()
  n.stage_channels = ()
  n.last_channels = 0
  n.execution = 'auto'          # 'auto' | 'switch_vjp' | 'switch_remat' | 'switch' | 'masked'
  n.path_groups = 0             # 0: a path per device; G > 0: G paths a step, each on 1/G of
  #                               the global batch, drawn from global indices: the same
  #                               run on any device count dividing G (not with 'masked')
  n.genotype = ()               # non-empty: train this fixed child only (no search)
  n.random_genotype = False     # True: train a child drawn uniformly with config.seed (within
  #                               `budget`): the random control of docs/method.md 3c
  n.alpha_init_mean = 1.0       # alpha ~ N(mean, std)
  n.alpha_init_std = 0.01
  n.optimizer = ml_collections.ConfigDict(
      {'name': 'adam', 'lr': 1e-3, 'b1': 0.5, 'b2': 0.999})  # alpha's optimizer
  n.warmup_steps = 0            # alpha frozen (no gradient, no optimizer state change) until
  n.warmup_epochs = 0           # both this many steps and this many epochs have passed
  n.fix_threshold = 0.3         # early fix when top1 - top2 prob >= this (>= 1: never)
  n.search_epochs = 0           # > 0: fix every layer to its argmax at the end of this epoch
  n.max_search_fraction = 0.3   # fix every layer still searching at this fraction of the run
  #                               (of its steps, or of the time budget's horizon); 0 = never
  n.resource = 'flops'          # 'flops' (multiply-adds) | 'params': what `budget` limits
  n.budget = 0.0                # 0: no constraint; else penalise while the sample exceeds it
  n.penalty_weight = 1.0        # penalty = weight * E_p[cost] / budget
  return n


FORBIDDEN = -1e9  # alpha of a candidate a layer does not allow (Space.allowed)


def settings(nas_config):
  """config.nas over default_config(): missing fields take their default."""
  n = config_util.merge(default_config(), nas_config, 'config.nas (dsnas)')
  if n.resource not in ('flops', 'params'):
    raise ValueError(f"config.nas.resource={n.resource!r}: use 'flops' or 'params'")
  return n


def auto_execution(backend=None):
  """Measured in benchmarks/single_path.py (shufflenet_small, 28 px, batch 64, CPU):
  'switch_remat' 0.85-0.95x the derived child's step time and 0.38x its memory (it keeps
  only layer inputs and recomputes the chosen block); 'switch_vjp' 1.03-1.11x time, 1.32x
  memory; 'masked' (all K) 3.4x time, 3.6x memory. GPU: see the README's table."""
  backend = backend or jax.default_backend()
  return 'switch_remat' if backend == 'cpu' else 'switch_vjp'


def frozen_while_zero(tx):
  """Leaves the inner state untouched on all-zero gradients (warm-up, finished search),
  so Adam's moments and bias correction start with the first real alpha gradient."""

  def update(grads, state, params=None):
    updates, new = tx.update(grads, state, params)
    live = jnp.any(jnp.stack([jnp.any(g != 0) for g in jax.tree_util.tree_leaves(grads)]))
    keep = lambda a, b: jnp.where(live, a, b)
    return (jax.tree_util.tree_map(lambda u: jnp.where(live, u, 0), updates),
            jax.tree_util.tree_map(keep, new, state))

  return optax.GradientTransformation(tx.init, update)


def _with_nas_state(state, host):
  """state with nas_state set from host values, on the devices (and dtypes) it had."""
  put = lambda h, old: jax.device_put(np.asarray(h, old.dtype), old.sharding)
  return state.replace(nas_state=jax.tree_util.tree_map(put, host, state.nas_state))


class ChoiceStrategy(base.Strategy):
  """What DSNAS's search and its fixed child (choice_fixed.ChoiceFixed) share: the choice
  space and its costs, the child network of a genotype and its summary."""
  init_on_host = True  # host_init.variables
  default_config = staticmethod(default_config)

  def __init__(self, config, num_classes, image_shape):
    self.cfg = n = settings(config.nas)
    self.space = choice_space.build(n, config.model.bn_momentum)
    self.mask = self.space.mask  # [L, K]: the candidates each layer may take
    self.num_classes = num_classes
    self.costs = choice_space.count_costs(self.space, tuple(image_shape), num_classes)
    self.execution = auto_execution() if n.execution == 'auto' else n.execution
    self.path_groups = int(n.path_groups)
    if self.path_groups < 0 or (self.path_groups and self.execution == 'masked'):
      raise ValueError(f'config.nas.path_groups={n.path_groups}: use 0 (a path per device) '
                       "or a positive count with a single-path execution (not 'masked')")

  def _init_variables(self, k_net, dummy):
    # filled on the host from one abstract trace (host_init): eager init was a compile
    # per parameter shape (the ImageNet SPOS supernet 48 s here, the suite's 2-layer one
    # 12.7 s)
    L = self.space.num_layers
    return host_init.variables(lambda x: self.net.init(jax.random.PRNGKey(0), x,
                                                       jnp.zeros(L, jnp.int32), None,
                                                       train=False), k_net, dummy)

  def genotype_of(self, arch, nas_state):
    """The genotype the state holds: one candidate index per layer."""
    raise NotImplementedError

  def metrics(self, arch, nas_state):
    g = self.genotype_of(arch, nas_state)
    return {'nas/genotype': ''.join(str(i) for i in g),
            'nas/child_mflops': self.costs.of(g)[0] / 1e6}

  def _architecture(self, arch, nas_state):
    g = self.genotype_of(arch, nas_state)
    out = {'genotype': g, 'genotype_names': [self.space.choices[i] for i in g],
           'space': self.space.name}
    flops, params = self.costs.of(g)
    out.update(flops=flops, params=params)
    return out

  def summary(self, arch, nas_state):
    out = self._architecture(arch, nas_state)
    return {'architecture': out, 'child_mflops': out.get('flops', 0) / 1e6,
            'child_mparams': out.get('params', 0) / 1e6}

  def child(self, state):
    """(module, variables, genotype) of the derived child: a plain ChoiceNet with a fixed
    genotype and the searched weights restricted to its blocks."""
    g = self.genotype_of(state.params['arch'], state.nas_state)
    variables = {'params': choice_space.child_variables(state.params['net'], g),
                 'batch_stats': choice_space.child_variables(state.batch_stats, g)}
    return self.child_module(g), variables, g

  def child_module(self, genotype):
    return choice_space.ChoiceNet(self.space, self.num_classes, tuple(genotype),
                                  bn_axis_name=None)


@base.STRATEGIES.register('dsnas')
class DSNAS(base.Search, base.FixedGenotype, ChoiceStrategy):
  """Single-path search over a choice space (dha_jax/nas/base.py's contract). With
  config.nas.genotype (or random_genotype) the same name trains that one genotype: the
  constructor gives a choice_fixed.ChoiceFixed, so the configs and checkpoints of the
  'random' and 'sequential' variants keep strategy 'dsnas'."""
  fixed_counterpart = 'dsnas'
  added_fields = {'path_groups': 0}
  may_differ = ('max_search_fraction',)

  def __new__(cls, config, num_classes, image_shape):
    nas_config = config.nas
    if cls is DSNAS and (tuple(nas_config.get('genotype', ())) or
                         nas_config.get('random_genotype', False)):
      fixed = base.STRATEGIES.get('choice_fixed')
      strategy = object.__new__(fixed)
      strategy.__init__(config, num_classes, image_shape)
      return strategy
    return super().__new__(cls)

  @classmethod
  def configure_random(cls, nas_config):
    nas_config.random_genotype = True

  @classmethod
  def configure_derived(cls, nas_config):
    nas_config.genotype = ()

  @classmethod
  def genotype_flag(cls, genotype):
    """A choice-space genotype: one candidate index per layer, as a tuple."""
    return '--config.nas.genotype=(' + ','.join(str(int(i)) for i in genotype) + ',)'

  def __init__(self, config, num_classes, image_shape):
    super().__init__(config, num_classes, image_shape)
    self.rng_scope = 'global' if self.path_groups else 'device'
    self.max_search_fraction = float(self.cfg.max_search_fraction)
    self.net = choice_space.ChoiceNet(self.space, num_classes, None)

  def program_key(self):
    return None

  # ------------------------------------------------------------------ in the step

  def init(self, rng, dummy):
    k_net, k_alpha = jax.random.split(rng)
    L, K = self.space.num_layers, self.space.num_choices
    v = self._init_variables(k_net, dummy)
    alpha = self.cfg.alpha_init_mean + self.cfg.alpha_init_std * jax.random.normal(
        k_alpha, (L, K))
    # A forbidden candidate's logit: exp() of it is exactly 0 in float32, so it is never
    # sampled nor argmax, has probability 0 in every report and a zero gradient.
    alpha = jnp.where(self.mask, alpha, FORBIDDEN)
    nas_state = {'step': jnp.zeros((), jnp.int32), 'epoch': jnp.zeros((), jnp.int32),
                 'fixed': jnp.zeros(L, bool), 'choice': jnp.zeros(L, jnp.int32)}
    return v['params'], v.get('batch_stats', {}), {'alpha': alpha}, nas_state

  def _active(self, nas_state):
    """alpha learns: past warm-up and still searching (traced bool)."""
    return ((nas_state['step'] >= self.cfg.warmup_steps)
            & (nas_state['epoch'] >= self.cfg.warmup_epochs) & self.searching(nas_state))

  def _learnable(self, arch, nas_state):
    """alpha where it gets a gradient (active, unfixed rows), stopped elsewhere."""
    live = self._active(nas_state) & ~nas_state['fixed'][:, None]
    return jnp.where(live, arch['alpha'], jax.lax.stop_gradient(arch['alpha']))

  def choose(self, arch, nas_state, rng):
    """Per-layer block index: a sample (rng given) or the argmax; fixed layers fixed."""
    alpha = arch['alpha']
    s = (jnp.argmax(alpha, -1) if rng is None else
         jax.random.categorical(rng, jax.nn.log_softmax(alpha, -1), axis=-1))
    return jnp.where(nas_state['fixed'], nas_state['choice'], s).astype(jnp.int32)

  def forward(self, net, batch_stats, choices, scales, images, train, space=None):
    """The supernet on the path `choices`."""
    variables = {'params': net, 'batch_stats': batch_stats}
    return choice_space.forward(space or self.space, self.num_classes, variables, images,
                                choices, scales, train, self.execution)

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    if train and self.path_groups:  # [groups of this device, L]
      keys = jax.vmap(lambda g: jax.random.fold_in(rng, g))(self._groups(images.shape[0]))
      s = jax.vmap(lambda k: self.choose(arch, nas_state, k))(keys)
    else:  # [L]
      s = self.choose(arch, nas_state, rng if train else None)
    logp = jax.nn.log_softmax(self._learnable(arch, nas_state), -1)
    logp = jnp.broadcast_to(logp, s.shape + logp.shape[-1:])
    logp_s = jnp.take_along_axis(logp, s[..., None], -1)[..., 0]
    z = jnp.exp(logp_s - jax.lax.stop_gradient(logp_s))
    logits, bs = self.forward(net, batch_stats, s, z, images, train)
    return logits, bs, {'choice': s}

  def _groups(self, local_batch):
    """Global indices of this device's path groups (inside the step: static sizes)."""
    devices = jax.lax.axis_size(parallel.AXIS)
    local = self.path_groups // devices
    if self.path_groups % devices or local_batch % local:
      raise ValueError(f'config.nas.path_groups={self.path_groups} must be a multiple of '
                       f'the {devices} devices and divide the batch ({local_batch} a device)')
    return parallel.device_index() * local + jnp.arange(local)

  def arch_loss(self, arch, nas_state, aux):
    """Eq. (1)'s constraint: weight * E_p[cost] / budget while the sample exceeds it."""
    if not self.cfg.budget:
      return jnp.zeros(())
    table, fixed = self.costs.table(self.cfg.resource)
    table = jnp.asarray(table, jnp.float32)
    choice = jnp.atleast_2d(aux['choice'])  # [path groups, L]
    sampled = fixed + jnp.sum(jnp.take_along_axis(table[None], choice[..., None], -1),
                              axis=(1, 2))
    p = jax.nn.softmax(self._learnable(arch, nas_state), -1)
    expected = fixed + jnp.sum(p * table)
    over = sampled > self.cfg.budget  # per group, averaged as the devices' penalties are
    return jnp.mean(jnp.where(over, self.cfg.penalty_weight * expected / self.cfg.budget,
                              0.0))

  def optimizer(self):
    return frozen_while_zero(optim.group_optimizer(self.cfg.optimizer))

  def searching(self, nas_state):
    return ~jnp.all(nas_state['fixed'])

  def keep_fixed(self, old_arch, new_arch, nas_state):
    keep = nas_state['fixed'][:, None] | ~self._active(nas_state)
    return {'alpha': jnp.where(keep, old_arch['alpha'], new_arch['alpha'])}

  def after_step(self, nas_state, aux):
    return dict(nas_state, step=nas_state['step'] + 1)

  # ------------------------------------------------------------------ on the host

  def end_of_epoch(self, state, epoch):
    """Early fix (top1 - top2 >= threshold) and the end of the search at search_epochs."""
    ns = jax.device_get(state.nas_state)
    fixed, choice = np.array(ns['fixed']), np.array(ns['choice'])
    p = np.asarray(jax.nn.softmax(jax.device_get(state.params['arch']['alpha']), -1))
    warm = (int(ns['step']) >= self.cfg.warmup_steps and epoch >= self.cfg.warmup_epochs)
    top2 = np.sort(p, -1)[:, -2:]
    new = ~fixed & warm & (top2[:, 1] - top2[:, 0] >= self.cfg.fix_threshold)
    if self.cfg.search_epochs and epoch >= self.cfg.search_epochs:
      new = ~fixed
    choice = np.where(new, np.argmax(p, -1), choice).astype(np.int32)
    host = dict(ns, fixed=fixed | new, choice=choice, epoch=np.int32(epoch))
    return _with_nas_state(state, host)

  def stop_search(self, state):
    """Every layer still searching fixed at its argmax (the search cap, docs/method.md 3c)."""
    ns = jax.device_get(state.nas_state)
    p = np.asarray(jax.device_get(state.params['arch']['alpha']))
    fixed = np.asarray(ns['fixed'])
    host = dict(ns, fixed=np.ones_like(fixed),
                choice=np.where(fixed, ns['choice'], np.argmax(p, -1)).astype(np.int32))
    return _with_nas_state(state, host)

  def genotype_of(self, arch, nas_state):
    ns = jax.device_get(nas_state)
    arg = np.argmax(np.asarray(jax.device_get(arch['alpha'])), -1)
    return [int(g) for g in np.where(ns['fixed'], ns['choice'], arg)]

  def metrics(self, arch, nas_state):
    out = super().metrics(arch, nas_state)
    p = np.asarray(jax.nn.softmax(jax.device_get(arch['alpha']), -1))
    out['nas/fixed_layers'] = int(np.sum(jax.device_get(nas_state['fixed'])))
    out['nas/mean_max_prob'] = float(p.max(-1).mean())
    out.update({f'nas/max_prob/{l}': float(v) for l, v in enumerate(p.max(-1))})
    return out

  def _architecture(self, arch, nas_state):
    out = super()._architecture(arch, nas_state)
    out['probabilities'] = np.asarray(
        jax.nn.softmax(jax.device_get(arch['alpha']), -1)).round(4).tolist()
    out['fixed'] = np.asarray(jax.device_get(nas_state['fixed'])).tolist()
    return out

  def pictures(self, arch, nas_state):
    """{'arch': heat map of p(alpha) per layer, the current genotype marked}."""
    p = np.asarray(jax.nn.softmax(jax.device_get(arch['alpha']), -1))
    return {'arch': choice_space.probability_figure(p, self.space.choices,
                                                    self.genotype_of(arch, nas_state))}
