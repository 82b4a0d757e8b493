"""The part the cell-space strategies share (DARTS, darts_fixed, ISTA): the network call
(auxiliary logits, drop-path after the search), the supernet and its packed layout for
the traced execution, the derived child, the summary and the cell picture. The cell's
ops and nodes are config.nas.cell_space's (self.space, cell_space.py).
"""

import jax
import jax.numpy as jnp
import numpy as np

from dha_jax.core import config_util
from dha_jax.layers import conv
from dha_jax.nas import base, cell_packed, darts_space


def settings(nas_config, defaults, name):
  """config.nas over `defaults`: an unknown field fails with the list of known ones."""
  return config_util.merge(defaults, nas_config, f'config.nas ({name})')


class CellStrategy(base.Search, base.Strategy):
  """Common part of the cell-space strategies (dha_jax/nas/base.py); each subclass
  supplies init, apply, optimizer, searching, genotype_of, metrics."""

  init_on_host = True  # darts_space.init_variables (host_init.variables)
  added_fields = {'cell_space': 'darts'}

  def __init__(self, config, num_classes, image_shape, nas_defaults, name):
    self.cfg = settings(config.nas, nas_defaults, name)
    self.spec = darts_space.make_spec(self.cfg, config.model.bn_momentum)
    self.space = self.spec.space  # the cell's ops and nodes (config.nas.cell_space)
    self.num_classes = num_classes
    self.image_shape = tuple(image_shape)
    self.aux_weight = float(self.cfg.auxiliary_weight)

  # --------------------------------------------------------------- the network call

  def run(self, net_module, net, batch_stats, images, weights, drop_rate, rng, train):
    """(logits, new batch_stats, aux) of `net_module` with edge weights `weights`."""
    variables = {'params': net, 'batch_stats': batch_stats}
    with_aux = bool(train and self.spec.auxiliary)
    kw = dict(weights=weights, drop_rate=drop_rate if train else None,
              rng=rng if train else None, with_aux=with_aux)
    if train:
      out, new = net_module.apply(variables, images, train=True, mutable=['batch_stats'],
                                  **kw)
      batch_stats = new['batch_stats']
    else:
      out = net_module.apply(variables, images, train=False, **kw)
    logits, aux_logits = out if with_aux else (out, None)
    return logits, batch_stats, ({} if aux_logits is None else {'aux_logits': aux_logits})

  def drop_rate(self, searching, rng, train):
    """Drop-path probability: config.nas.drop_path once the search is over, else 0."""
    if not train or rng is None or not self.cfg.drop_path:
      return None
    return jnp.where(searching, 0.0, float(self.cfg.drop_path))

  def supernet(self, bn_axis_name='data', traced=False):
    """Every op on every edge; traced=True: run with the columns given as data
    (cell_packed.traced_nodes), on pack()ed variables."""
    edges = self.space.all_edges()
    return darts_space.DartsNet(self.spec, self.num_classes, edges, edges,
                                bn_axis_name=bn_axis_name, traced=traced)

  # -------------------------------------------------- the columns as data ('traced')

  packed = False  # theta and the statistics in cell_packed.pack's layout ('traced')

  def pack(self, tree):
    """Supernet variables (one collection) in this strategy's layout (packed if traced)."""
    return cell_packed.pack(tree, self.spec) if self.packed else tree

  def unpack(self, tree):
    """The supernet's layout (names per (node, input, op)) of this strategy's variables."""
    return cell_packed.unpack(tree, self.spec) if self.packed else tree

  def traced_mask(self, net_params, support):
    """Which weights of the packed theta the network of `support` ([2, nodes, 2] traced
    columns) uses, for the step to keep the others and their optimizer state exactly
    (sparse_update.py): a tree mirroring theta, None for weights always used (stem,
    pre-processing, heads), else traced bools broadcastable to the packed leaf (one per
    element of its last axis: its edge's op is on the support)."""
    support = jnp.asarray(support)
    flags = jnp.any(support[..., None] == jnp.arange(self.space.max_columns),
                    axis=-2)  # [2, nodes, N_MAX]
    reductions, cache = self.spec.reductions(), {}

    def mask(path, edges, leaf):
      if edges is None:
        return None
      t = int(int(str(getattr(path[0], 'key', path[0]))[4:]) in reductions)
      width = leaf.shape[-1] // len(edges)
      key = (t, edges, width)
      if key not in cache:
        nodes, cols = (np.asarray(v) for v in zip(*edges))
        cache[key] = jnp.repeat(flags[t][nodes, cols], width)
      return cache[key]

    flat, treedef = jax.tree_util.tree_flatten_with_path(net_params)
    index = treedef.flatten_up_to(cell_packed.pack_index(net_params, self.spec))
    return treedef.unflatten([mask(p, e, x) for (p, x), e in zip(flat, index)])

  # ----------------------------------------------------------- the derived network

  def num_child_params(self, genotype):
    return darts_space.count_params(self.spec, self.num_classes,
                                    genotype.edges('normal', self.space),
                                    genotype.edges('reduce', self.space), self.image_shape)

  def child_module(self, genotype_json):
    genotype = darts_space.Genotype.from_json(genotype_json)
    return darts_space.child_net(self.spec, self.num_classes, genotype)

  def child(self, state):
    """(module, variables, genotype JSON): only the selected ops, the trained weights
    (same names, from the supernet's layout if packed), edge weights as constants, BN
    without a cross-device axis."""
    g = self.genotype_of(state.params['arch'], state.nas_state)
    module = darts_space.child_net(self.spec, self.num_classes, g)
    dummy = jax.ShapeDtypeStruct((1,) + tuple(self.image_shape), jnp.float32)
    template = conv.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x), dummy)
    host = jax.device_get({'params': state.params['net'], 'batch_stats': state.batch_stats})
    host = {k: self.unpack(v) for k, v in host.items()}
    variables = {k: darts_space.restrict(host[k], template[k])
                 for k in ('params', 'batch_stats')}
    return module, variables, g.to_json()

  def summary(self, arch, nas_state):
    g = self.genotype_of(arch, nas_state)
    params = self.num_child_params(g)
    out = {'genotype': g.to_json(), 'genotype_str': str(g), 'space': self.space.name,
           'params': params, 'channels': self.spec.channels, 'layers': self.spec.layers}
    return {'architecture': out, 'child_mparams': params / 1e6}

  def pictures(self, arch, nas_state):
    g = self.genotype_of(arch, nas_state)
    return {'genotype': darts_space.genotype_figure(g, type(self).__name__)}

  def base_metrics(self, g):
    return {'nas/genotype': str(g).replace('\n', ' | '),
            'nas/child_mparams': self.num_child_params(g) / 1e6}
