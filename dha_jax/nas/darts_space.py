"""The DARTS cell search space: cells, the 32 px and 224 px networks, genotypes, sizes.

A cell takes the two previous states, pre-processes them to C channels (ReLU-conv-BN, or a
factorized reduce when the previous cell halved the resolution), computes 4 nodes, node i
summing weighted ops on any of its i+2 inputs, and outputs the concat of the nodes (4C).
Reduction cells apply stride 2 on the edges from the two inputs and double C.

Edges are addressed by a column index c = j * 7 + o (input j, op o = darts_ops.OPS[o]):
the same index the ISTA measurement matrix uses. A network is built with a static set of
columns per node: all (i+2)*7 of them (the supernet: DARTS, ISTA's masked fallback) or the
2 of a genotype (the sparse ISTA network and the derived child). Parameters are named by
(cell, node, input, op), so a child's weights are the supernet's, restricted.

The ops and the number of nodes are those of the network's CellSpace (Spec.space,
config.nas.cell_space; cell_space.py): the numbers above are the 'darts' space's,
registered here. The module constants (NUM_NODES, CONCAT, num_inputs, ...) are that
space's, for the genotype table; nothing that builds a network reads them.

`traced=True` runs the supernet with the 2 columns of every node given as traced ints
(ISTA's support read from its state inside one compiled step) on `pack`ed variables:
cell_packed.py.
"""

import functools
import json
from typing import NamedTuple, Optional, Sequence, Tuple

import dataclasses
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dha_jax.core import compile_cache
from dha_jax.layers import conv
from dha_jax.models import common
from dha_jax.nas import cell_packed, cell_space, darts_ops, host_init
from dha_jax.nas.cell_space import CellSpace
from dha_jax.nas.darts_ops import NUM_OPS, OPS  # noqa: F401  (the 'darts' space's ops)

DARTS = cell_space.register(CellSpace('darts', darts_ops.OPS, num_nodes=4))
# One op of each kind (a separable conv, a pool, the identity) and 2 nodes: a search a CPU
# budget affords, and the test suite's cell space where the 'darts' space itself is not
# the point (its DHA step traces and compiles ~2x faster: tests/test_dha.py).
DARTS_SMALL = cell_space.register(
    CellSpace('darts_small', ('sep_conv_3x3', 'max_pool_3x3', 'skip_connect'), num_nodes=2))

# the 'darts' space's sizes under their old names (the genotype table below, callers)
NUM_NODES = DARTS.num_nodes
CONCAT = DARTS.concat
num_inputs = DARTS.num_inputs
all_edges = DARTS.all_edges
column = DARTS.column
Edges = Tuple[Tuple[int, ...], ...]  # per node: the column indices it evaluates


# --------------------------------------------------------------------- genotype


