"""The packed layout of a cell supernet's variables and the traced-column execution.

A DartsNet built with `traced=True` (darts_space.py) runs the supernet with the 2
columns of every node given as traced ints (ISTA's support read from its state inside one
compiled step, `traced_nodes`): a cell's 8 (input, op) slots are one lax.scan whose body
picks the input state and the edge's weights by index and the op by lax.switch,
recomputed in the backward pass (choice_space.single_path with remat), so every slot costs one op and the step one
compile, whatever the support. Its variables are `pack`ed: the node ops of a cell stacked
per op over the edges of the same shape (a few large arrays instead of ~350 small ones a
cell: every array is a kernel of the optimizer step and crosses the call).

The layout and its execution are one concept apart from the network that uses them
(darts_space.py): `spec` below is a darts_space.Spec, read by its fields only.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.nas import choice_space, darts_ops
from dha_jax.nas.cell_space import CellSpace


def path_key(space, i, col):
  """The drop-path key of node i's column col (64 * i + col in the DARTS space)."""
  return max(64, space.max_columns) * i + col


def _edge_groups(space: CellSpace, reduction):
  """A cell's (node, input) edges by what their ops compute: one group in a normal cell;
  in a reduction cell the stride-2 edges from the cell inputs (j < 2) and the stride-1
  edges between nodes (other shapes). Per group: (edges, stride)."""
  edges = [(i, j) for i in range(space.num_nodes) for j in range(space.num_inputs(i))]
  if not reduction:
    return ((tuple(edges), 1),)
  return (tuple(e for e in edges if e[1] < 2), 2), (tuple(e for e in edges if e[1] >= 2), 1)


OPS_KEY = 'ops'  # a packed cell's node ops: {'g<group>_<op>': the edges' variables stacked}


def op_name(i, j, op):
  return f'node{i}_in{j}_{op}'


def _group_name(g, op):
  return f'g{g}_{op}'


def _rows(a, count):
  """Per-edge width of a packed leaf (edges concatenated along the last axis)."""
  return a.shape[-1] // count


def pack(tree, spec):
  """Supernet variables (one collection, e.g. params) -> the traced network's layout:
  in every cell, each op's variables over the edges of a group concatenated along their
  last axis, under cell['ops']['g<g>_<op>']. The rank of every leaf is kept, so
  hypergrad.group_index puts it in the same eta group; the values are the same."""
  out = dict(tree)
  for k in range(spec.layers):
    cell = tree.get(f'cell{k}')
    if cell is None:
      continue
    new = {n: v for n, v in cell.items() if not n.startswith('node')}
    ops = {}
    for g, (edges, _) in enumerate(_edge_groups(spec.space, k in spec.reductions())):
      for op in spec.space.ops:
        trees = [cell.get(op_name(i, j, op)) for i, j in edges]
        if trees[0] is not None:
          ops[_group_name(g, op)] = jax.tree_util.tree_map(
              lambda *xs: jnp.concatenate(xs, -1), *trees)
    if ops:
      new[OPS_KEY] = ops
    out[f'cell{k}'] = new
  return out


def unpack(tree, spec):
  """pack's inverse (numpy or jax arrays): the supernet's names, per (node, input, op)."""
  out = dict(tree)
  for k in range(spec.layers):
    cell = tree.get(f'cell{k}')
    if cell is None or OPS_KEY not in cell:
      continue
    new = {n: v for n, v in cell.items() if n != OPS_KEY}
    for g, (edges, _) in enumerate(_edge_groups(spec.space, k in spec.reductions())):
      for op in spec.space.ops:
        packed = cell[OPS_KEY].get(_group_name(g, op))
        if packed is None:
          continue
        for r, (i, j) in enumerate(edges):
          new[op_name(i, j, op)] = jax.tree_util.tree_map(
              lambda a, r=r, e=len(edges): a[..., r * _rows(a, e):(r + 1) * _rows(a, e)],
              packed)
    out[f'cell{k}'] = new
  return out


def pack_index(tree, spec):
  """For every leaf of a packed tree: None outside the node ops, else the (node, column)
  of each of its edges in order: ((i, space.column(op, j)), ...) (ISTA's mask reads it)."""
  def index(path, _):
    names = [str(getattr(p, 'key', p)) for p in path]
    if len(names) < 3 or names[1] != OPS_KEY:
      return None
    g, op = names[2][1:].split('_', 1)
    edges = _edge_groups(spec.space, int(names[0][4:]) in spec.reductions())[int(g)][0]
    return tuple((i, spec.space.column(op, j)) for i, j in edges)
  return jax.tree_util.tree_map_with_path(index, tree)


