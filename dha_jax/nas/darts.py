"""Strategies on the DARTS cell space besides ISTA (the papers' baselines):

'darts'        first-order DARTS: every edge is the softmax(alpha)-weighted sum of the 7
               ops (the supernet), alpha learned on the held-out validation loss
               (arch_objective = 'val': the step replaces grads['arch'] by the gradient of
               the un-augmented val loss at the current theta). Genotype by the standard
               rule: per node the 2 input edges with the largest max op weight, each with
               its strongest op. "NAS alone".
'darts_fixed'  trains a given genotype (config.nas.genotype: a name such as 'DARTS_V2' or
               Genotype JSON) with the auxiliary head and drop-path. "Fixed network".

What the three cell strategies (these two and ista.ISTA) share is cell_strategy.py's
CellStrategy. The cell's ops and nodes are config.nas.cell_space's (cell_space.py): '7
ops', '14 edges' above are the 'darts' space's.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dha_jax.core import optim
from dha_jax.nas import base, darts_space, random_control
from dha_jax.nas.cell_strategy import CellStrategy


# ----------------------------------------------------------------------- DARTS


def darts_config():
  """Every field config.nas may hold for strategy 'darts', with its default (the DARTS
  search recipe: no auxiliary head, non-affine BN, BN after pools)."""
  n = darts_space.space_config()
  n.strategy = 'darts'
  n.channels, n.layers = 16, 8
  n.auxiliary_weight = 0.0
  n.drop_path = 0.0
  n.affine = False
  n.pool_bn = True
  n.alpha_init_std = 1e-3      # alpha ~ alpha_init_std * N(0, 1)
  n.optimizer = ml_collections.ConfigDict(
      {'name': 'adam', 'lr': 3e-4, 'b1': 0.5, 'b2': 0.999, 'weight_decay': 1e-3})
  return n


def node_rows(space, i):
  """alpha rows (edges) of node i: 2 + 3 + ... in node order (space.num_edges in all)."""
  start = sum(space.num_inputs(k) for k in range(i))
  return slice(start, start + space.num_inputs(i))


def top2_genotype(space, p_normal, p_reduce) -> darts_space.Genotype:
  """The DARTS rule on op probabilities [num_edges, num_ops] ([14, 7] in DARTS): per
  node the 2 inputs whose best op is strongest, each with that op; the op's probability
  is kept as the child's edge weight."""
  edges, weights = [], []
  for p in (np.asarray(p_normal), np.asarray(p_reduce)):
    cell_e, cell_w = [], []
    for i in range(space.num_nodes):
      rows = p[node_rows(space, i)]
      best = np.argsort(-rows.max(-1), kind='stable')[:2]
      best = sorted(int(j) for j in best)
      cell_e.append(tuple(j * space.num_ops + int(np.argmax(rows[j])) for j in best))
      cell_w.extend(float(rows[j].max()) for j in best)
    edges.append(tuple(cell_e))
    weights.append(cell_w)
  return darts_space.Genotype.from_edges(edges[0], edges[1], weights[0], weights[1], space)


