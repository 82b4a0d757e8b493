"""dha_jax vs PyTorch on CPU: full train steps (forward, backward, SGD update) of the
same networks with identical shapes, timed alternately in one run; medians.

  pip install torch==2.13.0          # benchmark-only dependency (CPU build)
  python -m benchmarks.cpu_vs_pytorch [--repeats=15] [--threads=0] [--conv_impl=auto]
      [--nets=small_cnn,resnet,darts_cell,shufflenet_block]

Networks: the small CNN of configs/fashion_mnist.py (28x28x1, batch 128); a ResNet with
basic blocks (3 stages x 2 blocks, width 16, 32x32x3, batch 64); a DARTS-V2 normal cell
network (C=16, 32x32x3, batch 64); a ShuffleNetV2 / Xception block network (32x32x3,
batch 64). The JAX side is dha_jax's own code path (dha_jax.layers.conv with the CPU
default formulation). Prints a markdown table of ms/step and the ratio JAX / PyTorch.
"""

import functools
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

from dha_jax.layers import conv
from dha_jax.models import resnet, small_cnn

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- JAX side

BN = functools.partial(nn.BatchNorm, use_running_average=False, momentum=0.9, epsilon=1e-5)


class SepConv(nn.Module):
  """DARTS sep_conv: (ReLU, depthwise k, pointwise, BN) twice."""
  c: int
  k: int = 3

  @nn.compact
  def __call__(self, x):
    for _ in range(2):
      x = conv.Conv(self.c, (self.k, self.k), feature_group_count=self.c)(nn.relu(x))
      x = BN()(conv.Conv(self.c, (1, 1))(x))
    return x


class DilConv(nn.Module):
  c: int
  k: int = 3

  @nn.compact
  def __call__(self, x):
    x = conv.Conv(self.c, (self.k, self.k), kernel_dilation=2,
                  feature_group_count=self.c)(nn.relu(x))
    return BN()(conv.Conv(self.c, (1, 1))(x))


DARTS_V2_NORMAL = (('sep3', 0), ('sep3', 1), ('sep3', 0), ('sep3', 1), ('sep3', 1),
                   ('skip', 0), ('skip', 0), ('dil3', 2))


class DartsCellNet(nn.Module):
  c: int = 16
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = BN()(conv.Conv(3 * self.c, (3, 3))(x))
    states = [BN()(conv.Conv(self.c, (1, 1))(nn.relu(x))) for _ in range(2)]
    for i in range(4):
      out = 0
      for op, j in DARTS_V2_NORMAL[2 * i:2 * i + 2]:
        h = states[j]
        out = out + (h if op == 'skip' else SepConv(self.c)(h) if op == 'sep3'
                     else DilConv(self.c)(h))
      states.append(out)
    x = jnp.concatenate(states[2:], -1)
    return nn.Dense(self.num_classes)(jnp.mean(x, (1, 2)))


def _shuffle(x):
  n, h, w, c = x.shape
  return x.reshape(n, h, w, 2, c // 2).swapaxes(3, 4).reshape(n, h, w, c)


class ShuffleBlock(nn.Module):
  """ShuffleNetV2 unit (k x k depthwise) or Xception unit (3 depthwise 3x3)."""
  c_out: int
  stride: int
  k: int = 3
  xception: bool = False

  @nn.compact
  def __call__(self, x):
    if self.stride == 1:
      proj, main = jnp.split(x, 2, axis=-1)
    else:
      proj = conv.Conv(x.shape[-1], (3, 3), self.stride, feature_group_count=x.shape[-1])(x)
      proj = nn.relu(BN()(conv.Conv(x.shape[-1], (1, 1))(BN()(proj))))
      main = x
    mid, out = self.c_out // 2, self.c_out - proj.shape[-1]
    if self.xception:
      y = main
      for i in range(3):
        s = self.stride if i == 0 else 1
        y = BN()(conv.Conv(y.shape[-1], (3, 3), s, feature_group_count=y.shape[-1])(y))
        y = nn.relu(BN()(conv.Conv(out if i == 2 else mid, (1, 1))(y)))
    else:
      y = nn.relu(BN()(conv.Conv(mid, (1, 1))(main)))
      y = BN()(conv.Conv(mid, (self.k, self.k), self.stride, feature_group_count=mid)(y))
      y = nn.relu(BN()(conv.Conv(out, (1, 1))(y)))
    return _shuffle(jnp.concatenate([proj, y], -1))


class ShuffleNet(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = nn.relu(BN()(conv.Conv(16, (3, 3))(x)))
    for c, s, k, xc in ((64, 2, 3, False), (64, 1, 5, False), (64, 1, 3, True),
                        (128, 2, 7, False), (128, 1, 3, True)):
      x = ShuffleBlock(c, s, k, xc)(x)
    x = nn.relu(BN()(conv.Conv(256, (1, 1))(x)))
    return nn.Dense(self.num_classes)(jnp.mean(x, (1, 2)))


def jax_step_fn(model, shape, batch):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(batch,) + shape), jnp.float32)
  y = jnp.asarray(np.arange(batch) % 10)
  variables = model.init(jax.random.PRNGKey(0), x[:2], **_train_kw(model, False))
  tx = optax.sgd(0.01, 0.9)
  params, bs = variables['params'], variables.get('batch_stats', {})
  opt = tx.init(params)

  @jax.jit
  def step(params, bs, opt):
    def loss_fn(p):
      logits, new = model.apply({'params': p, 'batch_stats': bs}, x, mutable=['batch_stats'],
                                **_train_kw(model, True))
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new
    (_, new), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    upd, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, upd), new['batch_stats'], opt

  state = [params, bs, opt]

  def run():
    state[:] = step(*state)
    jax.block_until_ready(state)
  return run


