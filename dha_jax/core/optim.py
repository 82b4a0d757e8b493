"""The optax optimizers of every parameter group.

The network optimizer is wrapped in optax.inject_hyperparams so that eta (learning rate,
weight decay) lives inside its state and can be set, and differentiated, each step.
"""

import jax
import jax.numpy as jnp
import optax

NET_OPTIMIZERS = ('sgd', 'nesterov', 'adam', 'adamw')


def net_optimizer(cfg):
  """theta's optimizer: clip -> (coupled L2 | decoupled wd) -> SGD-momentum/Nesterov/Adam."""
  o = cfg.optimizer
  if o.name not in NET_OPTIMIZERS:
    raise ValueError(f'config.optimizer.name={o.name!r} is unknown; choose one of '
                     f'{NET_OPTIMIZERS}')

  def make(learning_rate, weight_decay):
    parts = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm else []
    if o.name == 'adamw':
      parts.append(optax.adamw(learning_rate, o.b1, o.b2, weight_decay=weight_decay))
      return optax.chain(*parts)
    parts.append(optax.add_decayed_weights(weight_decay))
    if o.name == 'adam':
      parts.append(optax.adam(learning_rate, o.b1, o.b2))
    else:
      parts.append(optax.sgd(learning_rate, o.momentum, nesterov=o.name == 'nesterov'))
    return optax.chain(*parts)

  return optax.inject_hyperparams(make)(learning_rate=cfg.lr, weight_decay=cfg.weight_decay)


def schedule_factor(cfg, steps_per_epoch: int, total_steps: int):
  """Multiplier of the learning rate, f(step, horizon): linear warm-up, then cosine (or
  constant) ending at step `horizon` (`total_steps` while it is 0, i.e. not fixed yet).
  The horizon is traced in the step (TrainState.horizon), so that a time budget can fix
  it after a pilot without a recompile (dha_jax/training/budget.py)."""
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  if cfg.schedule not in ('cosine', 'constant'):
    raise ValueError(f"config.schedule={cfg.schedule!r}: use 'cosine' or 'constant'")

  def factor(step, horizon):
    step = jnp.asarray(step, jnp.float32)
    if cfg.schedule == 'cosine':
      end = jnp.where(horizon > 0, horizon, total_steps).astype(jnp.float32)
      span = jnp.maximum(end - warmup, 1.0)
      done = jnp.clip((step - warmup) / span, 0.0, 1.0)
      base = 0.5 * (1.0 + jnp.cos(jnp.pi * done))
    else:
      base = jnp.ones_like(step)
    if warmup:
      return jnp.where(step < warmup, step / warmup, base)
    return base

  return factor


def group_optimizer(cfg):
  """Optimizer of a small parameter group (alpha, tau, eta) from a config block with
  name/lr/momentum/nesterov/b1/b2/weight_decay fields."""
  name = cfg.get('name', 'adam')
  wd = cfg.get('weight_decay', 0.0)
  if name == 'sgd':
    tx = optax.sgd(cfg.lr, cfg.get('momentum', 0.0) or None, nesterov=cfg.get('nesterov', False))
  elif name == 'adam':
    tx = optax.adam(cfg.lr, cfg.get('b1', 0.9), cfg.get('b2', 0.999))
  else:
    raise ValueError(f"optimizer name {name!r} is unknown for this group: use 'sgd' or 'adam'")
  return optax.chain(optax.add_decayed_weights(wd), tx) if wd else tx


def update_theta(tx, opt_state, params, grads, eta, groups=None):
  """theta_{t+1}: the run's optimizer step with eta injected -> (params, opt_state).

  groups (a tree of group indices like params; eta's values then have one entry per
  group): per-group eta through an exact rewrite. SGD/Nesterov/Adam/AdamW updates are
  linear in lr and see theta only as wd * theta, so inject lr = wd = 1, feed wd_g * theta
  and scale the update by lr_g; equal to the global update when every group holds the
  same eta."""
  if groups is None:
    updates, new_opt = tx.update(grads, set_hyperparams(opt_state, eta), params)
    return optax.apply_updates(params, updates), new_opt
  lr, wd = eta['learning_rate'], eta['weight_decay']
  unit = set_hyperparams(opt_state, {'learning_rate': 1.0, 'weight_decay': 1.0})
  scaled = jax.tree_util.tree_map(lambda p, g: wd[g].astype(p.dtype) * p, params, groups)
  updates, new_opt = tx.update(grads, unit, scaled)
  updates = jax.tree_util.tree_map(lambda d, g: lr[g].astype(d.dtype) * d, updates, groups)
  return optax.apply_updates(params, updates), new_opt


def set_hyperparams(opt_state, values: dict):
  """The inject_hyperparams state with eta replaced (values may be traced)."""
  hp = dict(opt_state.hyperparams)
  for k, v in values.items():
    hp[k] = jnp.asarray(v, jnp.asarray(hp[k]).dtype)
  return opt_state._replace(hyperparams=hp)
