"""Choice-block search spaces: a fixed stem, L choice layers with K candidate blocks each,
a fixed head. A space is one `Space` value (see shufflenet.py), built by a function
registered in SPACES under the name config.nas.space takes; this file turns it into a
Flax network, derives children from it and counts their FLOPs and parameters.

Execution of a choice layer (how only the sampled block is paid for):
  'switch'        lax.switch on the block index under JAX's own cond autodiff: one block
                 runs forward and backward; JAX merges the branches' residuals by type.
  'switch_vjp'    a custom_vjp around lax.switch that saves the chosen branch's vjp
                 residuals in type-merged slots (single_path below).
  'switch_remat'  the same saving only the layer inputs: the chosen block is recomputed in
                 the backward pass (least memory; the CPU default).
  'masked'        every candidate runs, outputs summed with one-hot weights: the full
                 supernet (K-fold cost; the contrast in benchmarks/single_path.py).
A fixed `genotype` builds the child: one block per layer, with the supernet's parameter
names restricted to the chosen blocks ('layer3/choice2/...'), so weights transfer as is.
A candidate may have no variables (MobileNet's 'skip'); a space may forbid candidates in
some layers (`allowed`): they still build (same output shape) but are never sampled.

BatchNorms inside choice blocks use per-device batch statistics: devices sample different
blocks, so a cross-device mean inside a branch would pair collectives that other devices
never reach. Stem and head BNs are synchronised ('data' axis) as in dha_jax/models.
"""

import collections
import dataclasses
import functools
from typing import Any, Callable, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.core import registry
from dha_jax.layers import conv

EXECUTIONS = ('switch_vjp', 'switch_remat', 'switch', 'masked')


@dataclasses.dataclass(frozen=True)
class LayerSpec:
  in_channels: int
  out_channels: int
  stride: int


@dataclasses.dataclass(frozen=True)
class Space:
  """stem(bn_axis_name, name=) / block(spec, k, name=) / head(num_classes, bn_axis_name,
  name=) return Flax modules called as module(x, train). allowed[l][k]: candidate k may
  be chosen in layer l (None: every candidate everywhere)."""
  name: str
  choices: Tuple[str, ...]
  layers: Tuple[LayerSpec, ...]
  stem: Callable[..., nn.Module]
  block: Callable[..., nn.Module]
  head: Callable[..., nn.Module]
  allowed: Optional[Tuple[Tuple[bool, ...], ...]] = None

  @property
  def num_layers(self):
    return len(self.layers)

  @property
  def num_choices(self):
    return len(self.choices)

  @property
  def mask(self) -> np.ndarray:
    """[L, K] bool: the candidates each layer may choose."""
    if self.allowed is None:
      return np.ones((self.num_layers, self.num_choices), bool)
    return np.array(self.allowed, bool).reshape(self.num_layers, self.num_choices)


# name -> builder(nas_config, bn_momentum) -> Space. A new space is a module with its
# blocks and one register() call; DSNAS finds it by config.nas.space.
SPACES = registry.Registry('config.nas.space')


def register(name: str, builder: Callable[..., Space]):
  SPACES.register(name)(builder)


def register_sized(names, build_space):
  """Registers each of `names` with a builder that passes config.nas's common size
  overrides (stem_channels, stage_repeats, stage_channels, last_channels; 0 or () = the
  space's default) to build_space(name, stem, repeats, channels, last, bn_momentum)."""
  for name in names:
    register(name, functools.partial(_sized, build_space, name))


def _sized(build_space, name, n, bn_momentum):
  return build_space(name, n.stem_channels, n.stage_repeats, n.stage_channels,
                     n.last_channels, bn_momentum)


def build(nas_config, bn_momentum) -> Space:
  """The space config.nas.space names, sized by the config (its builder reads the fields
  it knows, e.g. ShuffleNet's stage_repeats)."""
  return SPACES.get(nas_config.space)(nas_config, bn_momentum)


