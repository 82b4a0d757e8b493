"""Pure, compiled step functions. No I/O, no Python side effects.

train_step does, for one batch (docs/method.md section 1): standard pre-processing and the
augmentation policy on device, the network forward through the architecture strategy,
per-sample losses, ONE jax.grad for theta, alpha and tau (alpha on the held-out batch for
a bi-level strategy), then the updates: theta and eta in update_theta_and_eta (eta's
hypergradient goes through theta's step), alpha and tau by their own optimizers. Every
gradient is averaged over the 'data' axis.
"""

import jax
import jax.numpy as jnp
import optax

from dha_jax.augment import preprocess
from dha_jax.core import parallel
from dha_jax.training import sparse_update


def sample_keys(step_key, batch_size):
  """One key per sample, from its GLOBAL index: the same on 1 and on N devices."""
  first = parallel.device_index() * batch_size
  return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(first + jnp.arange(batch_size))


def cross_entropy(logits, labels, smoothing=0.0):
  """Per-sample cross-entropy with optional label smoothing."""
  onehot = jax.nn.one_hot(labels, logits.shape[-1])
  if smoothing:
    onehot = onehot * (1 - smoothing) + smoothing / logits.shape[-1]
  return optax.softmax_cross_entropy(logits, onehot)


def heldout_scores(sample_losses, net, val_grad, lr):
  """lr <grad l_k, grad L_val> per sample k: the first-order decrease of the held-out loss
  that sample k's share of theta's step brings (config.policy.objective='val';
  augment/learned.py). One JVP of the per-sample loss vector along val_grad. lr: the
  step's learning rate, a scalar or one per parameter group (hpo.per_group)."""
  if jnp.ndim(lr):
    from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
    val_grad = jax.tree_util.tree_map(lambda t: t * lr[hypergrad.group_index(t)], val_grad)
    lr = 1.0
  _, along = jax.jvp(sample_losses, (net,), (val_grad,))
  return lr * along


class Components:
  """The static parts a step closes over: strategy, policy, eta handler, optimizers."""

  def __init__(self, config, strategy, policy, hpo, txs, lr_factor):
    self.config, self.strategy, self.policy, self.hpo = config, strategy, policy, hpo
    self.txs, self.lr_factor = txs, lr_factor
    self.aux_weight = float(strategy.aux_weight)
    self.arch_objective = strategy.search.arch_objective
    # the extra batches the step reads, from the declared objectives (train.py feeds them)
    self.feeds_arch_batch = self.arch_objective == 'val'  # 'arch_image', 'arch_label'
    self.feeds_hpo_batch = hpo.objective in ('val', 'train', 'forward')  # 'hpo_image', ...
    self.feeds_policy_batch = policy.objective == 'val'  # 'policy_image', 'policy_label'

  def inactive_net(self, net_params):
    """Weights the strategy's network does not use this step (static; none by default)."""
    active = self.strategy.sparse.active_net(net_params)
    if active is None:
      return frozenset()
    return sparse_update.inactive_paths(net_params, active)

  def active_mask(self, net_params, nas_state):
    """Traced flags of the weights used this step when only the step knows them (ISTA's
    traced support: strategy.active_mask), else None."""
    return self.strategy.sparse.active_mask(net_params, nas_state)

  def modules(self):
    """The modules defining the components (their source is part of a compiled step's
    identity on disk: compile_cache.py)."""
    return tuple(sorted({type(x).__module__ for x in (self.strategy, self.policy, self.hpo)}))

  def with_strategy(self, strategy):
    """The same components around another (e.g. support-specialised) strategy."""
    return Components(self.config, strategy, self.policy, self.hpo, self.txs,
                      self.lr_factor)

  def prepare_eval(self, images):
    d = self.config.dataset
    x = preprocess.eval_transform(preprocess.to_float(images), self.config.preprocess)
    return preprocess.normalize(x, d.mean, d.std)

  def eta(self, step, hparams, horizon):
    """eta as the optimizer takes it at this step (learned value x base schedule, which
    ends at `horizon` steps: TrainState.horizon, fixed by a time budget's pilot)."""
    v = dict(self.hpo.values(hparams))
    if self.hpo.use_schedule:
      v['learning_rate'] = v['learning_rate'] * self.lr_factor(step, horizon)
    return v


