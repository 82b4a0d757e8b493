"""ISTA-NAS one-stage (docs/method.md 3b): the architecture as sparse codes on the DARTS cells.

Per cell type t and node i: a code b_{t,i} in R^7 (params['arch']['b'], learned by Adam
on the training loss in the step's one jax.grad) and a fixed seeded Gaussian
A_{t,i} in R^{7 x (i+2)*7} (nas_state['A'], zero-padded to 35 columns: a zero column never
enters a LASSO solution). Once per epoch on the host (end_of_epoch):
  x = argmin 1/2 ||A x - b||^2 + lam ||x||_1          (sparse_recovery.lasso: exact, float64)
  S = the 2 largest |x| on 2 distinct input edges       (any of the 7 ops)
  frozen |= ||x - x_last|| <= threshold                 (from `freeze_from_epoch` on)
(each node's ||x - x_last|| is kept in nas_state['moved'] and logged, nas/code_moves),
and a candidate support whose derived network exceeds the parameter budget is rejected.
In the step, node i evaluates only its 2 ops, weighted by
  W = b^T A_S - (A_S^T A_S - I) x_S                    (so dL/db = A_S dL/dW),
frozen codes are kept exactly (keep_fixed), and once all nodes are frozen the search is
over: the same network trains on (with drop-path). The loop also ends it at
config.nas.max_search_fraction of the run (stop_search: every node still searching is
frozen at its current support).

Execution (config.nas.execution):
  'traced'  (default) the support is read from nas_state inside the step: every cell's 8
            (input, op) slots pick their input, weights and op by index (lax.scan over
            the slots, lax.switch over the 7 ops, recomputed in the backward pass:
            cell_packed.traced_nodes). One compiled step for the whole run; unused ops'
            weights and optimizer state are kept by a traced mask (active_mask,
            sparse_update.update_theta_and_eta). theta and the BatchNorm statistics are
            stored packed (cell_packed.pack: each op stacked over a cell's edges; `unpack`
            gives the supernet's names, child() exports them), so a state does not move
            between 'traced' and the other two.
  'static'  the support is static Python structure of a specialised strategy (static_key
            / specialize: the train loop compiles one step per support, at most one per
            epoch; unused weights stay out of the call, sparse_update.SkipInactive).
  'masked'  the supernet (all 7 ops on every edge, zero weight off the support): the same
            outputs, the supernet's cost.
Measured in benchmarks/ista_cost.py.

The sizes above (7 ops, 4 nodes, 35 columns) are the 'darts' cell space's: every one is
read from the strategy's space (self.spec.space, config.nas.cell_space; cell_space.py):
M = num_ops measurements per node, N_MAX = its max_columns.
"""

import copy
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dha_jax.core import optim
from dha_jax.layers import conv
from dha_jax.nas import base, darts_space
from dha_jax.nas.cell_strategy import CellStrategy
from dha_jax.nas.sparse_recovery import lasso

CELLS = ('normal', 'reduce')
EXECUTIONS = ('traced', 'static', 'masked')


def default_config():
  """Every field config.nas may hold for strategy 'ista', with its default (CIFAR)."""
  n = darts_space.space_config()
  n.strategy = 'ista'
  n.lam = 1e-5                  # LASSO penalty
  n.lasso_iters = 20000         # cap of the FISTA fallback (a degenerate homotopy path)
  n.lasso_tol = 1e-10           # relative duality gap the recovery must reach
  n.code_init_std = 0.1         # b ~ code_init_std * N(0, 1)
  n.measurement_seed = 0        # A ~ N(0, 1/7), from this seed
  n.freeze_threshold = 1e-3     # freeze a node when ||x_new - x_last||_2 <= this
  n.freeze_from_epoch = 2       # end_of_epoch(epoch) freezes only for epoch >= this
  n.budget_mparams = 0.0        # > 0: reject supports whose network exceeds this (M params)
  n.execution = 'traced'        # 'traced' (one step) | 'static' (one per support) | 'masked'
  n.max_search_fraction = 0.3   # fix every node still searching at this fraction of the run
  #                               (of num_epochs, or of the time budget); 0 = never
  n.optimizer = ml_collections.ConfigDict(
      {'name': 'adam', 'lr': 3e-4, 'b1': 0.5, 'b2': 0.999, 'weight_decay': 1e-3})
  return n


# --------------------------------------------------------------- support and W


def valid_columns(space, node):
  """Columns of node's code in `space` (the rest of its N_MAX = max_columns are padding)."""
  return space.num_columns(node)


