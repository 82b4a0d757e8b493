"""The architecture strategy contract: everything the train step and the loop call.

A strategy owns the network forward. Required members are abstract; the others have the
behaviour of a fixed network (no alpha, nothing to search) and are overridden where a
strategy needs them. The step and the loop call every member directly, never through
getattr, so this class is the whole contract.
"""

import abc

import jax.numpy as jnp
import optax

from dha_jax import registry

# Every strategy, by the name config.nas.strategy takes: `@STRATEGIES.register(name)` on
# the class (dha_jax/nas/__init__.py imports each module of the package).
STRATEGIES = registry.Registry('config.nas.strategy')


class Strategy(abc.ABC):
  """Base of every strategy registered in STRATEGIES.

  Constructed as cls(config, num_classes, image_shape) (the model's input, H x W x C)
  and immutable after: whatever it derives (costs, a random genotype) is computed there,
  never in init() or at trace time.
  """

  # Weight of aux['aux_logits'] (an auxiliary head, DARTS cell networks) in the loss.
  aux_weight: float = 0.0
  # 'train': alpha's gradient comes from the training loss, in theta's jax.grad;
  # 'val': the step takes it on the held-out batch instead (first-order DARTS).
  arch_objective: str = 'train'
  # The registered strategy that trains one genotype of this strategy's space (the
  # 'sequential' and 'random' variants); None: not a search strategy.
  fixed_counterpart = None
  # True when active_net can leave weights out: the compiled step is then called with
  # only the weights it changes (sparse_update.SkipInactive); False calls it directly.
  skips_inactive = False
  # 'device': apply() gets the step's key with the device index folded in (a draw per
  # device); 'global': the step's key itself, from which the strategy folds in global
  # indices (draws that do not depend on how the batch is split over devices).
  rng_scope = 'device'
  # True when init() fills the variables on the host from a concrete key (numpy,
  # nas/host_init.py: the supernets, whose init compiled as one program took minutes on
  # a CPU); train.setup builds the state eagerly then, otherwise as one compiled program.
  init_on_host = False
  # Fraction of the run after which whatever still searches is fixed (stop_search); 0: no
  # cap. A searching strategy sets it from its config.nas.max_search_fraction.
  max_search_fraction = 0.0
  # config.nas fields this strategy added after runs existed, each with the value that
  # means the behaviour from before (checkpoint.py: an older checkpoint still resumes).
  added_fields = {}
  # config.nas fields a resumed run may change (they steer the search, not the program).
  may_differ = ()

  @classmethod
  def default_config(cls):
    """config.nas with every field of this strategy and its default, or None: it has
    no search settings (the fixed network)."""
    return None

  # A fixed counterpart (the strategy that trains one genotype) says how a genotype
  # reaches its config; compare.py's 'random' and 'sequential' variants call these.

  @classmethod
  def configure_random(cls, nas_config):
    """Sets `nas_config` (this strategy's) to draw its genotype from config.seed."""
    raise NotImplementedError(f'{cls.__name__} trains no genotype of a search space')

  @classmethod
  def configure_derived(cls, nas_config):
    """Sets `nas_config` to the placeholder a derived genotype's flag replaces."""
    raise NotImplementedError(f'{cls.__name__} trains no genotype of a search space')

  @classmethod
  def genotype_flag(cls, genotype):
    """The --config.nas.* flag that trains `genotype` (result.json's, as JSON) with
    this strategy."""
    raise NotImplementedError(f'{cls.__name__} trains no genotype of a search space')

  # ------------------------------------------------------------------ required

  @abc.abstractmethod
  def init(self, rng, dummy_images):
    """-> (net_params, batch_stats, arch_params, nas_state)."""

  @abc.abstractmethod
  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    """-> (logits, new batch_stats, aux dict) of the network this step runs."""

  @abc.abstractmethod
  def child(self, state):
    """-> (module, variables, genotype): the derived network as a plain Flax module
    (BatchNorm axis None) with the searched weights; genotype JSON-serialisable."""

  @abc.abstractmethod
  def child_module(self, genotype):
    """The child's module rebuilt from its genotype alone (export.load_model)."""

  # ----------------------------------------------------- in the step (traced)

  def arch_loss(self, arch, nas_state, aux):
    """Extra scalar loss on alpha (e.g. a resource penalty)."""
    del arch, nas_state, aux
    return jnp.zeros(())

  def optimizer(self):
    """optax transform for params['arch']."""
    return optax.identity()

  def searching(self, nas_state):
    """Bool scalar: True while alpha still moves (the search phase)."""
    del nas_state
    return jnp.zeros((), bool)

  def keep_fixed(self, old_arch, new_arch, nas_state):
    """alpha after the step (e.g. the parts already fixed put back)."""
    del old_arch, nas_state
    return new_arch

  def after_step(self, nas_state, aux):
    """nas_state after the step (e.g. DSNAS's moving statistics)."""
    del aux
    return nas_state

  def active_net(self, net_params):
    """Static bools like net_params (the weights the compiled network uses; the rest stay
    outside the step, sparse_update.SkipInactive), or None: every weight is used."""
    del net_params

  def active_mask(self, net_params, nas_state):
    """Traced bools like net_params when only the step knows which weights it uses (a
    traced ISTA support; unused ones keep their value and optimizer state), or None."""
    del net_params, nas_state

  # ------------------------------------------------------- on the host, the loop

  # config.nas fields that reach the step only as arrays (nas_state): left out of the key
  # the loop keeps compiled steps under (train.StepCache, compile_cache.py), as is
  # config.seed, so runs that differ only there share one program.
  data_fields = ()

  def program_key(self):
    """What of the network's static structure the config's key does not say (a genotype
    drawn from config.seed), or None: part of the key of the loop's compiled steps."""
    return None

  def static_key(self, nas_state_host):
    """Hashable structure the step is specialised to (the loop compiles one step per key:
    e.g. a static ISTA support), or None: one step for the whole run."""
    del nas_state_host

  def specialize(self, key):
    """A new strategy whose step is specialised to `key` (self for None)."""
    del key
    return self

  def end_of_epoch(self, state, epoch):
    """TrainState after an epoch: fixing, recovery, ... (host side)."""
    del epoch
    return state

  def stop_search(self, state):
    """TrainState with every layer / node still searching fixed (config.nas.
    max_search_fraction)."""
    return state

  def metrics(self, arch, nas_state):
    """Scalars (and short strings) logged with the step's metrics."""
    del arch, nas_state
    return {}

  def summary(self, arch, nas_state):
    """Entries of result.json (genotype, FLOPs, parameters)."""
    del arch, nas_state
    return {}

  def pictures(self, arch, nas_state):
    """{name: matplotlib Figure} of the current architecture (<workdir>/<name>.png)."""
    del arch, nas_state
    return {}

  def run_pictures(self, metrics_rows):
    """{name: Figure} drawn once at the end from metrics.jsonl's rows (a history)."""
    del metrics_rows
    return {}