def make_train_step(c: Components):
  cfg = c.config

  def train_step(state, batch):
    step_key = jax.random.fold_in(state.rng, state.step)
    k_data, k_policy, k_arch = jax.random.split(step_key, 3)
    labels = batch['label']
    n = labels.shape[0]
    images = preprocess.train_transform(preprocess.to_float(batch['image']),
                                        sample_keys(k_data, n), cfg.preprocess)
    searching = c.strategy.search.searching(state.nas_state)
    images, pol_aux = c.policy.augment(state.params['policy'], images, k_policy,
                                       sample_keys(k_policy, n), searching)
    images = preprocess.normalize(images, cfg.dataset.mean, cfg.dataset.std)
    # Each device samples its own architecture (DSNAS), unless the strategy draws from
    # global indices (rng_scope 'global'); augmentations are per sample.
    arch_key = (k_arch if c.strategy.rng_scope == 'global' else
                jax.random.fold_in(k_arch, parallel.device_index()))

    def val_loss(net_params, arch, prefix='arch_'):
      """An un-augmented extra batch, same architecture sample: the held-out one of
      first-order DARTS ('arch_'), of tau's held-out objective ('policy_') or eta's
      ('hpo_')."""
      x = c.prepare_eval(batch[prefix + 'image'])
      logits, _, _ = c.strategy.apply(net_params, state.batch_stats, arch, state.nas_state,
                                      x, arch_key, train=True)
      return jnp.mean(cross_entropy(logits, batch[prefix + 'label'], cfg.label_smoothing))

    def sample_losses(net_params):
      logits, _, _ = c.strategy.apply(net_params, state.batch_stats, state.params['arch'],
                                      state.nas_state, images, arch_key, train=True)
      return cross_entropy(logits, labels, cfg.label_smoothing)

    scores = None  # tau's per-sample scores: the training losses unless 'val'
    if c.feeds_policy_batch:
      net = state.params['net']
      val_grad = parallel.pmean(jax.grad(lambda p: val_loss(p, state.params['arch'],
                                                            'policy_'))(net))
      scores = heldout_scores(sample_losses, net, val_grad,
                              c.eta(state.step, state.hparams, state.horizon)['learning_rate'])

    # Weights the network does not use get no gradient at all (not even zeros); with a
    # traced support, exact zeros, and `mask` keeps them and their optimizer state.
    inactive = c.inactive_net(state.params['net'])
    mask = c.active_mask(state.params['net'], state.nas_state)

    def loss_fn(params):
      net = sparse_update.restore(params['net'], state.params['net'], inactive)
      logits, new_bs, aux = c.strategy.apply(net, state.batch_stats,
                                             params['arch'], state.nas_state, images,
                                             arch_key, train=True)
      losses = cross_entropy(logits, labels, cfg.label_smoothing)
      if c.aux_weight and 'aux_logits' in aux:  # auxiliary head (DARTS cell networks)
        losses = losses + c.aux_weight * cross_entropy(aux.pop('aux_logits'), labels,
                                                       cfg.label_smoothing)
      loss = jnp.mean(losses)
      total = (loss + c.strategy.search.arch_loss(params['arch'], state.nas_state, aux)
               + c.policy.loss(params['policy'], pol_aux,
                               jax.lax.stop_gradient(losses if scores is None else scores)))
      acc = jnp.mean(jnp.argmax(logits, -1) == labels)
      return total, (loss, acc, new_bs, aux)

    grads, (loss, acc, new_bs, aux) = jax.grad(loss_fn, has_aux=True)(
        dict(state.params, net=sparse_update.prune(state.params['net'], inactive)))
    if c.feeds_arch_batch:  # bi-level (first-order DARTS): alpha on val while searching
      grads['arch'] = jax.lax.cond(
          searching, lambda: jax.grad(lambda a: val_loss(state.params['net'], a))(
              state.params['arch']), lambda: grads['arch'])
    grads = parallel.pmean(grads)

    def hpo_loss(net_params):
      """L_hpo at theta_{t+1} (or at theta_t for 'forward'): the HPO batch."""
      return val_loss(net_params, state.params['arch'], 'hpo_')

    # theta: the optimizer step with eta (and eta's own step when it is learned: its
    # hypergradient through that same step), on the weights this step's network uses.
    upd = sparse_update.update_theta_and_eta(
        c.hpo, inactive, tx=c.txs['net'],
        opt_state=state.opt_state['net'], params=state.params['net'],
        grads=grads['net'], hparams=state.hparams, hp_opt_state=state.opt_state['hparams'],
        eta_fn=lambda hp: c.eta(state.step, hp, state.horizon),
        hpo_loss=hpo_loss if c.feeds_hpo_batch else None, mask=mask)
    new_params = {'net': upd.params}
    new_opt = {'net': upd.opt_state, 'hparams': upd.hp_opt_state}
    # alpha and tau: one optimizer step each on their gradients from the jax.grad above
    for g in ('arch', 'policy'):
      updates, new_opt[g] = c.txs[g].update(grads[g], state.opt_state[g], state.params[g])
      new_params[g] = optax.apply_updates(state.params[g], updates)
    new_params['arch'] = c.strategy.search.keep_fixed(state.params['arch'], new_params['arch'],
                                               state.nas_state)
    new_state = state.replace(step=state.step + 1, params=new_params, opt_state=new_opt,
                              hparams=upd.hparams,
                              batch_stats=parallel.pmean(new_bs),
                              nas_state=c.strategy.search.after_step(state.nas_state, aux))
    metrics = parallel.pmean({'train/loss': loss, 'train/accuracy': acc})
    metrics.update(upd.metrics)
    return new_state, metrics

  return train_step


