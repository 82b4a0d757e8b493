"""Pieces shared by the networks: BatchNorm that syncs statistics across devices."""

import functools

import flax.linen as nn


def batch_norm(train: bool, axis_name, momentum: float = 0.9, **kwargs):
  """BatchNorm whose batch statistics are averaged over the 'data' mesh axis in training,
  so 1 device and N devices compute the same normalisation (synchronised BN)."""
  return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=1e-5,
                      axis_name=axis_name if train else None, **kwargs)


def partial_bn(train, axis_name, momentum):
  return functools.partial(batch_norm, train, axis_name, momentum)
