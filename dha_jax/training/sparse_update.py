"""Sparse theta updates: the optimizer steps only the weights the compiled network uses.

An ISTA support evaluates 2 of the 7 ops per node, but theta holds every op's weights; a
dense optimizer step (clip, weight decay, momentum, the eta tangent) over all of them cost
more than the network itself on small inputs. A strategy that knows which weights its
network uses says so with `active_net(net_params)` (a pytree of Python bools); the step
then runs the optimizer, and the eta hypergradient, on those leaves alone and keeps the
others, weights and optimizer state, exactly as they were. This is what the reference's
PyTorch optimizers do for parameters whose .grad is None.

Leaves of the optimizer state are matched to weights by key path: an optax state holds
theta-shaped subtrees (momentum, Adam moments, eta tangents) whose paths end with the
weight's path. Inactive leaves become empty arrays of the same rank while the optimizer
runs (same tree structure, no work), then get their old values back.

A strategy whose used weights are only known inside the step (ISTA's traced support)
gives instead `active_mask(net_params, nas_state)`: mirroring theta, None (always used)
or traced bools broadcastable to the weight (ISTA's packed arrays hold several edges'
ops: one flag per element of the last axis). The optimizer then runs
on the whole tree with its updates and new state masked (an unused weight: zero update,
old state, hence a zero eta tangent), and the unused weights are kept: the same values
as the static path, in one compiled step for every support.
"""

import jax
import jax.numpy as jnp
import optax

from dha_jax.hpo.base import Update


def _names(path):
  return tuple(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))) for k in path)


def inactive_paths(net_params, active) -> frozenset:
  """Key paths (as name tuples) of the weights marked False in `active`."""
  flags = jax.tree_util.tree_leaves(active)
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(net_params)[0]]
  if len(flags) != len(paths):
    raise ValueError(f'active_net returned {len(flags)} flags for {len(paths)} weights: it '
                     'must mirror the structure of params["net"]')
  return frozenset(_names(p) for p, f in zip(paths, flags) if not f)


def _is_inactive(path, inactive, lengths):
  names = _names(path)
  return any(names[-n:] in inactive for n in lengths if n <= len(names))


def _empty(x):
  x = jnp.asarray(x)
  return x if x.ndim == 0 else jnp.zeros((0,) * x.ndim, x.dtype)


def prune(tree, inactive: frozenset):
  """`tree` (weights, gradients or any optimizer state) with the leaves of inactive
  weights replaced by empty arrays."""
  if not inactive:
    return tree
  lengths = sorted({len(p) for p in inactive})
  return jax.tree_util.tree_map_with_path(
      lambda p, x: _empty(x) if _is_inactive(p, inactive, lengths) else x, tree)


def restore(new_tree, old_tree, inactive: frozenset):
  """`new_tree` (a pruned tree after the update) with the old leaves put back."""
  if not inactive:
    return new_tree
  lengths = sorted({len(p) for p in inactive})
  return jax.tree_util.tree_map_with_path(
      lambda p, new, old: old if _is_inactive(p, inactive, lengths) else new,
      new_tree, old_tree)


def mask_table(params, mask) -> dict:
  """{key path (names): traced bools} of the weights the step may leave unused, from a
  strategy's active_mask: a tree mirroring params with None (always used) or bools
  broadcastable to the weight (per element: used)."""
  if mask is None:
    return {}
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  flags = jax.tree_util.tree_structure(params).flatten_up_to(mask)
  return {_names(p): f for p, f in zip(paths, flags) if f is not None}


def select(new_tree, old_tree, table: dict):
  """`new_tree` with `old_tree`'s leaf wherever the weight it belongs to (matched by key
  path, as prune) is unused: a traced choice, bit-exact on either side."""
  if not table:
    return new_tree
  lengths = sorted({len(p) for p in table})

  def pick(path, new, old):
    names = _names(path)
    for n in lengths:
      if n <= len(names) and names[-n:] in table:
        return jnp.where(table[names[-n:]], new, old)
    return new

  return jax.tree_util.tree_map_with_path(pick, new_tree, old_tree)


def _masked(tx, table):
  """tx whose updates are zero and whose state stays where the weight is unused: theta's
  step inside hpo.update_theta_and_eta, so eta's derivatives (the hypergradient, the 'lagged'
  tangent) of an unused weight are exactly zero as well."""

  def update(grads, state, params=None):
    updates, new_state = tx.update(grads, state, params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, updates)
    return select(updates, zeros, table), select(new_state, state, table)

  return optax.GradientTransformation(tx.init, update)