def traced_nodes(spec, channels, reduction, s0, s1, ops, columns, weights,
                 drop_rate, rng, train, bn_axis_name):
  """The nodes of a cell whose columns are traced: columns [nodes, 2] ints (j * 7 + o in
  the DARTS space: spec.space.column), weights [nodes, 2] the factors of their outputs,
  ops the cell's packed node ops ({'params': ..., 'batch_stats': ...} of cell['ops'], see
  pack). Returns (the node states, the new packed statistics).

  One lax.scan over the 2 * nodes (node, slot) pairs (8 in DARTS): the input is read
  from a buffer of the cell's states by index, the edge's weights and statistics from the
  packed arrays by index, and the op is a lax.switch over the space's ops (7 in DARTS;
  twice as many in a reduction cell: per group)
  under choice_space.single_path(remat=True), so each slot runs one op forward and
  recomputes it in the backward pass. Unselected weights get exactly zero gradient and
  their statistics come back unchanged. The same sums, in the same order, as the static
  Cell on those columns."""
  space = spec.space
  nodes, num_ops = space.num_nodes, space.num_ops
  groups = _edge_groups(space, reduction)
  bn = dict(affine=spec.affine, pool_bn=spec.pool_bn, bn_axis_name=bn_axis_name,
            bn_momentum=spec.bn_momentum)
  count = [len(edges) for edges, _ in groups]
  stacks = {k: tuple(tuple(ops[k].get(_group_name(g, op), {}) for op in space.ops)
                     for g in range(len(groups))) for k in ('params', 'batch_stats')}
  rows = np.zeros((len(groups), nodes, space.num_inputs(nodes - 1)), np.int32)
  for g, (edges, _) in enumerate(groups):
    for r, (i, j) in enumerate(edges):
      rows[g, i, j] = r

  def branch(g, o, module):
    def f(params, stats, x):
      v = {'params': params[g][o], 'batch_stats': stats[g][o]}
      if train:
        y, new = module.apply(v, x[g], train=True, mutable=['batch_stats'])
        new = new.get('batch_stats', stats[g][o])
      else:
        y, new = module.apply(v, x[g], train=False), stats[g][o]
      out = [list(s) for s in stats]
      out[g][o] = new
      return y, tuple(tuple(s) for s in out)
    return f

  fns = [branch(g, o, darts_ops.make_op(op, channels, stride, **bn))
         for g, (_, stride) in enumerate(groups) for o, op in enumerate(space.ops)]
  run = choice_space.single_path(fns, remat=True)
  # the states a slot reads: normal cell one buffer [s0, s1, nodes]; reduction cell the
  # inputs (stride-2 edges) and the half-resolution nodes apart
  n, hgt, wid, _ = s0.shape
  if reduction:
    inputs = jnp.stack([s0, s1])
    buf, first = jnp.zeros((nodes, n, (hgt + 1) // 2, (wid + 1) // 2, channels),
                           s0.dtype), 0
  else:
    buf, first = jnp.concatenate([jnp.stack([s0, s1]),
                                  jnp.zeros((nodes,) + s0.shape, s0.dtype)]), 2
  drop = drop_rate is not None and rng is not None
  skip = space.ops.index('skip_connect') if 'skip_connect' in space.ops else -1

  def take(tree, row):
    return tuple(tuple(jax.tree_util.tree_map(
        lambda a, g=g: jax.lax.dynamic_slice_in_dim(a, row[g] * _rows(a, count[g]),
                                                    _rows(a, count[g]), -1), t)
        for t in per_op) for g, per_op in enumerate(tree))

  def put(tree, new, row):
    return tuple(tuple(jax.tree_util.tree_map(
        lambda a, v, g=g: jax.lax.dynamic_update_slice_in_dim(
            a, v, row[g] * _rows(a, count[g]), -1), t, u)
        for t, u in zip(per_op, new_per_op)) for g, (per_op, new_per_op) in
        enumerate(zip(tree, new)))

  def body(carry, xs):
    buf, acc, stats = carry
    i, col, w, second = xs
    j, o = col // num_ops, col % num_ops
    if reduction:
      g = (j >= 2).astype(jnp.int32)
      x = (inputs[jnp.minimum(j, 1)], buf[jnp.clip(j - 2, 0, nodes - 1)])
    else:
      g, x = jnp.zeros((), jnp.int32), (buf[j],)
    row = jnp.asarray(rows)[:, i, j]
    h, new = run(g * num_ops + o, take(stacks['params'], row), take(stats, row), x)
    stats = put(stats, new, row)
    if drop:  # as the static Cell: identities carry no weights and are never dropped
      identity = (o == skip) & (j >= 2 if reduction else True)  # no skip: never
      h = jnp.where(identity, h, darts_ops.drop_path(
          h, drop_rate, jax.random.fold_in(rng, path_key(space, i, col))))
    h = h * w.astype(h.dtype)
    acc = jnp.where(second, acc + h, h)
    return (buf.at[first + i].set(acc), acc, stats), None  # slot 0 writes a partial sum

  columns = jnp.asarray(columns, jnp.int32).reshape(-1)
  xs = (jnp.repeat(jnp.arange(nodes), 2), columns,
        jnp.asarray(weights).reshape(-1), jnp.tile(jnp.asarray([False, True]), nodes))
  acc = jnp.zeros(buf.shape[1:], s0.dtype)
  (buf, _, stats), _ = jax.lax.scan(body, (buf, acc, stacks['batch_stats']), xs)
  new_stats = {_group_name(g, op): stats[g][o] for g in range(len(groups))
               for o, op in enumerate(space.ops) if _group_name(g, op) in ops['batch_stats']}
  return [buf[first + i] for i in range(nodes)], new_stats
