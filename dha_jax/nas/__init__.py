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
  pictures(arch, nas_state) -> {name: matplotlib Figure} (<workdir>/<name>.png, TensorBoard)
  child(state) -> (module, variables, genotype): the derived network as a plain Flax
      module (BatchNorm axis None) with the searched weights, genotype JSON-serialisable
  child_module(genotype) -> that module rebuilt from the genotype alone (export.load_model)
  stop_search(state) -> state: fix every layer / node still searching (host side; the loop
      calls it at config.nas.max_search_fraction of the run)
Optional attributes / methods (the train loop uses defaults when absent):
  aux_weight: float, weight of aux['aux_logits'] (an auxiliary head) in the loss; 0.0
  arch_objective: 'train' (alpha from the training loss, in the same jax.grad) or 'val'
      (the step replaces alpha's gradient by that of the held-out batch 'arch_image')
  run_pictures(metrics_rows) -> {name: Figure} drawn once at the end from metrics.jsonl's
      rows (a history, e.g. ISTA's code movement against the freeze threshold)
  static_key(host_nas_state) -> hashable, and specialize(key) -> strategy: the loop
      compiles (and caches) the step per key, so structure that changes at most once
      per epoch (an ISTA support) can be static Python instead of traced switching
  active_net(net_params) -> static bools, and active_mask(net_params, nas_state) -> traced
      bools: the weights this step's network uses (the rest and their optimizer state are
      kept as they are: dha_jax/sparse_update.py)
"""

from dha_jax.nas import darts, dsnas, fixed, ista

STRATEGIES = {
    'none': fixed.FixedNetwork,
    'ista': ista.ISTA,
    'darts': darts.DARTS,
    'darts_fixed': darts.DartsFixed,
    'dsnas': dsnas.DSNAS,
}


# config.nas with every field of a strategy and its default (the configs start from it)
DEFAULT_CONFIGS = {
    'dsnas': dsnas.default_config,
    'ista': ista.default_config,
    'darts': darts.darts_config,
    'darts_fixed': darts.fixed_config,
}


def register(name, cls, default_config=None):
  STRATEGIES[name] = cls
  if default_config is not None:
    DEFAULT_CONFIGS[name] = default_config


def default_config(name):
  if name not in DEFAULT_CONFIGS:
    raise ValueError(f'no search settings for strategy {name!r}; choose one of '
                     f'{sorted(DEFAULT_CONFIGS)}')
  return DEFAULT_CONFIGS[name]()


def create(config, num_classes):
  name = config.nas.strategy
  if name not in STRATEGIES:
    raise ValueError(f'config.nas.strategy={name!r} is unknown; choose one of '
                     f'{sorted(STRATEGIES)}')
  return STRATEGIES[name](config, num_classes)
