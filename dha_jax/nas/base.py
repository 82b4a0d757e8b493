"""The architecture strategy contract: what the train step and the loop call.

`Strategy` is what every strategy is (a fixed network is one): its network, its derived
child and what it reports. What only some strategies do is an opt-in mixin, reached
through a property that is the strategy itself when it mixes the part in and a shared
"does nothing" part otherwise, so the step and the loop call every part the same way:

  Search          alpha: its optimizer and loss, the search phase and its end
                  (strategy.search)
  SparseExecution weights the network leaves unused: kept outside the step or masked,
                  a step per static structure (strategy.sparse)
  FixedGenotype   trains one given genotype of a space: how a genotype reaches its config
                  (the 'random' and 'sequential' variants)
"""

import abc

import jax.numpy as jnp
import optax

from dha_jax.core import registry

# Every strategy, by the name config.nas.strategy takes: `@STRATEGIES.register(name)` on
# the class (dha_jax/nas/__init__.py imports each module of the package).
STRATEGIES = registry.Registry('config.nas.strategy')


class Search:
  """Opt-in part of a strategy with architecture parameters alpha. Its defaults are a
  fixed network's (no alpha, never searching): NO_SEARCH is that part alone."""

  # 'train': alpha's gradient comes from the training loss, in theta's jax.grad;
  # 'val': the step takes it on the held-out batch instead (first-order DARTS).
  arch_objective: str = 'train'
  # The registered strategy (a FixedGenotype) that trains one genotype of this strategy's
  # space (the 'sequential' and 'random' variants); None: no such variants.
  fixed_counterpart = None
  # Fraction of the run after which whatever still searches is fixed (stop_search); 0: no
  # cap. A searching strategy sets it from its config.nas.max_search_fraction.
  max_search_fraction = 0.0

  @property
  def search(self):
    """This strategy's search part: itself."""
    return self

  def optimizer(self):
    """optax transform for params['arch']."""
    return optax.identity()

  def searching(self, nas_state):
    """Bool scalar: True while alpha still moves (the search phase)."""
    del nas_state
    return jnp.zeros((), bool)

  def arch_loss(self, arch, nas_state, aux):
    """Extra scalar loss on alpha (e.g. a resource penalty)."""
    del arch, nas_state, aux
    return jnp.zeros(())

  def keep_fixed(self, old_arch, new_arch, nas_state):
    """alpha after the step (e.g. the parts already fixed put back)."""
    del old_arch, nas_state
    return new_arch

  def after_step(self, nas_state, aux):
    """nas_state after the step (e.g. DSNAS's moving statistics)."""
    del aux
    return nas_state

  def end_of_epoch(self, state, epoch):
    """TrainState after an epoch: fixing, recovery, ... (host side)."""
    del epoch
    return state

  def stop_search(self, state):
    """TrainState with every layer / node still searching fixed (max_search_fraction)."""
    return state

  def pictures(self, arch, nas_state):
    """{name: matplotlib Figure} of the current architecture (<workdir>/<name>.png)."""
    del arch, nas_state
    return {}

  def run_pictures(self, metrics_rows):
    """{name: Figure} drawn once at the end from metrics.jsonl's rows (a history)."""
    del metrics_rows
    return {}


NO_SEARCH = Search()


class SparseExecution:
  """Opt-in part of a strategy whose network leaves some weights unused (ISTA's support,
  a traced genotype). Its defaults use every weight: DENSE is that part alone."""

  # True when active_net can leave weights out: the compiled step is then called with
  # only the weights it changes (sparse_update.SkipInactive); False calls it directly.
  skips_inactive = False

  @property
  def sparse(self):
    """This strategy's sparse-execution part: itself."""
    return self

  def active_net(self, net_params):
    """Static bools like net_params (the weights the compiled network uses; the rest stay
    outside the step, sparse_update.SkipInactive), or None: every weight is used."""
    del net_params

  def active_mask(self, net_params, nas_state):
    """Traced bools like net_params when only the step knows which weights it uses (a
    traced ISTA support; unused ones keep their value and optimizer state), or None."""
    del net_params, nas_state

  def static_key(self, nas_state_host):
    """Hashable structure the step is specialised to (the loop compiles one step per key:
    e.g. a static ISTA support), or None: one step for the whole run."""
    del nas_state_host

  def specialize(self, key):
    """A new strategy whose step is specialised to `key` (self for None)."""
    del key
    return self


