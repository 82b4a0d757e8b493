"""Pieces shared by the networks: BatchNorm that syncs statistics across devices, and an
override (momentum, synchronisation) used to recompute BN statistics of a derived network
(export.py)."""

import contextlib
import functools

import flax.linen as nn
import jax.numpy as jnp

from dha_jax.layers import precision

_OVERRIDE = {'momentum': None, 'sync_axis': None}


@contextlib.contextmanager
def override_bn_momentum(momentum: float, sync_axis=None):
  """Every BatchNorm built (traced) inside takes this momentum: 0.0 makes a train-mode
  call return the batch's own statistics, which BN recalibration averages. With
  `sync_axis`, every one also averages its statistics over that mesh axis, the per-device
  ones (DSNAS's choice blocks) included, so that on N devices each layer is normalised,
  and its successors measured, as on the whole batch."""
  old = dict(_OVERRIDE)
  _OVERRIDE.update(momentum=momentum, sync_axis=sync_axis)
  try:
    yield
  finally:
    _OVERRIDE.update(old)


def batch_norm(train: bool, axis_name, momentum: float = 0.9, **kwargs):
  """BatchNorm whose batch statistics are averaged over the 'data' mesh axis in training,
  so 1 device and N devices compute the same normalisation (synchronised BN). Output in
  the compute dtype; statistics and scale/bias in float32 (Flax reduces in float32)."""
  if _OVERRIDE['momentum'] is not None:
    momentum = _OVERRIDE['momentum']
  if _OVERRIDE['sync_axis'] is not None:
    axis_name = _OVERRIDE['sync_axis']
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      axis_name=axis_name if train else None,
                      dtype=precision.compute_dtype(), param_dtype=jnp.float32, **kwargs)


def partial_bn(train, axis_name, momentum):
  return functools.partial(batch_norm, train, axis_name, momentum)
