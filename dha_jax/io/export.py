"""The ready-to-use model: the derived child network (fixed architecture, the weights it
was trained with, recalibrated BatchNorm statistics), its genotype and the
pre-processing it expects, in one folder that loads without any search state.

  <workdir>/model/model.json        config, genotype, input shape, pre-processing, metrics
  <workdir>/model/variables.msgpack the child's {'params', 'batch_stats'}

  model = export.load_model('<workdir>/model')
  logits = model.predict(images_uint8)      # [N, H, W, C] uint8 -> [N, num_classes]
"""

import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from dha_jax import nas
from dha_jax.augment import preprocess
from dha_jax.core import parallel
from dha_jax.models import common

FORMAT = 1


def recalibrate_bn(module, variables, batches, mesh, prepare):
  """BatchNorm statistics of `module` recomputed as the plain average of per-batch
  statistics over `batches` (host uint8 image batches; `prepare` maps them to network
  inputs on device). A searched child's blocks were trained inside varying paths, so
  their running statistics do not describe the child (docs/method.md 3a's pitfall)."""
  if not variables.get('batch_stats'):
    return variables
  # The exported child has no cross-device BN axis, and DSNAS's choice blocks keep theirs
  # per device. Recalibrated shard by shard, each device would normalise its activations
  # by its own shard and every later layer's statistics would change with the device
  # count; synchronised over 'data' (every BN, for this pass), it sees the global batch.
  def stats(v, images):
    with common.override_bn_momentum(0.0, sync_axis=parallel.AXIS):
      _, new = module.apply(v, prepare(images), train=True, mutable=['batch_stats'])
    return new['batch_stats']

  step = parallel.data_parallel(stats, mesh, (parallel.REPLICATED, parallel.SHARDED),
                                parallel.REPLICATED)
  total, n = None, 0
  for images in batches:  # summed on the host: no eager op on a multi-process array
    bs = jax.device_get(step(variables, parallel.shard_batch({'x': images}, mesh)['x']))
    total = bs if total is None else jax.tree_util.tree_map(np.add, total, bs)
    n += 1
  if not n:
    return variables
  return dict(variables, batch_stats=jax.tree_util.tree_map(lambda t: t / n, total))


def _json_default(x):
  if isinstance(x, (np.integer, np.floating, np.bool_)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f'{type(x).__name__} is not JSON serialisable')


def forward_flops(module, variables, input_shape) -> int:
  """FLOPs of one image through the network's eval forward, counted by XLA on the lowered
  program (a multiply-add is 2; nothing is compiled): one measure for every search space,
  where each space's own cost model counts differently."""
  x = jax.ShapeDtypeStruct((1,) + tuple(input_shape), jnp.float32)
  lowered = jax.jit(lambda v, u: module.apply(v, u, train=False)).lower(variables, x)
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0] if cost else {}
  return int((cost or {}).get('flops', 0))


def save(path, config, num_classes, image_shape, genotype, variables, metrics=None):
  """Writes the model folder (host 0 only in multi-host runs)."""
  if jax.process_index() != 0:
    return
  os.makedirs(path, exist_ok=True)
  d = config.dataset
  meta = {
      'format': FORMAT,
      'config': json.loads(config.to_json_best_effort()),
      'num_classes': int(num_classes),
      'input_shape': [int(s) for s in image_shape],
      'genotype': genotype,
      'preprocess': {'mean': list(d.mean), 'std': list(d.std),
                     'image_size': int(config.preprocess.image_size),
                     'load_size': int(d.load_size)},
      'metrics': metrics or {},
  }
  host = jax.device_get(variables)
  with open(os.path.join(path, 'variables.msgpack'), 'wb') as f:
    f.write(flax.serialization.msgpack_serialize(
        jax.tree_util.tree_map(np.asarray, flax.core.unfreeze(host))))
  with open(os.path.join(path, 'model.json'), 'w') as f:
    json.dump(meta, f, indent=2, default=_json_default)


class Model:
  """A deployed network: predict(uint8 images) -> logits. No search state involved."""

  def __init__(self, module, variables, meta):
    self.module, self.variables, self.meta = module, variables, meta
    p = meta['preprocess']
    self.input_shape = tuple(meta['input_shape'])
    self.num_classes = meta['num_classes']
    self.genotype = meta['genotype']

    def logits(variables, images):
      x = preprocess.center_crop(preprocess.to_float(images), p['image_size'])
      x = preprocess.normalize(x, p['mean'], p['std'])
      return module.apply(variables, x, train=False)

    self._logits = jax.jit(logits)

  def predict(self, images_uint8, batch_size=256):
    """[N, H, W, C] (or [H, W, C]) uint8 images of the training input size -> logits."""
    x = np.asarray(images_uint8)
    if x.ndim == 3:
      x = x[None]
    if x.dtype != np.uint8 or tuple(x.shape[1:]) != self.input_shape:
      raise ValueError(f'predict takes uint8 images of shape [N, {self.input_shape}], got '
                       f'{x.dtype} {list(x.shape)}; resize them first (data.folder.read_image '
                       'does what the training data loader did)')
    out = [np.asarray(self._logits(self.variables, x[i:i + batch_size]))
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, self.num_classes), np.float32)


def load_model(path) -> Model:
  """Loads <workdir>/model (or a path to its model.json)."""
  if os.path.basename(path) == 'model.json':
    path = os.path.dirname(path)
  meta_path = os.path.join(path, 'model.json')
  if not os.path.exists(meta_path):
    raise FileNotFoundError(f'{meta_path} does not exist: pass the model/ folder that a '
                            'finished run writes into its workdir')
  with open(meta_path) as f:
    meta = json.load(f)
  if meta.get('format') != FORMAT:
    raise ValueError(f'{meta_path} has format {meta.get("format")}; this dha_jax reads '
                     f'format {FORMAT}')
  config = ml_collections.ConfigDict(meta['config'])
  shape = tuple(meta['input_shape'])  # the dataset's images; the model sees image_size
  if meta['preprocess']['image_size']:
    shape = (meta['preprocess']['image_size'],) * 2 + shape[2:]
  strategy = nas.create(config, meta['num_classes'], shape)
  module = strategy.child_module(meta['genotype'])
  with open(os.path.join(path, 'variables.msgpack'), 'rb') as f:
    variables = flax.serialization.msgpack_restore(f.read())
  return Model(module, variables, meta)