def select_support(space, x):
  """x [2, nodes, N_MAX] -> [2, nodes, 2] column indices ([2, 4, 35] -> [2, 4, 2] in
  DARTS): the largest |x| of a node, then the largest on another input edge; sorted.
  Ties go to the lower column."""
  M = space.num_ops  # pylint: disable=invalid-name
  x = np.abs(np.asarray(x))
  out = np.zeros(x.shape[:2] + (2,), np.int32)
  for t in range(x.shape[0]):
    for i in range(x.shape[1]):
      v = x[t, i, :valid_columns(space, i)]
      first = int(np.argmax(v))
      other = np.where(np.arange(v.size) // M != first // M, v, -1.0)
      out[t, i] = sorted((first, int(np.argmax(other))))
  return out


def edge_weights(b, A, x, support):
  """W [2, 4, 2] = b^T A_S - (A_S^T A_S - I) x_S per (cell, node): differentiable in b.
  support: [2, 4, 2] indices (a numpy constant or a traced array)."""
  A_S = jnp.take_along_axis(A, jnp.asarray(support)[:, :, None, :], axis=-1)  # [2,4,7,2]
  x_S = jnp.take_along_axis(x, jnp.asarray(support), axis=-1)               # [2,4,2]
  gram = jnp.einsum('tnms,tnmr->tnsr', A_S, A_S)
  return (jnp.einsum('tnm,tnms->tns', b, A_S) - jnp.einsum('tnsr,tnr->tns', gram, x_S)
          + x_S)


def edges_of(support):
  """[2, 4, 2] indices -> (normal edges, reduce edges) as static tuples."""
  s = np.asarray(support)
  return tuple(tuple(tuple(int(c) for c in s[t, i]) for i in range(s.shape[1]))
               for t in range(s.shape[0]))


def support_string(support):
  """'normal 0,15 1,14 ... | reduce ...': the 2 columns (j*7+o) of every node."""
  return ' | '.join(name + ' ' + ' '.join(','.join(map(str, n)) for n in cell)
                    for name, cell in zip(CELLS, edges_of(support)))


def moves_string(moved):
  """'normal 0.012 0.3 0 0.05 | reduce ...': each node's ||x_new - x_last|| at the last
  epoch end (0 once frozen), the number freeze_threshold is compared with."""
  return ' | '.join(f'{t} ' + ' '.join(f'{v:.3g}' for v in np.asarray(m))
                    for t, m in zip(CELLS, moved))


def parse_moves(text):
  """moves_string's inverse (to its 3 significant digits): a [2, 4] array."""
  cells = dict(part.split(None, 1) for part in text.split(' | '))
  return np.array([[float(v) for v in cells[t].split()] for t in CELLS])


def moves_per_epoch(rows):
  """{epoch k: [2, 4] movements recorded by end_of_epoch(k)}, from metrics rows: a row
  at epoch e is logged after end_of_epoch(ceil(e) - 1) (at a boundary, before that
  epoch's own), so it holds epoch ceil(e) - 1's movements."""
  out = {}
  for r in rows:
    text, epoch = r.get('nas/code_moves'), r.get('epoch')
    if text is None or epoch is None:
      continue
    k = math.ceil(epoch - 1e-9) - 1
    if k >= 1 and k not in out:
      out[k] = parse_moves(text)
  return dict(sorted(out.items()))


def measurement_matrices(space, seed):
  """A [2, nodes, M, N_MAX] ([2, 4, 7, 35] in DARTS, M = num_ops): N(0, 1/M) entries
  (unit-norm columns on average), node i using its first (i+2)*M columns, zeros after."""
  M = space.num_ops  # pylint: disable=invalid-name
  shape = (2, space.num_nodes, M, space.max_columns)
  A = np.random.default_rng(seed).standard_normal(shape) / np.sqrt(M)
  for i in range(space.num_nodes):
    A[:, i, :, valid_columns(space, i):] = 0.0
  return A.astype(np.float32)


# ------------------------------------------------------------------- the strategy


@base.STRATEGIES.register('ista')
class ISTA(base.SparseExecution, CellStrategy):
  """Sparse-coding search of a DARTS cell (dha_jax/nas/base.py's contract)."""
  fixed_counterpart = 'darts_fixed'
  may_differ = ('freeze_threshold', 'max_search_fraction')
  default_config = staticmethod(default_config)

  @property
  def skips_inactive(self):
    """'static': a support's unused ops stay outside the step (sparse_update.SkipInactive);
    'traced' keeps them by a mask, 'masked' runs them."""
    return self.cfg.execution == 'static'

  def __init__(self, config, num_classes, image_shape):
    super().__init__(config, num_classes, image_shape, default_config(), 'ista')
    self.max_search_fraction = float(self.cfg.max_search_fraction)
    if self.cfg.execution not in EXECUTIONS:
      raise ValueError(f'config.nas.execution={self.cfg.execution!r}: one of {EXECUTIONS}')
    self.support = None  # static [2, 4, 2] tuple once specialised
    self.packed = self.cfg.execution == 'traced'  # theta in cell_packed.pack's layout
    self.support_params = None  # param shapes of the support's network (specialize)
    self.net = self.supernet()
    self.traced_net = self.supernet(traced=True)

  def recover(self, b, A):
    """x of every node, float64 on the host (tiny: 8 problems of at most 7 x 35 in
    DARTS)."""
    return lasso(np.asarray(jax.device_get(A)), np.asarray(jax.device_get(b)),
                 float(self.cfg.lam), int(self.cfg.lasso_iters), float(self.cfg.lasso_tol))

  def init(self, rng, dummy):
    k_net, k_b = jax.random.split(rng)
    v = darts_space.init_variables(self.net, k_net, dummy)
    v = {k: self.pack(x) for k, x in v.items()}
    nodes = self.space.num_nodes
    A = measurement_matrices(self.space, self.cfg.measurement_seed)
    b = self.cfg.code_init_std * jax.random.normal(k_b, (2, nodes, self.space.num_ops))
    x = self.recover(b, A)
    nas_state = {'A': jnp.asarray(A), 'x': jnp.asarray(x, jnp.float32),
                 'support': jnp.asarray(select_support(self.space, x)),
                 'frozen': jnp.zeros((2, nodes), bool),
                 'moved': jnp.zeros((2, nodes), jnp.float32),
                 'rejected': jnp.zeros((), jnp.int32), 'epoch': jnp.zeros((), jnp.int32)}
    return v['params'], v.get('batch_stats', {}), {'b': b}, nas_state

  # ---------------------------------------------------------------- in the step

  def weights(self, arch, nas_state):
    """W of every node on its support (the specialised static one if any)."""
    support = nas_state['support'] if self.support is None else np.asarray(self.support)
    b = jnp.where(nas_state['frozen'][..., None], jax.lax.stop_gradient(arch['b']),
                  arch['b'])
    return edge_weights(b, nas_state['A'], nas_state['x'], support), support

  def apply(self, net, batch_stats, arch, nas_state, images, rng, train):
    W, support = self.weights(arch, nas_state)
    rate = self.drop_rate(self.searching(nas_state), rng, train)
    if self.support is not None:
      normal, reduce = edges_of(self.support)
      module = darts_space.DartsNet(self.spec, self.num_classes, normal, reduce,
                                    bn_axis_name='data')
      weights = tuple(tuple(W[t, i] for i in range(self.space.num_nodes)) for t in range(2))
    elif self.cfg.execution == 'traced':
      module, weights = self.traced_net, (W, jnp.asarray(support, jnp.int32))
    else:  # masked: every op runs, zero weight off the support
      module = self.net
      weights = tuple(tuple(jnp.zeros(valid_columns(self.space, i), W.dtype).at[
          support[t, i]].set(W[t, i]) for i in range(self.space.num_nodes)) for t in range(2))
    return self.run(module, net, batch_stats, images, weights, rate, rng, train)

  def active_net(self, net_params):
    """Specialised to a support: theta's leaves that its network has (every leaf but the
    unselected ops' weights), so the step updates only those (sparse_update.py)."""
    if self.support is None:
      return jax.tree_util.tree_map(lambda _: True, net_params)

    def mirror(tree, used):
      if not isinstance(tree, dict):
        return used is not None
      return {k: mirror(v, used.get(k) if used is not None else None)
              for k, v in tree.items()}

    return mirror(net_params, self.support_params)

  def active_mask(self, net_params, nas_state):
    """'traced': which weights of theta the support's network uses (CellStrategy.
    traced_mask); None when the support is static (active_net says it) or the supernet
    runs."""
    if self.support is not None or self.cfg.execution != 'traced':
      return None
    return self.traced_mask(net_params, nas_state['support'])

  def optimizer(self):
    return optim.group_optimizer(self.cfg.optimizer)

  def searching(self, nas_state):
    return ~jnp.all(nas_state['frozen'])

  def keep_fixed(self, old_arch, new_arch, nas_state):
    return {'b': jnp.where(nas_state['frozen'][..., None], old_arch['b'], new_arch['b'])}

  def static_key(self, nas_state_host):
    if self.cfg.execution != 'static':
      return None  # 'traced': one step for every support; 'masked': the supernet
    return edges_of(nas_state_host['support'])

  def specialize(self, key):
    """A copy whose network is the support `key` alone ('static'; it runs the supernet's
    layout: a traced strategy's variables go through unpack first)."""
    if key is None:
      return self
    new = copy.copy(self)
    new.support = tuple(tuple(tuple(n) for n in cell) for cell in key)
    new.packed = False
    normal, reduce = edges_of(new.support)
    net = darts_space.DartsNet(self.spec, self.num_classes, normal, reduce)
    dummy = jax.ShapeDtypeStruct((1,) + self.image_shape, jnp.float32)
    new.support_params = conv.eval_shape(lambda x: net.init(
        jax.random.PRNGKey(0), x, train=False, with_aux=True), dummy)['params']
    return new

  # ---------------------------------------------------------------- on the host

  def params_of(self, support):
    normal, reduce = edges_of(support)
    return darts_space.count_params(self.spec, self.num_classes, normal, reduce,
                                    self.image_shape)

  def end_of_epoch(self, state, epoch):
    """Recovery, support update (budget-checked), freezing; frozen nodes keep x and S."""
    ns = jax.device_get(state.nas_state)
    b = np.asarray(jax.device_get(state.params['arch']['b']))
    frozen, x_last = np.asarray(ns['frozen']), np.asarray(ns['x'])
    old = np.asarray(ns['support'])
    x_new = self.recover(b, ns['A'])
    keep = frozen[..., None]
    candidate = np.where(keep, old, select_support(self.space, x_new))
    rejected = int(ns['rejected'])
    budget = float(self.cfg.budget_mparams) * 1e6
    if budget and (candidate != old).any() and self.params_of(candidate) > budget:
      candidate, rejected = old, rejected + 1
    # what the threshold is compared with, kept (and logged) so that one can be chosen
    moved = np.where(frozen, 0.0, np.linalg.norm(x_new - x_last, axis=-1))
    newly = np.zeros_like(frozen)
    if epoch >= self.cfg.freeze_from_epoch:
      newly = ~frozen & (moved <= self.cfg.freeze_threshold)
    host = dict(ns, x=np.where(keep, x_last, x_new), support=candidate, moved=moved,
                frozen=frozen | newly, rejected=np.int32(rejected), epoch=np.int32(epoch))
    put = lambda h, o: jax.device_put(np.asarray(h, o.dtype), o.sharding)
    return state.replace(nas_state=jax.tree_util.tree_map(put, host, state.nas_state))

  def stop_search(self, state):
    """Freezes every node still searching at its current support (x and S unchanged): the
    search ends here (config.nas.max_search_fraction of the run, called by the loop)."""
    old = state.nas_state['frozen']
    frozen = jax.device_put(np.ones(np.shape(old), bool), getattr(old, 'sharding', None))
    return state.replace(nas_state=dict(state.nas_state, frozen=frozen))

  def run_pictures(self, metrics_rows):
    """The freezing picture: each node's code movement per epoch against the threshold."""
    from dha_jax.nas import ista_plot  # pylint: disable=g-import-not-at-top
    moves = moves_per_epoch(metrics_rows)
    if not moves:
      return {}
    return {'freezing': ista_plot.freezing_figure(moves, self.cfg.freeze_threshold,
                                                  self.cfg.freeze_from_epoch)}

  def genotype_of(self, arch, nas_state):
    ns = jax.device_get(nas_state)
    b = jnp.asarray(jax.device_get(arch['b']))
    W = np.asarray(edge_weights(b, jnp.asarray(ns['A']), jnp.asarray(ns['x']),
                                np.asarray(ns['support'])))
    normal, reduce = edges_of(ns['support'])
    return darts_space.Genotype.from_edges(normal, reduce, W[0], W[1], self.space)

  def metrics(self, arch, nas_state):
    g = self.genotype_of(arch, nas_state)
    ns = jax.device_get(nas_state)
    out = self.base_metrics(g)
    out.update({'nas/frozen_nodes': int(np.sum(ns['frozen'])),
                'nas/rejected_supports': int(ns['rejected']),
                'nas/support': support_string(ns['support']),
                'nas/max_code_move': float(np.max(ns['moved'])),
                'nas/code_moves': moves_string(ns['moved'])})
    return out

  def summary(self, arch, nas_state):
    out = super().summary(arch, nas_state)
    ns = jax.device_get(nas_state)
    out['architecture'].update(
        frozen=np.asarray(ns['frozen']).tolist(), support=np.asarray(ns['support']).tolist(),
        x=np.asarray(ns['x']).round(6).tolist(), rejected_supports=int(ns['rejected']),
        last_code_moves=np.asarray(ns['moved']).round(6).tolist())
    return out
