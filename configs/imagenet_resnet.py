"""The ImageNet rows of DiffAutoML's Table 2: ResNet-50 / ResNet-200 (bottleneck blocks,
7x7/2 + max-pool stem) with their published recipe, and DA+HPO (learned tau and eta) on
them. The argument is '<network>[/<variant>]' (defaults resnet50, fixed):

  python -m dha_jax.main --config=configs/imagenet_resnet.py:resnet50/da_hpo --workdir=W
  python -m dha_jax.main --config=configs/imagenet_resnet.py:resnet200/da_hpo --workdir=W
  python -m dha_jax.main --config=configs/imagenet_resnet.py:resnet50 --workdir=W  # baseline

Data and pre-processing are configs/imagenet.py's (TFDS imagenet2012 streamed, random-
resized crop + flip at 224 px, 10000 training images held out as 'val').
Recipe (Fast AutoAugment's published configs for these networks, which Table 2 compares
against; DiffAutoML gives none of its own): 270 epochs, Nesterov SGD, wd 1e-4, peak lr
0.1 per 256 images after a 3-epoch warmup, no label smoothing, no grad clipping;
  resnet50   batch 1024, lr 0.4   25.6M parameters
  resnet200  batch 512,  lr 0.2   64.7M
FAA decays the lr in steps; here it follows a cosine (DiffAutoML's schedule; the only
decaying one config.schedule has). DA+HPO: tau the learned policy, eta against the
held-out 'val' split (DiffAutoML): lr a learned multiplier in [1/4, 4] of that cosine, wd
learned in [2.5e-5, 4e-4], both from the recipe's values (docs/method.md 4).

Published top-1 / top-5 (%), DiffAutoML Table 2 (Baseline / FAA / PBA / AdvAA / DiffAutoML):
  ResNet-50    76.3/93.1 / 77.6/93.7 / not reported / 79.4/94.5 / 79.0/94.3
  ResNet-200   78.5/94.2 / 80.6/95.3 / not reported / 81.3/95.3 / 81.5/95.5
AutoAugment is not a column of Table 2: not reported there.
Expected cost (not measured: XLA's count of the forward, x3 for a training step, 1.27M
images an epoch): ResNet-50 8.0 GFLOPs an image, 8.2e18 FLOPs for the fixed run (~115
GPU-hours at a sustained 20 TFLOP/s); ResNet-200 29 GFLOPs, 3.0e19 (~415 GPU-hours).
da_hpo's 'val' hypergradient adds one forward/backward a step: about twice that.
"""

from configs import imagenet
from dha_jax.comparison import experiments

RECIPES = {  # FAA's confs/resnet50_b512.yaml, resnet200_b256.yaml, linearly scaled
    'resnet50': {'batch_size': 1024, 'lr': 0.4},
    'resnet200': {'batch_size': 512, 'lr': 0.2},
}
FIXED_VARIANTS = ('fixed', 'randaugment', 'trivialaugment', 'da', 'hpo', 'da_hpo')


def get_config(arg=''):
  network, _, variant = (arg or 'resnet50').partition('/')
  if network not in RECIPES:
    raise ValueError(f'config argument {arg!r}: the network must be one of {sorted(RECIPES)}')
  if variant and variant not in FIXED_VARIANTS:
    raise ValueError(f'config argument {arg!r}: the variant must be one of {FIXED_VARIANTS}')
  c = imagenet.get_config()
  c.model.name = network
  c.batch_size = c.eval_batch_size = RECIPES[network]['batch_size']
  c.lr = RECIPES[network]['lr']
  c.weight_decay = 1e-4
  c.num_epochs = 270
  c.warmup_epochs = 3.0
  c.optimizer.name = 'nesterov'
  c.optimizer.grad_clip_norm = 0.0
  c.label_smoothing = 0.0
  c.schedule = 'cosine'
  wd = c.weight_decay
  return experiments.apply(
      c, variant, search={},
      hpo={'objective': 'val', 'lr_mode': 'multiplier', 'lr_multiplier_bounds': (0.25, 4.0),
           'learn_wd': True, 'wd_bounds': (wd / 4, wd * 4), 'wd_init': wd})
