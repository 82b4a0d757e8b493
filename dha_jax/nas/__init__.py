"""Architecture strategies. A strategy owns the network forward: it may sample a child
(DSNAS), weight a sparse cell (ISTA) or just run a fixed network ('none').

A strategy is registered by name here; the train step never changes for a new one.
Interface (see fixed.FixedNetwork for the simplest complete example):
  init(rng, dummy_images) -> (net_params, batch_stats, arch_params, nas_state)
  apply(net, batch_stats, arch, nas_state, images, rng, train) -> (logits, batch_stats, aux)
  arch_loss(arch, nas_state, aux) -> extra scalar loss on alpha (e.g. resource penalty)
  optimizer() -> optax transform for params['arch']
  searching(nas_state) -> bool scalar: True while alpha still moves (search phase)
  mask_update(old_arch, new_arch, nas_state) -> arch after the step (e.g. frozen parts kept)
  after_step(nas_state, aux) -> nas_state (traced, inside the step)
  metrics(arch, nas_state) -> dict of scalars for logging
  end_of_epoch(state, epoch) -> state (host side, once per epoch: fixing, recovery, ...)
  summary(arch, nas_state) -> dict for result.json (genotype, FLOPs, parameters)
"""

from dha_jax.nas import fixed

STRATEGIES = {
    'none': fixed.FixedNetwork,
}


def register(name, cls):
  STRATEGIES[name] = cls


def create(config, num_classes):
  name = config.nas.strategy
  if name not in STRATEGIES:
    raise ValueError(f'config.nas.strategy={name!r} is unknown; choose one of '
                     f'{sorted(STRATEGIES)}')
  return STRATEGIES[name](config, num_classes)