@base.STRATEGIES.register('darts')
class DARTS(CellStrategy):
  """First-order DARTS on the weighted-sum supernet."""
  fixed_counterpart = 'darts_fixed'
  arch_objective = 'val'
  default_config = staticmethod(darts_config)

  def __init__(self, config, num_classes, image_shape):
    super().__init__(config, num_classes, image_shape, darts_config(), 'darts')
    self.net = self.supernet()

  def init(self, rng, dummy):
    k_net, k_alpha = jax.random.split(rng)
    v = darts_space.init_variables(self.net, k_net, dummy)
    ka, kb = jax.random.split(k_alpha)
    shape = (self.space.num_edges, self.space.num_ops)
    arch = {'normal': self.cfg.alpha_init_std * jax.random.normal(ka, shape),
            'reduce': self.cfg.alpha_init_std * jax.random.normal(kb, shape)}
    return v['params'], v.get('batch_stats', {}), arch, {}

  def edge_weights(self, arch):
    """Per cell type, per node: softmax over ops of each input edge, flattened j*7+o
    (space.column)."""
    return tuple(tuple(jax.nn.softmax(arch[t][node_rows(self.space, i)], -1).reshape(-1)
                       for i in range(self.space.num_nodes)) for t in ('normal', 'reduce'))

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    return self.run(self.net, net, batch_stats, images, self.edge_weights(arch), None,
                    rng, train)

  def optimizer(self):
    return optim.group_optimizer(self.cfg.optimizer)

  def searching(self, nas_state):
    return jnp.ones((), bool)

  def probabilities(self, arch):
    a = jax.device_get(arch)
    return {t: np.asarray(jax.nn.softmax(jnp.asarray(a[t]), -1)) for t in a}

  def genotype_of(self, arch, nas_state):
    p = self.probabilities(arch)
    return top2_genotype(self.space, p['normal'], p['reduce'])

  def metrics(self, arch, nas_state):
    out = self.base_metrics(self.genotype_of(arch, nas_state))
    p = self.probabilities(arch)
    out['nas/mean_max_prob'] = float(np.mean([p[t].max(-1).mean() for t in p]))
    return out


# ----------------------------------------------------------------- fixed genotype


def fixed_config():
  """Every field config.nas may hold for strategy 'darts_fixed', with its default."""
  n = darts_space.space_config()
  n.strategy = 'darts_fixed'
  n.genotype = 'DARTS_V2'      # a name in darts_space.GENOTYPES, Genotype JSON, or 'random':
  #                              drawn uniformly from the space with config.seed (the random
  #                              control of docs/method.md 3c)
  n.budget_mparams = 0.0       # 'random': redraw while the network exceeds this (M params)
  n.execution = 'static'       # 'static': the genotype's network alone, compiled for it;
  #                              'traced': the genotype is data (nas_state), one compiled step
  #                              for every genotype of the space and sizes. Measured
  #                              2026-12-07 (Fashion-MNIST, 5 cells, C=8, 2 CPU cores):
  #                              static 28 s cold compile, 642 ms a step; traced 86 s once
  #                              for all genotypes, then ~9 s to load, 717 ms a step: it
  #                              pays from ~4 genotypes on (docs/results.md, "Compile once")
  return n


def random_genotype(space, rng: np.random.Generator) -> darts_space.Genotype:
  """Uniform over the space the cell strategies search: per cell type and node, 2
  distinct input edges, each with one of the space's ops (the support ISTA selects)."""
  cells, k = [], space.num_ops
  for _ in range(2):
    nodes = []
    for i in range(space.num_nodes):
      inputs = rng.choice(space.num_inputs(i), size=2, replace=False)
      nodes.append(tuple(sorted(int(j) * k + int(rng.integers(k)) for j in inputs)))
    cells.append(tuple(nodes))
  return darts_space.Genotype.from_edges(*cells, space=space)


# A derived cell's edge weights (DARTS's softmax, ISTA's codes W) are factors of the
# searched network's ops. Trained from scratch, as DARTS and two-stage ISTA-NAS retrain a
# searched cell, the cell is its ops and inputs alone (a weight of 1/7 or of -0.2 on every
# op would be a leftover of the search, and the 'random' control's genotypes have none).
SEARCH_ONLY = ('normal_weights', 'reduce_weights')