def make_eval_step(c: Components, logits_fn=None):
  """Sums of loss, top-1/top-5 hits and counts over the masked batch (psum'd).
  logits_fn(model, images): default runs the strategy on a TrainState `model`; the
  export passes the derived child's apply on its variables instead."""

  def strategy_logits(state, images):
    return c.strategy.apply(state.params['net'], state.batch_stats, state.params['arch'],
                            state.nas_state, images, None, train=False)[0]

  logits_fn = logits_fn or strategy_logits

  def eval_step(model, batch):
    logits = logits_fn(model, c.prepare_eval(batch['image']))
    mask = batch['mask']
    losses = cross_entropy(logits, batch['label'])
    top5 = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    hit5 = jnp.any(top5 == batch['label'][:, None], axis=-1)
    out = {'loss': jnp.sum(losses * mask),
           'correct': jnp.sum((jnp.argmax(logits, -1) == batch['label']) * mask),
           'correct5': jnp.sum(hit5 * mask), 'count': jnp.sum(mask)}
    return parallel.psum(out)

  return eval_step


def sharded_train_step(c: Components, mesh):
  """The train step as jit(shard_map) over `mesh` (the state donated)."""
  R, S = parallel.REPLICATED, parallel.SHARDED
  return parallel.data_parallel(make_train_step(c), mesh, (R, S), (R, R), donate_argnums=(0,))


def compile_steps(c: Components, mesh, wrap=None):
  """(train_step, eval_step), jitted. wrap(jitted, name), if given, wraps each top-level
  step (the loop keeps their executables: compile_cache.Executables.wrap)."""
  R, S = parallel.REPLICATED, parallel.SHARDED
  wrap = wrap or (lambda fn, name: fn)
  train = sharded_train_step(c, mesh)
  if c.strategy.sparse.skips_inactive:  # weights its network does not use stay outside the call
    train = sparse_update.SkipInactive(train, c.inactive_net)  # (jitted again inside it)
  else:
    train = wrap(train, 'train')
  evaluate = wrap(parallel.data_parallel(make_eval_step(c), mesh, (R, S), R), 'eval')
  return train, evaluate
