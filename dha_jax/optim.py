"""The optax optimizers of every parameter group.

The network optimizer is wrapped in optax.inject_hyperparams so that eta (learning rate,
weight decay) lives inside its state and can be set, and differentiated, each step.
"""

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
  """Multiplier of the learning rate at a step: warm-up then cosine or constant."""
  warmup = int(cfg.warmup_epochs * steps_per_epoch)
  if cfg.schedule == 'cosine':
    base = optax.cosine_decay_schedule(1.0, max(1, total_steps - warmup))
  elif cfg.schedule == 'constant':
    base = optax.constant_schedule(1.0)
  else:
    raise ValueError(f"config.schedule={cfg.schedule!r}: use 'cosine' or 'constant'")
  if warmup:
    return optax.join_schedules([optax.linear_schedule(0.0, 1.0, warmup), base], [warmup])
  return base


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
