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
"""

import jax
import jax.numpy as jnp


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


def apply_update(hpo, inactive, *, tx, opt_state, params, grads, hparams, hp_opt_state,
                 eta_fn, hpo_loss):
  """hpo.apply_update on the active weights only (the same call when none is inactive)."""
  if not inactive:
    return hpo.apply_update(tx=tx, opt_state=opt_state, params=params, grads=grads,
                            hparams=hparams, hp_opt_state=hp_opt_state, eta_fn=eta_fn,
                            hpo_loss=hpo_loss)
  full_loss = None
  if hpo_loss is not None:
    full_loss = lambda p: hpo_loss(restore(p, params, inactive))
  new_p, new_o, new_h, new_ho, metrics = hpo.apply_update(
      tx=tx, opt_state=prune(opt_state, inactive), params=prune(params, inactive),
      grads=prune(grads, inactive), hparams=hparams,
      hp_opt_state=prune(hp_opt_state, inactive), eta_fn=eta_fn, hpo_loss=full_loss)
  # an untouched weight's update does not depend on eta: its eta tangent ('lagged') is 0
  zeros = jax.tree_util.tree_map(jnp.zeros_like, hp_opt_state)
  return (restore(new_p, params, inactive), restore(new_o, opt_state, inactive), new_h,
          restore(new_ho, zeros, inactive), metrics)