class ChoiceLayer(nn.Module):
  """K candidates (or only `fixed`); output = chosen block's output x scale. Runs every
  candidate unless fixed: init, the 'masked' supernet; dynamic paths use `forward`."""
  space: Space
  spec: LayerSpec
  fixed: int = -1

  @nn.compact
  def __call__(self, x, choice, scale, train: bool = False):
    block = lambda k: self.space.block(self.spec, k, name=f'choice{k}')(x, train)
    if self.fixed >= 0:
      y = block(self.fixed)
    else:
      onehot = jax.nn.one_hot(choice, self.space.num_choices, dtype=x.dtype)
      y = sum(onehot[k] * block(k) for k in range(self.space.num_choices))
    return y if scale is None else y * scale.astype(y.dtype)


class ChoiceNet(nn.Module):
  """The supernet with every candidate evaluated ('masked'; also its init) or the child
  of a fixed genotype (choices ignored). Its variables are what `forward` runs."""
  space: Space
  num_classes: int
  genotype: Optional[Tuple[int, ...]] = None
  bn_axis_name: Optional[str] = 'data'

  @nn.compact
  def __call__(self, x, choices=None, scales=None, train: bool = False):
    x = self.space.stem(self.bn_axis_name, name='stem')(x, train)
    for l, spec in enumerate(self.space.layers):
      fixed = -1 if self.genotype is None else int(self.genotype[l])
      x = ChoiceLayer(self.space, spec, fixed, name=f'layer{l}')(
          x, None if choices is None else choices[l],
          None if scales is None else scales[l], train)
    return self.space.head(self.num_classes, self.bn_axis_name, name='head')(x, train)


# ------------------------------------------------------------ single-path execution


def _merge_by_type(avals_per_branch):
  """One slot list shared by all branches: slot types are reused across branches (as
  JAX's cond does), so the saved residuals are the largest branch's, not the sum."""
  slots, index = [], []
  for avals in avals_per_branch:
    used, mine = set(), []
    for a in avals:
      key = (a.shape, a.dtype)
      i = next((i for i, s in enumerate(slots) if s == key and i not in used), None)
      if i is None:
        slots.append(key)
        i = len(slots) - 1
      used.add(i)
      mine.append(i)
    index.append(mine)
  return slots, index


def single_path(fns, remat=False):
  """g(index, params, stats, x) = fns[index](params, stats, x) -> (y, new_stats), only
  the chosen branch run forward and backward, differentiable in params and x.

  A custom_vjp around lax.switch: the forward switch returns the chosen branch's
  jax.vjp residuals in type-merged slots, or (remat=True) nothing but the inputs, and the
  backward switch recomputes the block. JAX's own cond linearisation keeps the same
  residuals (it merges them by type too) but took ~2x longer to compile here
  (benchmarks/single_path.py).
  """
  K = len(fns)
  trees, layout = [None] * K, {}

  def vjp_k(k, params, stats, x):
    y, pullback, new_stats = jax.vjp(lambda p, v: fns[k](p, stats, v), params, x,
                                     has_aux=True)
    leaves, trees[k] = jax.tree_util.tree_flatten(pullback)
    return y, new_stats, leaves

  @jax.custom_vjp
  def g(index, params, stats, x):
    return jax.lax.switch(index, fns, params, stats, x)

  def fwd(index, params, stats, x):
    if remat:
      return jax.lax.switch(index, fns, params, stats, x), (index, params, stats, x)
    avals = [jax.eval_shape(functools.partial(vjp_k, k), params, stats, x)[2]
             for k in range(K)]
    slots, where = _merge_by_type(avals)
    layout['where'] = where

    def branch(k):
      def run(params, stats, x):
        y, new_stats, leaves = vjp_k(k, params, stats, x)
        out = [None] * len(slots)
        for i, leaf in zip(where[k], leaves):
          out[i] = leaf
        return y, new_stats, [jnp.zeros(*s) if o is None else o for o, s in zip(out, slots)]
      return run

    y, new_stats, saved = jax.lax.switch(index, [branch(k) for k in range(K)],
                                         params, stats, x)
    return (y, new_stats), (index, saved, stats)

  def bwd(res, cts):
    dy = cts[0]
    if remat:
      index, params, stats, x = res
      back = [lambda dy, k=k: jax.vjp(lambda p, v: fns[k](p, stats, v)[0], params, x)[1](dy)
              for k in range(K)]
    else:
      index, saved, stats = res
      back = [lambda dy, k=k: jax.tree_util.tree_unflatten(
          trees[k], [saved[i] for i in layout['where'][k]])(dy) for k in range(K)]
    dparams, dx = jax.lax.switch(index, back, dy)
    zero_index = np.zeros(np.shape(index), jax.dtypes.float0)
    return zero_index, dparams, jax.tree_util.tree_map(jnp.zeros_like, stats), dx

  g.defvjp(fwd, bwd)
  return g