def update_theta_and_eta(hpo, inactive, *, tx, opt_state, params, grads, hparams,
                         hp_opt_state, eta_fn, hpo_loss, mask=None) -> Update:
  """hpo.update_theta_and_eta on the active weights only (the same call when none is
  inactive): `inactive` static key paths, or `mask` (a strategy's active_mask: traced
  flags) when none is. With a mask, unused weights get a zero update and keep their
  optimizer state inside the optimizer itself (so their eta tangent is zero); the weights
  are selected once more so that even a -0.0 stays bit-exact (p + 0 is 0.0)."""
  table = {} if inactive else mask_table(params, mask)
  if table:
    out = hpo.update_theta_and_eta(
        tx=_masked(tx, table), opt_state=opt_state, params=params, grads=grads,
        hparams=hparams, hp_opt_state=hp_opt_state, eta_fn=eta_fn, hpo_loss=hpo_loss)
    return out._replace(params=select(out.params, params, table))
  if not inactive:
    return hpo.update_theta_and_eta(tx=tx, opt_state=opt_state, params=params, grads=grads,
                                    hparams=hparams, hp_opt_state=hp_opt_state,
                                    eta_fn=eta_fn, hpo_loss=hpo_loss)
  full_loss = None
  if hpo_loss is not None:
    full_loss = lambda p: hpo_loss(restore(p, params, inactive))
  out = hpo.update_theta_and_eta(
      tx=tx, opt_state=prune(opt_state, inactive), params=prune(params, inactive),
      grads=prune(grads, inactive), hparams=hparams,
      hp_opt_state=prune(hp_opt_state, inactive), eta_fn=eta_fn, hpo_loss=full_loss)
  # an untouched weight's update does not depend on eta: its eta tangent ('lagged') is 0
  zeros = jax.tree_util.tree_map(jnp.zeros_like, hp_opt_state)
  return Update(restore(out.params, params, inactive),
                restore(out.opt_state, opt_state, inactive), out.hparams,
                restore(out.hp_opt_state, zeros, inactive), out.metrics)


# ------------------------------------------------- leaves that stay out of the step


def _outside_flags(state, inactive):
  """Per leaf of the flattened state: True for an inactive weight and its optimizer
  state (under params['net'] and opt_state['net']). eta's tangents stay inside: the step
  resets those of inactive weights to zero."""
  if not inactive:
    return None
  lengths = sorted({len(p) for p in inactive})
  flags = []
  for path, x in jax.tree_util.tree_flatten_with_path(state)[0]:
    names = _names(path)
    under_net = len(names) > 2 and names[0] in ('params', 'opt_state') and names[1] == 'net'
    flags.append(under_net and jnp.ndim(x) > 0 and _is_inactive(path, inactive, lengths))
  return flags if any(flags) else None


class SkipInactive:
  """A compiled train step called with only the leaves it can change.

  Every leaf crosses the jit boundary on each call, at ~1-4 us a leaf on CPU: with every
  op's weights and momentum in the state (2,779 leaves for the 3-cell digits ISTA
  network) that was ~10 ms a step, half the derived network's whole step. Inactive
  weights and their optimizer state never change in the step, so they stay outside:
  the step runs on the other leaves with empty placeholders in their place (the network
  never reads them, the update keeps them) and the untouched originals are put back.
  """

  def __init__(self, step, inactive_fn):
    self._step, self._inactive_fn, self._plans = step, inactive_fn, {}

  def _plan(self, state):
    leaves, treedef = jax.tree_util.tree_flatten(state)
    if treedef not in self._plans:
      flags = _outside_flags(state, self._inactive_fn(state.params['net']))
      self._plans[treedef] = None if flags is None else self._inner(leaves, treedef, flags)
    return leaves, treedef, self._plans[treedef]

  def _inner(self, leaves, treedef, flags):
    inside = [i for i, f in enumerate(flags) if not f]
    empty = {i: ((0,) * x.ndim, x.dtype) for i, (x, f) in enumerate(zip(leaves, flags)) if f}

    def inner(kept, batch):
      full = [jnp.zeros(*empty[i]) if i in empty else None for i in range(len(flags))]
      for i, x in zip(inside, kept):
        full[i] = x
      new, metrics = self._step(jax.tree_util.tree_unflatten(treedef, full), batch)
      new_leaves = jax.tree_util.tree_leaves(new)
      return [new_leaves[i] for i in inside], metrics

    return inside, jax.jit(inner, donate_argnums=(0,))

  def __call__(self, state, batch):
    leaves, treedef, plan = self._plan(state)
    if plan is None:
      return self._step(state, batch)
    inside, fn = plan
    kept, metrics = fn([leaves[i] for i in inside], batch)
    for i, x in zip(inside, kept):
      leaves[i] = x
    return jax.tree_util.tree_unflatten(treedef, leaves), metrics

  def lower(self, state, batch):
    """jax.stages.Lowered of what a call compiles (for cost and memory analyses)."""
    leaves, _, plan = self._plan(state)
    if plan is None:
      return self._step.lower(state, batch)
    inside, fn = plan
    return fn.lower([leaves[i] for i in inside], batch)
