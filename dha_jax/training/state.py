"""TrainState: ONE pytree with every parameter group, its optimizer state, the search
state and the PRNG key. A checkpoint is this pytree; nothing else is needed to resume."""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from dha_jax.layers import precision

PARAM_GROUPS = ('net', 'arch', 'policy')


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array
  params: dict        # {'net': theta, 'arch': alpha (or ISTA codes b), 'policy': tau}
  hparams: dict       # eta, in the space it is optimised in (see dha_jax/hpo)
  batch_stats: Any
  opt_state: dict     # {'net': inject_hyperparams state, 'arch', 'policy', 'hparams'}
  nas_state: Any      # non-differentiable search state (samples, masks, supports, ...)
  rng: jax.Array      # base key; step t uses fold_in(rng, t), so resume is exact
  horizon: jax.Array  # int32: the step at which the base lr schedule ends (a time budget
  #                     fixes it after a pilot: see train.Horizon)


def optimizers(config, strategy, policy):
  """One optax transform per parameter group (eta's is its handler's own)."""
  from dha_jax.core import optim  # pylint: disable=g-import-not-at-top
  return {'net': optim.net_optimizer(config), 'arch': strategy.search.optimizer(),
          'policy': policy.optimizer()}


def create(config, strategy, policy, hpo, txs, image_shape, rng,
           horizon: int) -> TrainState:
  """Initialises every group on the host (replicated later by the mesh)."""
  k_net, k_pol, k_state = jax.random.split(rng, 3)
  dummy = jnp.zeros((2,) + tuple(image_shape), jnp.float32)
  net, batch_stats, arch, nas_state = strategy.init(k_net, dummy)
  params = {'net': net, 'arch': arch, 'policy': policy.init(k_pol)}
  hparams = hpo.init()
  opt_state = {g: txs[g].init(params[g]) for g in PARAM_GROUPS}
  opt_state['hparams'] = hpo.init_opt_state(hparams, params['net'])
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params, hparams=hparams,
                     batch_stats=batch_stats, opt_state=opt_state, nas_state=nas_state,
                     rng=k_state, horizon=jnp.asarray(horizon, jnp.int32))
  return _in_float64(state) if precision.compute_dtype() == jnp.float64 else state


def _in_float64(tree):
  """Every float leaf as float64 (config.compute_dtype='float64', a numerics check)."""
  return jax.tree_util.tree_map(
      lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def run_once(fn, *args):
  """fn(*args) as one compiled program, for what a run computes once (its initial state).

  Run eagerly, the initialisers and optimizer states are a compile per op and shape (the
  suite's CNN state: 8.5 s of setup on this CPU, 0.9 s as one program). On CPU without
  LLVM's costly passes: speed does not matter for a program run once, and its compile
  is ~2x cheaper. (A supernet's random draws cost ~50 ms of compile each even so: its
  strategy fills them on the host, nas/host_init.py.)"""
  lowered = jax.jit(fn).lower(*args)
  options = None
  if jax.default_backend() == 'cpu':
    options = {'xla_backend_optimization_level': 0, 'xla_llvm_disable_expensive_passes': True}
  return lowered.compile(compiler_options=options)(*args)


def num_params(tree) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))