def forward(space: Space, num_classes, variables, x, choices, scales, train,
            execution='switch_vjp', bn_axis_name='data'):
  """The supernet with layer l running only block choices[l] (a traced index), output
  scaled by scales[l]. execution: 'switch_vjp' | 'switch_remat' (single_path), 'switch'
  (plain lax.switch: JAX's cond autodiff), 'masked' (all K). choices/scales [G, L]: a
  path per group of the batch (_per_group). Returns (logits, new batch_stats)."""
  if execution == 'masked':
    net = ChoiceNet(space, num_classes, bn_axis_name=bn_axis_name)
    if not train:
      return net.apply(variables, x, choices, scales, train=False), variables['batch_stats']
    y, new = net.apply(variables, x, choices, scales, train=True, mutable=['batch_stats'])
    return y, new['batch_stats']
  params, stats, new_stats = variables['params'], variables['batch_stats'], {}
  run = lambda m, p, s, v: (m.apply({'params': p, 'batch_stats': s}, v, train=True,
                                    mutable=['batch_stats']) if train else
                            (m.apply({'params': p, 'batch_stats': s}, v, train=False), {
                                'batch_stats': s}))
  x, new = run(space.stem(bn_axis_name), params['stem'], stats['stem'], x)
  new_stats['stem'] = new['batch_stats']
  grouped = choices is not None and jnp.ndim(choices) == 2
  for l, spec in enumerate(space.layers):
    def fn(k, spec=spec):
      def f(p, s, v):  # a candidate without variables (skip) has no entry in p and s
        c = f'choice{k}'
        y, new = run(space.block(spec, k), p.get(c, {}), s.get(c, {}), v)
        return y, (dict(s, **{c: new['batch_stats']}) if c in s else s)
      return f
    fns = [fn(k) for k in range(space.num_choices)]
    name = f'layer{l}'
    if execution == 'switch':
      layer = lambda k, *operands, fns=fns: jax.lax.switch(k, fns, *operands)
    elif execution in ('switch_vjp', 'switch_remat'):
      layer = single_path(fns, execution == 'switch_remat')
    else:
      raise ValueError(f'execution={execution!r}; choose one of {EXECUTIONS}')
    if grouped:
      x, new_stats[name] = _per_group(layer, choices[:, l], scales[:, l], params[name],
                                      stats[name], x)
    else:
      x, new_stats[name] = layer(choices[l], params[name], stats[name], x)
      if scales is not None:
        x = x * scales[l].astype(x.dtype)
  x, new = run(space.head(num_classes, bn_axis_name), params['head'], stats['head'], x)
  new_stats['head'] = new['batch_stats']
  return x, new_stats