def _train_kw(model, train):
  return {'train': train} if isinstance(model, (small_cnn.SmallCNN, resnet.ResNet)) else {}


# ------------------------------------------------------------------------- PyTorch side

def torch_nets():
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn as tnn  # pylint: disable=g-import-not-at-top

  def cbr(i, o, k=3, s=1, g=1, d=1, relu=True):
    layers = [tnn.Conv2d(i, o, k, s, d * (k // 2), dilation=d, groups=g, bias=False),
              tnn.BatchNorm2d(o)]
    return layers + [tnn.ReLU()] if relu else layers

  class SmallCNN(tnn.Module):
    def __init__(self, widths=(32, 64)):
      super().__init__()
      layers, c = [], 1
      for i, w in enumerate(widths):
        if i:
          layers.append(tnn.MaxPool2d(2))
        layers += cbr(c, w) + cbr(w, w)
        c = w
      self.f, self.head = tnn.Sequential(*layers), tnn.Linear(c, 10)

    def forward(self, x):
      return self.head(self.f(x).mean((2, 3)))

  class Basic(tnn.Module):
    def __init__(self, i, o, s):
      super().__init__()
      self.a = tnn.Sequential(*cbr(i, o, 3, s), *cbr(o, o, 3, 1, relu=False))
      self.sc = (tnn.Sequential(*cbr(i, o, 1, s, relu=False)) if (i != o or s != 1)
                 else tnn.Identity())

    def forward(self, x):
      return torch.relu(self.a(x) + self.sc(x))

  class ResNet(tnn.Module):
    def __init__(self, stages=(2, 2, 2), width=16):
      super().__init__()
      layers, c = cbr(3, width), width
      for i, n in enumerate(stages):
        for j in range(n):
          o = width * 2**i
          layers.append(Basic(c, o, 2 if (i and not j) else 1))
          c = o
      self.f, self.head = tnn.Sequential(*layers), tnn.Linear(c, 10)

    def forward(self, x):
      return self.head(self.f(x).mean((2, 3)))

  def sep(c, k=3):
    return tnn.Sequential(tnn.ReLU(), tnn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False),
                          *cbr(c, c, 1, relu=False), tnn.ReLU(),
                          tnn.Conv2d(c, c, k, 1, k // 2, groups=c, bias=False),
                          *cbr(c, c, 1, relu=False))

  def dil(c, k=3):
    return tnn.Sequential(tnn.ReLU(), tnn.Conv2d(c, c, k, 1, 2 * (k // 2), dilation=2, groups=c,
                                                 bias=False), *cbr(c, c, 1, relu=False))

  class DartsCellNet(tnn.Module):
    def __init__(self, c=16):
      super().__init__()
      self.stem = tnn.Sequential(*cbr(3, 3 * c, relu=False))
      self.pre = tnn.ModuleList([tnn.Sequential(tnn.ReLU(), *cbr(3 * c, c, 1, relu=False))
                                 for _ in range(2)])
      self.ops = tnn.ModuleList([tnn.Identity() if op == 'skip' else sep(c) if op == 'sep3'
                                 else dil(c) for op, _ in DARTS_V2_NORMAL])
      self.head = tnn.Linear(4 * c, 10)

    def forward(self, x):
      x = self.stem(x)
      states = [p(x) for p in self.pre]
      for i in range(4):
        states.append(sum(self.ops[2 * i + t](states[DARTS_V2_NORMAL[2 * i + t][1]])
                          for t in range(2)))
      return self.head(torch.cat(states[2:], 1).mean((2, 3)))

  def shuffle(x):
    n, c, h, w = x.shape
    return x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)

  class ShuffleBlock(tnn.Module):
    def __init__(self, c_in, c_out, s, k, xc):
      super().__init__()
      self.s = s
      proj_c = c_in // 2 if s == 1 else c_in
      main_c = c_in // 2 if s == 1 else c_in
      mid, out = c_out // 2, c_out - proj_c
      if s == 2:
        self.proj = tnn.Sequential(tnn.Conv2d(c_in, c_in, 3, 2, 1, groups=c_in, bias=False),
                                   tnn.BatchNorm2d(c_in), *cbr(c_in, c_in, 1))
      if xc:
        layers, c = [], main_c
        for i in range(3):
          o = out if i == 2 else mid
          layers += [tnn.Conv2d(c, c, 3, s if i == 0 else 1, 1, groups=c, bias=False),
                     tnn.BatchNorm2d(c), *cbr(c, o, 1)]
          c = o
        self.main = tnn.Sequential(*layers)
      else:
        self.main = tnn.Sequential(*cbr(main_c, mid, 1),
                                   tnn.Conv2d(mid, mid, k, s, k // 2, groups=mid, bias=False),
                                   tnn.BatchNorm2d(mid), *cbr(mid, out, 1))

    def forward(self, x):
      if self.s == 1:
        proj, main = x.chunk(2, 1)
      else:
        proj, main = self.proj(x), x
      return shuffle(torch.cat([proj, self.main(main)], 1))

  class ShuffleNet(tnn.Module):
    def __init__(self):
      super().__init__()
      layers, c = cbr(3, 16), 16
      for o, s, k, xc in ((64, 2, 3, False), (64, 1, 5, False), (64, 1, 3, True),
                          (128, 2, 7, False), (128, 1, 3, True)):
        layers.append(ShuffleBlock(c, o, s, k, xc))
        c = o
      self.f = tnn.Sequential(*layers, *cbr(c, 256, 1))
      self.head = tnn.Linear(256, 10)

    def forward(self, x):
      return self.head(self.f(x).mean((2, 3)))

  return {'small_cnn': SmallCNN, 'resnet': ResNet, 'darts_cell': DartsCellNet,
          'shufflenet_block': ShuffleNet}


def torch_step_fn(net, shape, batch):
  import torch  # pylint: disable=g-import-not-at-top
  h, w, c = shape
  x = torch.randn(batch, c, h, w)
  y = torch.arange(batch) % 10
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
  lossf = torch.nn.CrossEntropyLoss()

  def run():
    opt.zero_grad(set_to_none=True)
    lossf(net(x), y).backward()
    opt.step()
  return run


NETS = {  # name: (JAX module, input HWC, batch)
    'small_cnn': (lambda: small_cnn.SmallCNN(10, (32, 64), bn_axis_name=None), (28, 28, 1), 128),
    'resnet': (lambda: resnet.ResNet(10, (2, 2, 2), 16, 'cifar', bn_axis_name=None),
               (32, 32, 3), 64),
    'darts_cell': (DartsCellNet, (32, 32, 3), 64),
    'shufflenet_block': (ShuffleNet, (32, 32, 3), 64),
}


def require_torch():
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit('PyTorch is not installed: pip install torch==2.13.0 (CPU build), then re-run.')
  return torch


def median_ms(fns, repeats):
  """Median ms of each callable, called in turn so all see the same machine load
  (after two warm-up calls each, which also compile)."""
  for f in fns:
    f()
    f()
  times = [[] for _ in fns]
  for _ in range(repeats):
    for f, acc in zip(fns, times):
      t0 = time.perf_counter()
      f()
      acc.append(time.perf_counter() - t0)
  return [np.median(t) * 1e3 for t in times]


def _define_flags():
  """Only when run: benchmarks/cpu_layers.py imports this module and has its own flags."""
  flags.DEFINE_integer('repeats', 15, 'timed steps per network and framework (median)')
  flags.DEFINE_string('nets', ','.join(NETS), 'comma-separated network names (keys of NETS)')
  flags.DEFINE_integer('threads', 0, 'torch threads (0: its default)')
  flags.DEFINE_enum('conv_impl', 'auto', conv.IMPLS,
                    "dha_jax's conv formulation (dha_jax.layers.conv)")


def main(argv):
  del argv
  conv.set_default_impl(FLAGS.conv_impl)
  torch = require_torch()
  if FLAGS.threads:
    torch.set_num_threads(FLAGS.threads)
  tnets = torch_nets()
  print(f'# {time.strftime("%Y-%m-%d")}, JAX {jax.__version__} ({jax.default_backend()}, conv '
        f'impl {conv.get_default_impl()}), PyTorch {torch.__version__}, {os.cpu_count()} CPUs, '
        f'torch threads {torch.get_num_threads()}')
  print('| network | input | batch | dha_jax ms/step | PyTorch ms/step | ratio |')
  print('|---|---|---|---|---|---|')
  for name in FLAGS.nets.split(','):
    make, shape, batch = NETS[name]
    j = jax_step_fn(make(), shape, batch)
    t = torch_step_fn(tnets[name](), shape, batch)
    mj, mt = median_ms([j, t], FLAGS.repeats)
    print(f'| {name} | {"x".join(map(str, shape))} | {batch} | {mj:.1f} | {mt:.1f} | '
          f'{mj / mt:.2f} |', flush=True)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
