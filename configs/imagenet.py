"""ImageNet (TFDS imagenet2012, streamed): random-resized crop + flip at 224 px,
SGD-momentum cosine, label smoothing 0.1. The config argument picks the variant of the
papers' comparison (dha_jax/comparison/experiments.py), after '/' the architecture strategy and,
after a second '/', the choice space of DSNAS (default: ShuffleNet):

  python -m dha_jax.main --config=configs/imagenet.py --workdir=gs://bucket/imnet
  python -m dha_jax.main --config=configs/imagenet.py:dha/dsnas --workdir=gs://b/diffautoml
  python -m dha_jax.main --config=configs/imagenet.py:dha/ista --workdir=gs://b/dha
  python -m dha_jax.main --config=configs/imagenet.py:nas/dsnas --workdir=gs://b/dsnas
  python -m dha_jax.main --config=configs/imagenet.py:dha/dsnas/mobilenet --workdir=gs://b/mb

  ''             fixed ResNet-18-style network (the baseline): ~70% top-1 after 90 epochs
                 (8 GPUs, ~1 day)
  '<v>/dsnas'    the SPOS ShuffleNetV2 choice space (DiffAutoML, docs/method.md 3a): alpha by
                 Adam 1e-3 (0.5, 0.999), early fix at 0.3, a 330M-FLOPs budget, all layers
                 fixed by epoch 60 of 240. The reference genotype
                 [0,0,3,0,3,2,0,0,3,3,2,3,3,3,2,0,0,3,3,0] counts 323.3M multiply-adds and
                 3.55M parameters at 224 px here. DiffAutoML (dha/dsnas) reports 75.5% top-1
                 at 318M FLOPs for 394 V100-hours; DSNAS alone (nas/dsnas) 74.4%.
  '<v>/dsnas/mobilenet'  the ProxylessNAS MobileNet space (dha_jax/nas/mobilenet.py: 21
                 MBConv layers, k 3/5/7 x e 3/6 + skip; the same as '<v>/dsnas' with
                 --config.nas.space=mobilenet), the same DSNAS recipe and
                 330M budget (the ShuffleNet runs' FLOPs, for a like-for-like comparison;
                 its k3_e3 child counts 257M, its k3_e6 one 473M, the smallest 103M).
                 Expected numbers: not reported (the DHA paper names the MobileNet space
                 but tabulates only the cell space; DiffAutoML only ShuffleNet). For
                 reference, ProxylessNAS (mobile) retrained: 74.6% top-1 at 320M (as
                 quoted in DiffAutoML's Table 1); MobileNetV2 1.0: 72.0% at 300M.
  '<v>/ista'     the DARTS cells with the DARTS ImageNet stem (DHA, docs/method.md 3b): 14 cells,
                 C = 48, a 6M-parameter budget, 250 epochs; DHA reports 77.4% top-1.
  '<v>/darts'    first-order DARTS on the same cells (8 cells, C = 16 during the search);
                 sequential/darts retrains its genotype at 14 cells, C = 48 (DARTS's
                 ImageNet network).
  --config.policy.ops=ShearX,ShearY,TranslateX,TranslateY: DiffAutoML Table 3's
                 geometric-only tau.

The learned variants use eta by the 'val' hypergradient (DiffAutoML), lr in [0.05, 1.0],
wd in [1e-5, 1e-4]. Needs the manual ImageNet download built with
`tfds build imagenet2012`. Batch 1024 as in the DiffAutoML recipe (lr 0.5 cosine,
wd 4e-5).
"""

from configs import default
from dha_jax.comparison import experiments

# DSNAS's space per third part of the config argument ('<v>/dsnas/<space>').
DSNAS_SPACES = {
    'shufflenet': {},
    'mobilenet': {'space': 'mobilenet'},
}
SEARCH = {
    'dsnas': {'space': 'shufflenet', 'budget': 330e6, 'penalty_weight': 1.0,
              'search_epochs': 60},
    'ista': {'stem': 'imagenet', 'channels': 48, 'layers': 14, 'auxiliary_weight': 0.4,
             'drop_path': 0.0, 'budget_mparams': 6.0},
    'darts': {'stem': 'imagenet', 'channels': 16, 'layers': 8,
              'retrain': {'channels': 48, 'layers': 14, 'drop_path': 0.0}},
}
EPOCHS = {'dsnas': 240, 'ista': 250, 'darts': 250}


def _split_space(arg):
  """'nas/dsnas/mobilenet' -> ('nas/dsnas', {'space': 'mobilenet'})."""
  parts = (arg or '').split('/')
  if len(parts) < 3:
    return arg, {}
  if parts[1] != 'dsnas' or parts[2] not in DSNAS_SPACES or len(parts) > 3:
    raise ValueError(f'config argument {arg!r}: a choice space follows only dsnas '
                     f"('<variant>/dsnas/<space>', space one of {sorted(DSNAS_SPACES)})")
  return '/'.join(parts[:2]), DSNAS_SPACES[parts[2]]


def get_config(variant=''):
  variant, space = _split_space(variant)
  search = dict(SEARCH, dsnas=dict(SEARCH['dsnas'], **space))
  c = default.get_config()
  c.dataset.source = 'tfds'
  c.dataset.name = 'imagenet2012'
  c.dataset.in_memory = False
  c.dataset.train_size = 1281167
  c.dataset.val_size = 10000
  c.dataset.test_split = 'validation'
  c.dataset.load_size = 256
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.preprocess.kind = 'rrc_flip'
  c.preprocess.image_size = 224
  c.model.name = 'resnet'
  c.model.stage_sizes = (2, 2, 2, 2)
  c.model.width = 64
  c.model.stem = 'imagenet'
  c.batch_size = 1024
  c.eval_batch_size = 1024
  c.num_epochs = 90
  c.lr = 0.5
  c.weight_decay = 4e-5
  c.label_smoothing = 0.1
  c.warmup_epochs = 1.0
  c.log_every_steps = 100
  c.compute_dtype = 'auto'  # bf16 convs on a GPU/TPU (~2x), float32 on CPU
  c.checkpoint_every_steps = 2500
  c = experiments.apply(
      c, variant, search, default_strategy='dsnas',
      hpo={'objective': 'val', 'lr_bounds': (0.05, 1.0), 'wd_bounds': (1e-5, 1e-4),
           'lr_init': 0.5, 'wd_init': 4e-5})
  variant, strategy = experiments.parse(variant, 'dsnas')
  if variant in experiments.SEARCHED:
    c.num_epochs = EPOCHS[strategy]
  return c