def _per_group(layer, choices, scales, params, stats, x):
  """A layer with its own block per group of the batch: x's leading axis split into
  len(choices) equal groups, group g runs block choices[g] (its BatchNorms on the group's
  statistics, as a device on its shard) and is scaled by scales[g]; the new statistics
  are the groups' mean (what the step's pmean makes of one group per device)."""
  g = choices.shape[0]
  xs = x.reshape((g, x.shape[0] // g) + x.shape[1:])

  def one(args):
    k, z, v = args
    y, new = layer(k, params, stats, v)
    return y * z.astype(y.dtype), new

  ys, new = jax.lax.map(one, (choices, scales, xs))
  return (ys.reshape((x.shape[0],) + ys.shape[2:]),
          jax.tree_util.tree_map(lambda a: jnp.mean(a, 0), new))


def child_variables(tree, genotype):
  """The supernet's {'layer<l>': {'choice<k>': ...}} tree restricted to the genotype (a
  layer whose chosen block has no variables, e.g. skip, leaves the tree as in the child)."""
  out = dict(tree)
  for l, k in enumerate(genotype):
    layer = out.pop(f'layer{l}', {})
    if f'choice{k}' in layer:
      out[f'layer{l}'] = {f'choice{k}': layer[f'choice{k}']}
  return out


# ------------------------------------------------------------------ FLOPs / params


@dataclasses.dataclass
class Costs:
  """Multiply-adds and parameters per image: per (layer, choice) and of stem + head."""
  flops: np.ndarray    # [L, K]
  params: np.ndarray   # [L, K]
  fixed_flops: int
  fixed_params: int

  def of(self, genotype):
    idx = (np.arange(len(genotype)), np.asarray(genotype))
    return (int(self.fixed_flops + self.flops[idx].sum()),
            int(self.fixed_params + self.params[idx].sum()))

  def table(self, resource):
    return (self.flops, self.fixed_flops) if resource == 'flops' else (self.params,
                                                                        self.fixed_params)


def _macs(module, args, out) -> int:
  """Multiply-adds of a conv / dense call, from its input and output shapes."""
  if isinstance(module, conv.Conv):
    ks = module.kernel_size
    kh, kw = (ks, ks) if isinstance(ks, int) else tuple(ks)
    cin = args[0].shape[-1] // module.feature_group_count
    return int(np.prod(out.shape[1:])) * kh * kw * cin
  if isinstance(module, nn.Dense):
    return int(np.prod(out.shape[1:])) * args[0].shape[-1]
  return 0


def _split(per_path: dict, num_layers: int, num_choices: int):
  table = np.zeros((num_layers, num_choices), np.int64)
  fixed = 0
  for path, v in per_path.items():
    if len(path) >= 2 and path[0].startswith('layer') and path[1].startswith('choice'):
      table[int(path[0][5:]), int(path[1][6:])] += v
    else:
      fixed += v
  return table, int(fixed)


def count_costs(space: Space, image_shape, num_classes: int) -> Costs:
  """Counts conv / dense multiply-adds (per image; BN, ReLU, pooling not counted) by
  intercepting every module call of one abstract pass over the whole supernet, and the
  parameters of each block (BN scale/bias included) from the parameter shapes."""
  macs = collections.defaultdict(int)

  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__':
      n = _macs(context.module, args, out)
      if n:
        macs[tuple(context.module.path)] += n
    return out

  net = ChoiceNet(space, num_classes, bn_axis_name=None)
  x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  L = space.num_layers
  with nn.intercept_methods(interceptor):
    shapes = conv.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x,
                                                jnp.zeros(L, jnp.int32), None), x)
  sizes = {tuple(getattr(k, 'key', k) for k in path): int(np.prod(leaf.shape))
           for path, leaf in jax.tree_util.tree_flatten_with_path(shapes['params'])[0]}
  flops, fixed_flops = _split(macs, L, space.num_choices)
  params, fixed_params = _split(sizes, L, space.num_choices)
  return Costs(flops, params, fixed_flops, fixed_params)


def probability_figure(probs, choices, genotype=None, title='p(alpha)'):
  """Heat map of the [L, K] choice probabilities (matplotlib Agg), argmax marked."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  probs = np.asarray(probs)
  fig, ax = plt.subplots(figsize=(2 + 0.9 * len(choices), 1 + 0.3 * len(probs)))
  im = ax.imshow(probs, aspect='auto', cmap='viridis', vmin=0, vmax=1)
  sel = np.argmax(probs, -1) if genotype is None else np.asarray(genotype)
  ax.scatter(sel, np.arange(len(probs)), marker='x', color='red', s=25)
  ax.set_xticks(range(len(choices)), choices, rotation=30)
  ax.set_yticks(range(len(probs)), [f'layer {l}' for l in range(len(probs))], fontsize=7)
  ax.set_title(title)
  fig.colorbar(im, ax=ax)
  fig.tight_layout()
  return fig


def tree_size(tree: Any) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
