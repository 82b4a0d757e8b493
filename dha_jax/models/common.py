"""Pieces shared by the networks: BatchNorm that syncs statistics across devices, and a
momentum override used to recompute BN statistics of a derived network (export.py)."""

import contextlib
import functools

import flax.linen as nn
import jax.numpy as jnp

from dha_jax.layers import precision

_MOMENTUM_OVERRIDE = [None]


@contextlib.contextmanager
def override_bn_momentum(momentum: float):
  """Every BatchNorm built (traced) inside takes this momentum: 0.0 makes a train-mode
  call return the batch's own statistics, which BN recalibration averages."""
  old, _MOMENTUM_OVERRIDE[0] = _MOMENTUM_OVERRIDE[0], momentum
  try:
    yield
  finally:
    _MOMENTUM_OVERRIDE[0] = old


def batch_norm(train: bool, axis_name, momentum: float = 0.9, **kwargs):
  """BatchNorm whose batch statistics are averaged over the 'data' mesh axis in training,
  so 1 device and N devices compute the same normalisation (synchronised BN). Output in
  the compute dtype; statistics and scale/bias in float32 (Flax reduces in float32)."""
  if _MOMENTUM_OVERRIDE[0] is not None:
    momentum = _MOMENTUM_OVERRIDE[0]
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      axis_name=axis_name if train else None,
                      dtype=precision.compute_dtype(), param_dtype=jnp.float32, **kwargs)


def partial_bn(train, axis_name, momentum):
  return functools.partial(batch_norm, train, axis_name, momentum)
