"""ShakeDrop (Yamada et al., 2018): a residual branch F(x) scaled per sample by
b + alpha (1 - b) in the forward pass and by b + beta (1 - b) in the backward pass, with
b ~ Bernoulli(p_l), alpha ~ U[-1, 1], beta ~ U[0, 1]; at inference by the forward
scale's expectation E[b + alpha (1 - b)] = p_l. It regularises PyramidNet-272 in Table 2."""

import flax.linen as nn
import jax
import jax.numpy as jnp

STREAM = 'shakedrop'  # the Flax rng stream the coefficients come from


def coefficients(key, n: int, keep_prob: float):
  """(b, alpha, beta): one of each per sample, float32 vectors of length n."""
  kb, ka, kg = jax.random.split(key, 3)
  b = jax.random.bernoulli(kb, keep_prob, (n,)).astype(jnp.float32)
  alpha = jax.random.uniform(ka, (n,), minval=-1.0, maxval=1.0)
  beta = jax.random.uniform(kg, (n,))
  return b, alpha, beta


def scale(x, b, alpha, beta):
  """Forward (b + alpha (1 - b)) x, gradient (b + beta (1 - b)) per sample (axis 0).
  The gradient-scaled term plus a stop-gradient correction to the forward value: no
  custom rule, so grad, jvp and grad-of-grad all see the paper's backward scale."""
  shape = (-1,) + (1,) * (x.ndim - 1)
  fwd = (b + alpha * (1 - b)).reshape(shape).astype(x.dtype)
  bwd = (b + beta * (1 - b)).reshape(shape).astype(x.dtype)
  return bwd * x + jax.lax.stop_gradient((fwd - bwd) * x)


def shake_drop(x, keep_prob: float, key=None):
  """Training (a key): random per-sample scales; no key: the inference rule p_l x."""
  if key is None:
    return keep_prob * x
  return scale(x, *coefficients(key, x.shape[0], keep_prob))


class ShakeDrop(nn.Module):
  """shake_drop with its key from the 'shakedrop' rng stream. A train-mode call without
  that stream (BN recalibration in export.py) takes the inference rule, so the statistics
  it gathers are those of the network that is evaluated."""
  keep_prob: float

  @nn.compact
  def __call__(self, x, train: bool):
    key = self.make_rng(STREAM) if train and self.has_rng(STREAM) else None
    return shake_drop(x, self.keep_prob, key)
