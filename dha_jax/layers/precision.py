"""The compute dtype of the networks' convolutions and BatchNorm outputs (mixed precision).

bfloat16 activations with float32 parameters roughly double a GPU's or TPU's throughput
(tensor cores / MXU) at no cost in accuracy for these networks; on CPU there is no bf16
arithmetic unit, so it is only slower there. What stays float32 whatever the setting:
parameters and optimizer state (convolutions cast their float32 kernels per call),
BatchNorm statistics (reduced in float32), the classifier head and so the logits and
every loss, tau / alpha / eta and their gradients, and the augmentation (it runs before
the network). Read at trace time, like the conv formulation (dha_jax/layers/conv.py).
"""

import contextlib

import jax
import jax.numpy as jnp

NAMES = ('float32', 'bfloat16', 'auto')
_DEFAULT = [jnp.float32]


def resolve(name: str):
  """'auto': bfloat16 on gpu/tpu, float32 on cpu."""
  if name not in NAMES:
    raise ValueError(f'config.compute_dtype={name!r} is unknown; use one of '
                     f'{", ".join(NAMES)}')
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return jnp.dtype(name).type


def set_compute_dtype(name: str):
  _DEFAULT[0] = resolve(name)


def compute_dtype():
  return _DEFAULT[0]


@contextlib.contextmanager
def use(name: str):
  """Temporarily change the compute dtype (read at trace time: jit inside)."""
  old, _DEFAULT[0] = _DEFAULT[0], resolve(name)
  try:
    yield
  finally:
    _DEFAULT[0] = old
