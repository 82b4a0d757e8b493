"""Where a CPU train step's time goes: the layers of the small CNN and of the ResNet
timed one by one (forward + backward w.r.t. input and weights) in dha_jax, per conv
formulation, and in PyTorch, alternating in one run; medians in ms.

  pip install torch==2.13.0          # benchmark-only dependency (CPU build)
  python -m benchmarks.cpu_layers [--repeats=9] [--impls=xla,mixed,im2col]

Each row is one layer as the networks of benchmarks/cpu_vs_pytorch.py use it: conv
(no bias) + BatchNorm (batch statistics) + ReLU, or a pooling op. The sum of a
column is close to that network's step minus the optimizer update, so the rows say
which layers carry the gap between the two frameworks.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks import cpu_vs_pytorch
from dha_jax.layers import conv

flags.DEFINE_integer('repeats', 9, 'timed calls per layer and framework (median)')
flags.DEFINE_string('impls', 'xla,mixed,im2col', 'comma-separated dha_jax conv impls')
FLAGS = flags.FLAGS

# (name, batch, hw, c_in, c_out, kernel, stride, kind); kind: 'cbr' | 'dw' (depthwise
# conv + BN + ReLU, as in the DARTS and ShuffleNet spaces) | 'maxpool2'
LAYERS = (
    ('cnn conv1 1->32', 128, 28, 1, 32, 3, 1, 'cbr'),
    ('cnn conv2 32->32', 128, 28, 32, 32, 3, 1, 'cbr'),
    ('cnn maxpool 2x2', 128, 28, 32, 32, 2, 2, 'maxpool2'),
    ('cnn conv3 32->64', 128, 14, 32, 64, 3, 1, 'cbr'),
    ('cnn conv4 64->64', 128, 14, 64, 64, 3, 1, 'cbr'),
    ('resnet 16->16 32px', 64, 32, 16, 16, 3, 1, 'cbr'),
    ('resnet 16->32 s2', 64, 32, 16, 32, 3, 2, 'cbr'),
    ('resnet 32->32 16px', 64, 16, 32, 32, 3, 1, 'cbr'),
    ('resnet 64->64 8px', 64, 8, 64, 64, 3, 1, 'cbr'),
    ('dw 3x3 32ch 32px', 64, 32, 32, 32, 3, 1, 'dw'),
    ('dw 5x5 64ch 16px', 64, 16, 64, 64, 5, 1, 'dw'),
    ('1x1 32->32 32px', 64, 32, 32, 32, 1, 1, 'cbr'),
)


def _bn_relu(y):
  mean = jnp.mean(y, (0, 1, 2))
  var = jnp.mean(jnp.square(y - mean), (0, 1, 2))
  return jax.nn.relu((y - mean) * jax.lax.rsqrt(var + 1e-5))


def jax_fn(layer, impl):
  _, n, hw, ci, co, k, s, kind = layer
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(n, hw, hw, ci)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, ci, co)) / np.sqrt(k * k * ci), jnp.float32)
  if kind == 'maxpool2':
    f = lambda x, w: conv.max_pool(x, 2, 2, 'VALID', impl=impl)
  else:
    groups = ci if kind == 'dw' else 1
    w = w[:, :, :ci // groups]
    f = lambda x, w: _bn_relu(conv.conv2d(x, w, s, 'SAME', groups=groups, impl=impl))
  r = jnp.asarray(rng.normal(size=jax.eval_shape(f, x, w).shape), jnp.float32)
  g = jax.jit(jax.grad(lambda x, w: jnp.sum(f(x, w) * r), argnums=(0, 1)))
  return lambda: jax.block_until_ready(g(x, w))


def torch_fn(layer):
  import torch  # pylint: disable=g-import-not-at-top
  _, n, hw, ci, co, k, s, kind = layer
  x = torch.randn(n, ci, hw, hw, requires_grad=True)
  if kind == 'maxpool2':
    mod = torch.nn.MaxPool2d(2)
  else:
    groups = ci if kind == 'dw' else 1
    mod = torch.nn.Sequential(torch.nn.Conv2d(ci, co, k, s, k // 2, groups=groups, bias=False),
                              torch.nn.BatchNorm2d(co, affine=False), torch.nn.ReLU())
  r = torch.randn_like(mod(x))

  def run():
    x.grad = None
    mod.zero_grad(set_to_none=True)
    (mod(x) * r).sum().backward()
  return run


def main(argv):
  del argv
  torch = cpu_vs_pytorch.require_torch()
  impls = FLAGS.impls.split(',')
  print(f'# {time.strftime("%Y-%m-%d")}, JAX {jax.__version__}, PyTorch {torch.__version__}, '
        f'{os.cpu_count()} CPUs; ms per forward + backward, medians of {FLAGS.repeats}')
  print('| layer | ' + ' | '.join(f'dha_jax {i}' for i in impls) + ' | PyTorch | best / PyTorch |')
  print('|---|' + '---|' * (len(impls) + 2))
  totals = np.zeros(len(impls) + 1)
  for layer in LAYERS:
    fns = [jax_fn(layer, i) for i in impls] + [torch_fn(layer)]
    ms = cpu_vs_pytorch.median_ms(fns, FLAGS.repeats)
    totals += ms
    print(f'| {layer[0]} | ' + ' | '.join(f'{m:.1f}' for m in ms) +
          f' | {min(ms[:-1]) / ms[-1]:.2f} |', flush=True)
  print('| sum | ' + ' | '.join(f'{m:.1f}' for m in totals) + ' | |')


if __name__ == '__main__':
  app.run(main)
