"""The compute dtype of the networks' convolutions and BatchNorm outputs (mixed precision).

bfloat16 activations with float32 parameters roughly double a GPU's or TPU's throughput
(tensor cores / MXU) at no cost in accuracy for these networks; on CPU there is no bf16
arithmetic unit, so it is only slower there. What stays float32 under float32 and bfloat16:
parameters and optimizer state (convolutions cast their float32 kernels per call),
BatchNorm statistics (reduced in float32), the classifier head and so the logits and
every loss, tau / alpha / eta and their gradients, and the augmentation (it runs before
the network). Read at trace time, like the conv formulation (dha_jax/layers/conv.py).

'float64' is for checking numerics, not for speed: every float leaf of the TrainState
is float64 too (state.create), so a run differs from another only by the order of its
sums (tests/test_multiprocess.py: 2 processes against 1). It needs JAX's 64-bit mode,
set before JAX is imported (JAX_ENABLE_X64=1).
"""

import jax
import jax.numpy as jnp

from dha_jax.layers import trace_default

NAMES = ('float32', 'bfloat16', 'auto', 'float64')


def resolve(name: str):
  """'auto': bfloat16 on gpu/tpu, float32 on cpu."""
  if name not in NAMES:
    raise ValueError(f'config.compute_dtype={name!r} is unknown; use one of '
                     f'{", ".join(NAMES)}')
  if name == 'float64' and not jax.config.jax_enable_x64:
    raise ValueError("config.compute_dtype='float64' needs JAX's 64-bit mode: set "
                     'JAX_ENABLE_X64=1 in the environment before the run starts')
  if name == 'auto':
    return jnp.float32 if jax.default_backend() == 'cpu' else jnp.bfloat16
  return jnp.dtype(name).type


_DEFAULT = trace_default.TraceDefault(resolve, 'float32')
set_compute_dtype, compute_dtype, use = _DEFAULT.set, _DEFAULT.get, _DEFAULT.use