@base.STRATEGIES.register('darts_fixed')
class DartsFixed(base.SparseExecution, base.FixedGenotype, CellStrategy):
  """Trains one genotype: no architecture parameters, never searching (drop-path on).

  'static' (default) builds the genotype's network alone. 'traced' runs the supernet's
  packed variables with the genotype's columns and edge factors read from nas_state
  (cell_packed.traced_nodes), so every genotype of the space and sizes shares one
  compiled step (the random control's seeds, sequential's second half); the weights of
  the ops off the genotype are kept exactly (traced_mask). Both compute the same
  function (tests/test_darts_fixed.py)."""
  added_fields = {'cell_space': 'darts', 'execution': 'static'}  # (execution: 2026-12-07)
  default_config = staticmethod(fixed_config)

  @classmethod
  def configure_random(cls, nas_config):
    nas_config.genotype = 'random'

  @classmethod
  def configure_derived(cls, nas_config):
    nas_config.genotype = 'DARTS_V2'

  @classmethod
  def genotype_flag(cls, genotype):
    """Genotype JSON of the discrete cell, without the search's edge weights."""
    g = {k: v for k, v in genotype.items() if k not in SEARCH_ONLY}
    return '--config.nas.genotype=' + json.dumps(g, separators=(',', ':'))

  def __init__(self, config, num_classes, image_shape):
    super().__init__(config, num_classes, image_shape, fixed_config(), 'darts_fixed')
    if self.cfg.execution not in ('traced', 'static'):
      raise ValueError(f'config.nas.execution={self.cfg.execution!r}: one of '
                       "('traced', 'static') for strategy 'darts_fixed'")
    if self.cfg.genotype == 'random':  # drawn with the run's seed, within the budget
      gen = np.random.default_rng([int(config.seed), 5])
      self.genotype = random_control.draw_within_budget(
          lambda: random_genotype(self.space, gen), self.num_child_params,
          float(self.cfg.budget_mparams) * 1e6, 'config.nas.budget_mparams')
    else:
      self.genotype = darts_space.parse_genotype(self.cfg.genotype)
    every_node = tuple(self.space.concat)
    self.packed = (self.cfg.execution == 'traced' and tuple(self.genotype.normal_concat) ==
                   every_node == tuple(self.genotype.reduce_concat))  # the traced cell
    if self.packed:                                                  # concatenates all
      self.net = self.supernet(traced=True)
    else:
      self.net = darts_space.child_net(self.spec, num_classes, self.genotype,
                                       bn_axis_name='data')

  @property
  def data_fields(self):
    return ('genotype', 'budget_mparams') if self.packed else ()  # traced: in nas_state

  def program_key(self):
    return None if self.packed else self.genotype  # static: drawn from config.seed

  def columns(self):
    """(columns, factors): [2, nodes, 2] int32 and float32 arrays of the genotype."""
    cols = np.asarray([self.genotype.edges(t, self.space) for t in ('normal', 'reduce')],
                      np.int32)
    w = [self.genotype.weights(t) for t in ('normal', 'reduce')]
    factors = np.asarray([np.ones(cols.shape[1:]) if x is None else x for x in w],
                         np.float32)
    return cols, factors

  def init(self, rng, dummy):
    if not self.packed:
      v = darts_space.init_variables(self.net, rng, dummy)
      return v['params'], v.get('batch_stats', {}), {}, {}
    v = darts_space.init_variables(self.supernet(), rng, dummy)
    cols, factors = self.columns()
    nas_state = {'support': jnp.asarray(cols), 'weights': jnp.asarray(factors)}
    return self.pack(v['params']), self.pack(v.get('batch_stats', {})), {}, nas_state

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    rate = self.drop_rate(jnp.zeros((), bool), rng, train)
    weights = (nas_state['weights'], nas_state['support']) if self.packed else None
    return self.run(self.net, net, batch_stats, images, weights, rate, rng, train)

  def active_mask(self, net_params, nas_state):
    return self.traced_mask(net_params, nas_state['support']) if self.packed else None

  def optimizer(self):
    return optax.identity()

  def searching(self, nas_state):
    return jnp.zeros((), bool)

  def genotype_of(self, arch, nas_state):
    return self.genotype

  def metrics(self, arch, nas_state):
    return self.base_metrics(self.genotype)