class Genotype(NamedTuple):
  """DARTS genotype: 2 (op, input) pairs per node, per cell type, and the nodes whose
  concat is the cell output. `*_weights` (optional, one per pair) are constant factors of
  the ops' outputs in the derived network (ISTA's W after the search); None means 1."""
  normal: Tuple[Tuple[str, int], ...]
  normal_concat: Tuple[int, ...]
  reduce: Tuple[Tuple[str, int], ...]
  reduce_concat: Tuple[int, ...]
  normal_weights: Optional[Tuple[float, ...]] = None
  reduce_weights: Optional[Tuple[float, ...]] = None

  def edges(self, cell: str, space: CellSpace = DARTS) -> Edges:
    """The columns of `cell`'s nodes in `space` (an error if a pair is not in it)."""
    pairs = self.normal if cell == 'normal' else self.reduce
    if len(pairs) != 2 * space.num_nodes:
      raise ValueError(f'a genotype of the {space.name!r} space needs 2 (op, input) '
                       f'pairs per node ({space.num_nodes} nodes), got {pairs}')
    for i in range(space.num_nodes):
      for op, j in pairs[2 * i: 2 * i + 2]:
        if op not in space.ops or not 0 <= j < space.num_inputs(i):
          raise ValueError(f'node {i}: ({op!r}, {j}) is not in the {space.name.upper()} '
                           f'space (ops {space.ops})')
    cols = [space.column(op, j) for op, j in pairs]
    return tuple(tuple(cols[2 * i: 2 * i + 2]) for i in range(space.num_nodes))

  def weights(self, cell: str):
    w = self.normal_weights if cell == 'normal' else self.reduce_weights
    return None if w is None else tuple(tuple(w[2 * i: 2 * i + 2])
                                        for i in range(len(w) // 2))

  def to_json(self) -> dict:
    out = {'normal': [[op, int(j)] for op, j in self.normal],
           'normal_concat': [int(i) for i in self.normal_concat],
           'reduce': [[op, int(j)] for op, j in self.reduce],
           'reduce_concat': [int(i) for i in self.reduce_concat]}
    for k in ('normal_weights', 'reduce_weights'):
      if getattr(self, k) is not None:
        out[k] = [float(w) for w in getattr(self, k)]
    return out

  @classmethod
  def from_json(cls, d) -> 'Genotype':
    d = json.loads(d) if isinstance(d, str) else d
    pairs = lambda k: tuple((str(op), int(j)) for op, j in d[k])
    opt = lambda k: None if d.get(k) is None else tuple(float(w) for w in d[k])
    return cls(pairs('normal'), tuple(int(i) for i in d['normal_concat']), pairs('reduce'),
               tuple(int(i) for i in d['reduce_concat']), opt('normal_weights'),
               opt('reduce_weights'))

  @classmethod
  def from_edges(cls, normal: Edges, reduce: Edges, normal_weights=None,
                 reduce_weights=None, space: CellSpace = DARTS) -> 'Genotype':
    """The genotype of these columns of `space` (its nodes all concatenated)."""
    pairs = lambda edges: tuple(space.pair(c) for n in edges for c in n)
    flat = lambda w: None if w is None else tuple(float(v) for v in np.ravel(w))
    return cls(pairs(normal), space.concat, pairs(reduce), space.concat,
               flat(normal_weights), flat(reduce_weights))

  def __str__(self):
    def cell(pairs, concat, weights):
      nodes = []
      for i in range(len(pairs) // 2):
        terms = [f'{op}({j})' + ('' if weights is None else f'*{weights[2 * i + e]:.3g}')
                 for e, (op, j) in enumerate(pairs[2 * i: 2 * i + 2])]
        nodes.append(f'n{i + 2} = ' + ' + '.join(terms))
      return '; '.join(nodes) + f'; out = concat{tuple(concat)}'
    return (f'normal: {cell(self.normal, self.normal_concat, self.normal_weights)}\n'
            f'reduce: {cell(self.reduce, self.reduce_concat, self.reduce_weights)}')


# DARTS (second order) CIFAR-10 cell, Liu et al. 2019, inputs 0/1 = c_{k-2}/c_{k-1}.
DARTS_V2 = Genotype(
    normal=(('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
            ('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0),
            ('skip_connect', 0), ('dil_conv_3x3', 2)),
    normal_concat=CONCAT,
    reduce=(('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),
            ('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2),
            ('skip_connect', 2), ('max_pool_3x3', 1)),
    reduce_concat=CONCAT)

GENOTYPES = {'DARTS_V2': DARTS_V2}


def parse_genotype(value) -> Genotype:
  """A name from GENOTYPES, a JSON string / dict, or a Genotype."""
  if isinstance(value, Genotype):
    return value
  if isinstance(value, str) and value in GENOTYPES:
    return GENOTYPES[value]
  try:
    return Genotype.from_json(value)
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f'genotype {value!r}: use one of {sorted(GENOTYPES)} or the JSON of '
                     'Genotype.to_json()') from e


# -------------------------------------------------------------------- the network


@dataclasses.dataclass(frozen=True)
class Spec:
  """Static shape of the network (hashable: a Flax module field)."""
  channels: int = 36
  layers: int = 20
  stem: str = 'cifar'          # 'cifar' (3x3 conv to stem_multiplier*C) | 'imagenet'
  stem_multiplier: int = 3
  auxiliary: bool = True
  affine: bool = True
  pool_bn: bool = False
  bn_momentum: float = 0.9
  space: CellSpace = DARTS     # the ops and nodes of the cells

  def reductions(self):
    return tuple(sorted({self.layers // 3, 2 * self.layers // 3}))

  def aux_position(self):
    return 2 * self.layers // 3


def space_config() -> ml_collections.ConfigDict:
  """The config.nas fields that shape the cell network (shared by ista/darts/darts_fixed)."""
  n = ml_collections.ConfigDict()
  n.channels = 36               # C of the first cells (doubled at each reduction)
  n.layers = 20                 # number of cells; reductions at layers//3 and 2*layers//3
  n.stem = 'cifar'              # 'cifar' (8-32 px) | 'imagenet' (224 px: 3 stride-2 convs)
  n.stem_multiplier = 3
  n.auxiliary_weight = 0.4      # 0: no auxiliary head
  n.drop_path = 0.2             # after the search only (0: off)
  n.affine = True               # BN scale/bias inside the ops
  n.pool_bn = False             # non-affine BN after the pooling ops
  n.cell_space = 'darts'        # the cell's ops and nodes: a name in cell_space.SPACES
  return n


def make_spec(n, bn_momentum) -> Spec:
  if n.stem not in ('cifar', 'imagenet'):
    raise ValueError(f"config.nas.stem={n.stem!r}: use 'cifar' or 'imagenet'")
  return Spec(int(n.channels), int(n.layers), n.stem, int(n.stem_multiplier),
              float(n.auxiliary_weight) > 0, bool(n.affine), bool(n.pool_bn),
              float(bn_momentum), cell_space.get(n.cell_space))


class Cell(nn.Module):
  spec: Spec
  channels: int
  reduction: bool
  reduction_prev: bool
  edges: Edges
  concat: Optional[Tuple[int, ...]] = None  # None: every node (spec.space.concat)
  bn_axis_name: Optional[str] = None
  traced: bool = False

  @nn.compact
  def __call__(self, s0, s1, weights, drop_rate, rng, train, columns=None):
    sp, c = self.spec, self.channels
    concat = sp.space.concat if self.concat is None else self.concat
    bn = dict(affine=sp.affine, bn_axis_name=self.bn_axis_name, bn_momentum=sp.bn_momentum)
    if self.reduction_prev:
      s0 = darts_ops.FactorizedReduce(c, name='pre0', **bn)(s0, train)
    else:
      s0 = darts_ops.ReLUConvBN(c, name='pre0', **bn)(s0, train)
    states = [s0, darts_ops.ReLUConvBN(c, name='pre1', **bn)(s1, train)]
    if self.traced:
      if self.is_initializing():
        raise ValueError('a traced DartsNet runs the supernet\'s variables, packed: '
                         'initialise the supernet (all_edges) and pack them')
      ops = {k: self.variables.get(k, {}).get(cell_packed.OPS_KEY, {})
             for k in ('params', 'batch_stats')}
      nodes, new_stats = cell_packed.traced_nodes(sp, c, self.reduction, states[0],
                                                  states[1], ops, columns, weights,
                                                  drop_rate, rng, train, self.bn_axis_name)
      if train and self.is_mutable_collection('batch_stats') and new_stats:
        self.put_variable('batch_stats', cell_packed.OPS_KEY, new_stats)
      return jnp.concatenate([(states + list(nodes))[k] for k in concat], -1)
    for i, cols in enumerate(self.edges):
      total = 0.0
      for e, col in enumerate(cols):
        op, j = sp.space.pair(col)
        stride = 2 if self.reduction and j < 2 else 1
        h = darts_ops.make_op(op, c, stride, pool_bn=sp.pool_bn,
                              name=cell_packed.op_name(i, j, op),
                              **bn)(states[j], train)
        if drop_rate is not None and rng is not None and not darts_ops.is_identity(op, stride):
          key = jax.random.fold_in(rng, cell_packed.path_key(sp.space, i, col))
          h = darts_ops.drop_path(h, drop_rate, key)
        if weights is not None and weights[i] is not None:
          h = h * jnp.asarray(weights[i][e], h.dtype)
        total = total + h
      states.append(total)
    return jnp.concatenate([states[k] for k in concat], -1)


class AuxHead(nn.Module):
  """DARTS auxiliary classifier: ReLU, 5x5 average pool (skipped below 5 px), 1x1 conv to
  128, BN, ReLU, conv to 768 (2x2, or the remaining size if smaller), BN, ReLU, global
  mean, linear."""
  num_classes: int
  stride: int = 3
  bn_axis_name: Optional[str] = None
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train=False):
    bn = common.partial_bn(train, self.bn_axis_name, self.bn_momentum)
    x = nn.relu(x)
    if x.shape[1] >= 5:
      x = conv.avg_pool(x, 5, self.stride, padding='VALID', count_include_pad=True)
    x = nn.relu(bn()(conv.Conv(128, (1, 1))(x)))
    k = min(2, x.shape[1])
    x = nn.relu(bn()(conv.Conv(768, (k, k), padding='VALID')(x)))
    return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))


class DartsNet(nn.Module):
  """The cell network. `normal` / `reduce` are the static columns per node; `weights`
  (call argument) gives per node an array of edge factors aligned with them, else the
  constant `*_weights` fields, else 1. traced=True: `weights` is (factors, columns), both
  [2, nodes, 2] (cell type, node, slot), the columns traced ints (cell_packed.traced_nodes). Returns
  logits, or (logits, aux_logits) when with_aux (aux_logits None unless training with an
  auxiliary head)."""
  spec: Spec
  num_classes: int
  normal: Edges
  reduce: Edges
  normal_concat: Optional[Tuple[int, ...]] = None  # None: every node (spec.space.concat)
  reduce_concat: Optional[Tuple[int, ...]] = None
  normal_weights: Optional[Tuple[Tuple[float, ...], ...]] = None
  reduce_weights: Optional[Tuple[Tuple[float, ...], ...]] = None
  bn_axis_name: Optional[str] = 'data'
  traced: bool = False  # weights = (factors, columns), traced [2, nodes, 2]; edges unused

  @nn.compact
  def __call__(self, x, train=False, weights=None, drop_rate=None, rng=None, with_aux=False):
    sp = self.spec
    bn = common.partial_bn(train, self.bn_axis_name, sp.bn_momentum)
    c = sp.channels
    if sp.stem == 'cifar':
      s0 = s1 = bn(name='stem_bn')(conv.Conv(sp.stem_multiplier * c, (3, 3), padding=1,
                                             name='stem_conv')(x))
      reduction_prev = False
    else:
      s0 = nn.relu(bn(name='stem0_bn1')(conv.Conv(c // 2, (3, 3), 2, padding=1,
                                                  name='stem0_conv1')(x)))
      s0 = bn(name='stem0_bn2')(conv.Conv(c, (3, 3), 2, padding=1, name='stem0_conv2')(s0))
      s1 = bn(name='stem1_bn')(conv.Conv(c, (3, 3), 2, padding=1,
                                         name='stem1_conv')(nn.relu(s0)))
      reduction_prev = True
    columns = (None, None)
    if self.traced:
      weights, columns = weights
    elif weights is None:
      weights = (self.normal_weights, self.reduce_weights)
    aux = None
    for k in range(sp.layers):
      reduction = k in sp.reductions()
      c = c * 2 if reduction else c
      t = int(reduction)
      cell = Cell(sp, c, reduction, reduction_prev, (self.normal, self.reduce)[t],
                  (self.normal_concat, self.reduce_concat)[t], self.bn_axis_name,
                  self.traced, name=f'cell{k}')
      s0, s1 = s1, cell(s0, s1, weights[t], drop_rate,
                        None if rng is None else jax.random.fold_in(rng, k), train,
                        columns[t])
      reduction_prev = reduction
      if (k == sp.aux_position() and sp.auxiliary and with_aux
          and (train or self.is_initializing())):
        aux = AuxHead(self.num_classes, 3 if sp.stem == 'cifar' else 2, self.bn_axis_name,
                      sp.bn_momentum, name='aux_head')(s1, train)
    logits = nn.Dense(self.num_classes, name='classifier')(jnp.mean(s1, axis=(1, 2)))
    return (logits, aux) if with_aux else logits


def child_net(spec: Spec, num_classes: int, genotype: Genotype, bn_axis_name=None):
  """The derived network of a genotype (its constant edge weights included)."""
  return DartsNet(spec, num_classes, genotype.edges('normal', spec.space),
                  genotype.edges('reduce', spec.space),
                  tuple(genotype.normal_concat), tuple(genotype.reduce_concat),
                  genotype.weights('normal'), genotype.weights('reduce'), bn_axis_name)


def init_variables(net: DartsNet, rng, dummy):
  """Variables (auxiliary head included) with Flax's default initializers, filled on the
  host (host_init: jit-compiling the init of a supernet with hundreds of convolutions took
  5-9 minutes on this CPU, eager init 25-45 s)."""
  return host_init.variables(lambda x: net.init(jax.random.PRNGKey(0), x, train=False,
                                                with_aux=True), rng, dummy,
                             key=('DartsNet.init', repr(net)))


def restrict(tree, template):
  """`tree` (supernet variables) restricted to the keys of `template` (a child's)."""
  if not hasattr(template, 'items'):
    return tree
  return {k: restrict(tree[k], v) for k, v in template.items()}


def _size(tree) -> int:
  return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(tree)))


@functools.lru_cache(maxsize=16)
def _op_sizes(spec, num_classes, image_shape):
  """({(cell, op name): parameters}, parameters outside the ops) of the supernet: a
  child's weights are the supernet's restricted to its ops, so its size is a sum. Traced
  once per machine (compile_cache.traced_once)."""
  return compile_cache.traced_once('op_sizes', (repr(spec), num_classes, image_shape),
                                   lambda: _trace_op_sizes(spec, num_classes, image_shape))


def _trace_op_sizes(spec, num_classes, image_shape):
  edges = spec.space.all_edges()
  net = DartsNet(spec, num_classes, edges, edges, bn_axis_name=None)
  shapes = conv.eval_shape(lambda x: net.init(jax.random.PRNGKey(0), x, train=False),
                           jax.ShapeDtypeStruct((1,) + image_shape, jnp.float32))['params']
  ops, rest = {}, 0
  for k, sub in shapes.items():
    for name, leaves in (sub.items() if k.startswith('cell') else [(None, sub)]):
      if name is not None and name.startswith('node'):
        ops[k, name] = _size(leaves)
      else:
        rest += _size(leaves)
  return ops, rest


def count_params(spec: Spec, num_classes: int, normal: Edges, reduce: Edges,
                 image_shape: Sequence[int]) -> int:
  """Parameters of the network with these edges, auxiliary head excluded (the DARTS
  convention for reported sizes and the budget): the supernet traced once, then a sum
  (a random genotype's budget check draws many)."""
  ops, total = _op_sizes(spec, num_classes, tuple(int(s) for s in image_shape))
  for k in range(spec.layers):
    for i, cols in enumerate(reduce if k in spec.reductions() else normal):
      for col in cols:
        op, j = spec.space.pair(col)
        total += ops.get((f'cell{k}', cell_packed.op_name(i, j, op)), 0)
  return total


# --------------------------------------------------------------------- the picture


def genotype_figure(genotype: Genotype, title=''):
  """The normal and reduction cells as graphs: inputs c_{k-2}, c_{k-1}, the nodes (0-3
  in DARTS: as many as the genotype has, 2 pairs each) and the output, edges labelled
  with their op (and weight). Matplotlib, Agg backend."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(13, 5))
  for ax, cell in zip(axes, ('normal', 'reduce')):
    pairs = getattr(genotype, cell)
    weights = getattr(genotype, cell + '_weights')
    concat = getattr(genotype, cell + '_concat')
    nodes = len(pairs) // 2
    at = lambda k: k / max(nodes - 1, 1)  # the nodes on a diagonal, first to last
    pos = {0: (0.0, 0.8), 1: (0.0, 0.2)}
    pos.update({k + 2: (0.25 + 0.51 * at(k), 0.9 - 0.81 * at(k)) for k in range(nodes)})
    out = (1.0, 0.5)
    names = {0: 'c_{k-2}', 1: 'c_{k-1}'}
    names.update({k + 2: str(k) for k in range(nodes)})
    for e, (op, j) in enumerate(pairs):
      a, b = pos[j], pos[e // 2 + 2]
      ax.annotate('', b, a, arrowprops=dict(arrowstyle='->', color='tab:blue', lw=1.2,
                                            shrinkA=14, shrinkB=14,
                                            connectionstyle='arc3,rad=0.12'))
      label = op if weights is None else f'{op} ({weights[e]:.2f})'
      ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.02 * (e % 2 * 2 - 1), label,
              fontsize=7, ha='center', color='darkred')
    for k in concat:
      ax.annotate('', out, pos[k], arrowprops=dict(arrowstyle='->', color='gray', lw=0.8,
                                                   shrinkA=14, shrinkB=16))
    for k, (x, y) in pos.items():
      ax.text(x, y, names[k], ha='center', va='center', fontsize=9,
              bbox=dict(boxstyle='round', fc='lightgreen' if k < 2 else 'lightblue'))
    ax.text(*out, 'c_{k}', ha='center', va='center', fontsize=9,
            bbox=dict(boxstyle='round', fc='khaki'))
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.05, 1.05)
    ax.axis('off')
    ax.set_title(f'{cell} cell')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  return fig
