"""Every config field of dha_jax, with its default and what it means.

Other configs start from this one and change what they need. Run any of them with

  python -m dha_jax.main --config=configs/<name>.py --workdir=/tmp/run \
      --config.batch_size=64 --config.dataset.val_size=500

A field that does not exist fails at once with its name (the config is locked).
This file alone trains the baseline (fixed small CNN, fixed hyper-parameters, standard
augmentation) on the offline digits set: ~97% test accuracy in well under a minute on
2 CPU cores.
"""

import ml_collections

from dha_jax.augment import base as augment_base
from dha_jax.core import compile_cache
from dha_jax.hpo import hypergrad


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0

  # ---- data -----------------------------------------------------------------------
  c.dataset = d = ml_collections.ConfigDict()
  d.source = 'digits'      # 'digits' | 'idx' | 'folder' | 'tfds' | 'synthetic' (random pixels)
  d.name = ''              # tfds: dataset name (cifar10, imagenet2012, ...)
  d.data_dir = ''          # idx/folder: the directory; tfds: TFDS data_dir ('' = default)
  d.val_size = 200         # examples held out of train for validation / the 'val' HPO objective
  d.test_fraction = 0.2    # digits only: sklearn ships one set, this part is the test split
  d.load_size = 0          # folder/tfds: host resizes (shorter side) + centre-crops to this (0 = keep)
  d.in_memory = True       # tfds: load the whole split into host memory (False: stream with tf.data)
  d.train_size = 0         # tfds streaming: number of train examples (mock_data has no split info)
  d.train_subset = 0       # > 0: a seeded, class-stratified subset of this many training examples,
  #                          taken after the val hold-out (disjoint from it; 0 = all)
  d.eval_shift = (0, 0)     # planted check (data/planted.py): val and test images moved (dx, dy)
  #                          pixels, right / down; training images unchanged
  d.eval_rotate = 0.0      # planted check: val and test images rotated by this many degrees (CCW)
  d.test_split = 'test'    # tfds: split used for the final test ('validation' for imagenet2012)
  d.synthetic = ml_collections.ConfigDict(  # source=synthetic: `size` random training
      {'shape': (32, 32, 3), 'num_classes': 10, 'size': 1024})  # images (+ val_size, + size/4 test)
  d.mean = (0.5,)          # per-channel normalisation of [0,1] pixels (broadcast to C channels)
  d.std = (0.25,)

  # Standard (non-learned) pre-processing, on device, training batch only.
  c.preprocess = p = ml_collections.ConfigDict()
  p.kind = 'none'          # 'none' | 'crop_flip' (32 px style) | 'rrc_flip' (224 px style)
  p.crop_padding = 4       # crop_flip: zero padding before the random crop
  p.flip = True            # random horizontal flip (turn off for digits / text-like data)
  p.cutout = 0             # side of the Cutout square in pixels (0 = off)
  p.image_size = 0         # rrc_flip / eval centre crop: output side (0 = input side)
  p.rrc_min_scale = 0.08   # rrc_flip: smallest crop area fraction

  # ---- model ----------------------------------------------------------------------
  c.model = m = ml_collections.ConfigDict()
  m.name = 'small_cnn'     # 'small_cnn' | 'conv_mlp' | 'resnet' | the zoo of DiffAutoML's Table 2: 'resnet50' |
  #                          'resnet200' | 'wrn28_10' | 'wrn40_2' | 'pyramidnet272' (fixed networks;
  #                          search spaces come with nas.*)
  m.widths = (32, 64)      # small_cnn: channels per stage (2 convs each, pool between stages);
  #                          conv_mlp: one conv and a 2x2 max-pool per stage
  m.hidden = 256           # conv_mlp: units of the dense layer after the flattened features
  m.stage_sizes = (2, 2, 2)  # resnet: basic blocks per stage
  m.width = 16             # resnet: channels of the first stage (doubled per stage)
  m.stem = 'cifar'         # resnet: 'cifar' (3x3 conv) | 'imagenet' (7x7/2 conv + max-pool)
  m.depth = 0              # zoo: 0 = the name's published depth; another of the family's
  #                          form (bottleneck ResNet 12n+2, WRN 6n+4, PyramidNet 9n+2): smaller
  m.widen = 0              # zoo: 0 = the name's width (bottleneck ResNet first-stage channels
  #                          64, WRN widening factor k, PyramidNet alpha); another: narrower
  m.bn_momentum = 0.9
  c.conv_impl = 'auto'     # 'auto' | 'xla' | 'im2col': how convolutions are computed (see dha_jax/layers/conv.py)
  c.compute_dtype = 'float32'  # 'float32' | 'bfloat16' | 'auto' (bf16 on gpu/tpu): convs and BN
  #                          outputs; params, statistics, losses, tau/alpha/eta stay float32;
  #                          'float64' (with JAX_ENABLE_X64=1): everything, a numerics check

  # ---- optimisation of theta -----------------------------------------------------
  c.batch_size = 128       # global batch, split across devices (must divide evenly)
  c.eval_batch_size = 256
  c.num_epochs = 10
  c.num_steps = 0          # > 0 overrides num_epochs
  c.time_budget_s = 0.0    # > 0: stop training after this many seconds (summed over resumes)
  c.time_budget_clock = 'wall'  # 'wall' | 'process' (CPU seconds of this process, all its
  #                               threads: a fair budget when other jobs share the machine)
  c.time_budget_sets_horizon = True  # with a budget, the lr schedule ends when it ends: a pilot
  #                                    times the first steps and fixes the run's length in steps
  #                                    (num_epochs / num_steps are then ignored;
  #                                    dha_jax/training/budget.py)
  c.time_budget_pilot_steps = 20  # steps timed (after the first, which compiles) for that
  c.optimizer = o = ml_collections.ConfigDict()
  o.name = 'sgd'           # 'sgd' (momentum) | 'nesterov' | 'adam' | 'adamw'
  o.momentum = 0.9
  o.b1 = 0.9
  o.b2 = 0.999
  o.grad_clip_norm = 5.0   # clipped global norm (0 = off)
  c.lr = 0.1               # the initial value of eta's learning rate
  c.weight_decay = 5e-4    # the initial value of eta's weight decay
  c.schedule = 'cosine'    # 'cosine' | 'constant': base schedule the learning rate is multiplied by
  c.warmup_epochs = 0.0
  c.label_smoothing = 0.0

  # ---- the AutoML components (each can be off) ---------------------------------------
  # augmentation policy tau: every field with its default and meaning is in
  # dha_jax/augment/base.py default_config() (name='none': the standard pre-processing only)
  c.policy = augment_base.default_config()
  # hyper-parameters eta: every field with its default and meaning is in
  # dha_jax/hpo/hypergrad.py default_config() (enabled=False: eta = config.lr /
  # config.weight_decay x the base schedule)
  c.hpo = hypergrad.default_config()
  c.nas = ml_collections.ConfigDict({'strategy': 'none'})  # architecture alpha
  # (a search config sets c.nas = <strategy module>.default_config(): see dha_jax/nas)
  c.recalibration_batches = 20  # training batches whose BN statistics the exported model takes

  # ---- bookkeeping -----------------------------------------------------------------
  c.log_every_steps = 50
  c.eval_every_epochs = 1  # validation accuracy every this many epochs (0 = only the exported
  #                           model's, at the end, as with any value)
  c.checkpoint_every_steps = 500
  c.keep_checkpoints = 2
  c.progress = True        # console progress line
  # compiled programs kept for the next run on this machine (dha_jax/core/compile_cache.py):
  # $DHA_JAX_CACHE_DIR, else $XDG_CACHE_HOME/dha_jax/xla, else ~/.cache/dha_jax/xla; '' = off
  c.compile_cache_dir = compile_cache.default_dir()
  return c