DENSE = SparseExecution()


class FixedGenotype:
  """Opt-in part of a strategy that trains one given genotype of a search space (a
  Search's fixed_counterpart): how a genotype reaches its config."""

  @classmethod
  @abc.abstractmethod
  def configure_random(cls, nas_config):
    """Sets `nas_config` (this strategy's) to draw its genotype from config.seed."""

  @classmethod
  @abc.abstractmethod
  def configure_derived(cls, nas_config):
    """Sets `nas_config` to the placeholder a derived genotype's flag replaces."""

  @classmethod
  @abc.abstractmethod
  def genotype_flag(cls, genotype):
    """The --config.nas.* flag that trains `genotype` (result.json's, as JSON)."""


class Strategy(abc.ABC):
  """Base of every strategy registered in STRATEGIES.

  Constructed as cls(config, num_classes, image_shape) (the model's input, H x W x C)
  and immutable after: whatever it derives (costs, a random genotype) is computed there,
  never in init() or at trace time.
  """

  # Constants the step and the loop read:
  # Weight of aux['aux_logits'] (an auxiliary head, DARTS cell networks) in the loss.
  aux_weight: float = 0.0
  # 'device': apply() gets the step's key with the device index folded in (a draw per
  # device); 'global': the step's key itself, from which the strategy folds in global
  # indices (draws that do not depend on how the batch is split over devices).
  rng_scope = 'device'
  # True when init() fills the variables on the host from a concrete key (numpy,
  # nas/host_init.py: the supernets, whose init compiled as one program took minutes on
  # a CPU); train.setup builds the state eagerly then, otherwise as one compiled program.
  init_on_host = False
  # config.nas fields that reach the step only as arrays (nas_state): left out of the key
  # the loop keeps compiled steps under (train.StepCache, compile_cache.py), as is
  # config.seed, so runs that differ only there share one program.
  data_fields = ()
  # config.nas fields this strategy added after runs existed, each with the value that
  # means the behaviour from before (checkpoint.py: an older checkpoint still resumes).
  added_fields = {}
  # config.nas fields a resumed run may change (they steer the search, not the program).
  may_differ = ()

  @classmethod
  def default_config(cls):
    """config.nas with every field and its default, or None: no settings (fixed net)."""
    return None

  @abc.abstractmethod
  def init(self, rng, dummy_images):
    """-> (net_params, batch_stats, arch_params, nas_state)."""

  @abc.abstractmethod
  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    """-> (logits, new batch_stats, aux dict) of the network this step runs."""

  @abc.abstractmethod
  def child(self, state):
    """-> (module, variables, JSON genotype) of the derived network (BN axis None)."""

  @abc.abstractmethod
  def child_module(self, genotype):
    """The child's module rebuilt from its genotype alone (export.load_model)."""

  def program_key(self):
    """Static structure the config's key misses (a genotype from config.seed), or None."""
    return None

  def metrics(self, arch, nas_state):
    """Scalars (and short strings) logged with the step's metrics."""
    del arch, nas_state
    return {}

  def summary(self, arch, nas_state):
    """Entries of result.json (genotype, FLOPs, parameters)."""
    del arch, nas_state
    return {}

  @property
  def search(self):
    """The Search part: the strategy itself when it mixes Search in, else NO_SEARCH."""
    return NO_SEARCH

  @property
  def sparse(self):
    """The SparseExecution part: the strategy itself when mixed in, else DENSE."""
    return DENSE
