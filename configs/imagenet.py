"""ImageNet (TFDS imagenet2012, streamed): random-resized crop + flip at 224 px,
SGD-momentum cosine, label smoothing 0.1. The config argument picks the variant of the
papers' comparison (dha_jax/experiments.py) and, after '/', the architecture space:

  python -m dha_jax.main --config=configs/imagenet.py --workdir=gs://bucket/imnet
  python -m dha_jax.main --config=configs/imagenet.py:dha/dsnas --workdir=gs://b/diffautoml
  python -m dha_jax.main --config=configs/imagenet.py:dha/ista --workdir=gs://b/dha
  python -m dha_jax.main --config=configs/imagenet.py:nas/dsnas --workdir=gs://b/dsnas

  ''             fixed ResNet-18-style network (the baseline): ~70% top-1 after 90 epochs
                 (8 GPUs, ~1 day)
  '<v>/dsnas'    the SPOS ShuffleNetV2 choice space (DiffAutoML, METHOD.md 3a): alpha by
                 Adam 1e-3 (0.5, 0.999), early fix at 0.3, a 330M-FLOPs budget, all layers
                 fixed by epoch 60 of 240. The reference genotype
                 [0,0,3,0,3,2,0,0,3,3,2,3,3,3,2,0,0,3,3,0] counts 323.3M multiply-adds and
                 3.55M parameters at 224 px here. DiffAutoML (dha/dsnas) reports 75.5% top-1
                 at 318M FLOPs for 394 V100-hours; DSNAS alone (nas/dsnas) 74.4%.
  '<v>/ista'     the DARTS cells with the DARTS ImageNet stem (DHA, METHOD.md 3b): 14 cells,
                 C = 48, a 6M-parameter budget, 250 epochs; DHA reports 77.4% top-1.
  '<v>/darts'    first-order DARTS on the same cells (8 cells, C = 16 during the search).

The learned variants use eta by the 'val' hypergradient (DiffAutoML), lr in [0.05, 1.0],
wd in [1e-5, 1e-4]. Needs the manual ImageNet download built with
`tfds build imagenet2012`. Batch 1024 as in the DiffAutoML recipe (lr 0.5 cosine,
wd 4e-5).
"""

from configs import default
from dha_jax import experiments

SEARCH = {
    'dsnas': {'space': 'shufflenet', 'budget': 330e6, 'penalty_weight': 1.0,
              'search_epochs': 60},
    'ista': {'stem': 'imagenet', 'channels': 48, 'layers': 14, 'auxiliary_weight': 0.4,
             'drop_path': 0.0, 'budget_mparams': 6.0},
    'darts': {'stem': 'imagenet', 'channels': 16, 'layers': 8},
}
EPOCHS = {'dsnas': 240, 'ista': 250, 'darts': 250}


def get_config(variant=''):
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
  c.checkpoint_every_steps = 2500
  c = experiments.apply(
      c, variant, SEARCH, default_strategy='dsnas',
      hpo={'objective': 'val', 'lr_bounds': (0.05, 1.0), 'wd_bounds': (1e-5, 1e-4),
           'lr_init': 0.5, 'wd_init': 4e-5})
  variant, strategy = experiments.parse(variant, 'dsnas')
  if variant in experiments.SEARCHED:
    c.num_epochs = EPOCHS[strategy]
  return c
