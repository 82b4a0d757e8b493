"""Sport8 (the UIUC event dataset, Li & Fei-Fei 2007: 8 sport events, 1,579 photos) in the
image-folder layout: <data_dir>/train/<event>/*.jpg and <data_dir>/test/<event>/*.jpg.
The download has one folder per event; split each 70/30 into train/ and test/ (the DHA
paper does not publish its split). The config argument picks the variant of the papers'
comparison (dha_jax/comparison/experiments.py):

  python -m dha_jax.main --config=configs/sport8.py --workdir=/tmp/sport8 \
      --config.dataset.data_dir=/data/sport8
  python -m dha_jax.main --config=configs/sport8.py:dha --workdir=/tmp/sport8_dha \
      --config.dataset.data_dir=/data/sport8

224 px (random-resized crop + flip from 256), ImageNet normalisation. fixed: a
ResNet-18-class network from scratch, Nesterov lr 0.05 cosine, 200 epochs. Search
variants: ISTA-NAS on the DARTS cells with the ImageNet stem (14 cells, C = 48, a
6M-parameter budget), eta by the 'train' hypergradient in lr [1e-3, 0.1], wd
[1e-4, 5e-4]. The DHA paper reports 95.06% test accuracy for DHA on Sport8 (Sequential
DHA 94.55%, one-stage ISTA-NAS 94.33%, DARTS 93.87%); it states neither the resolution
nor the epochs, which are our choice here. Cost: the 1.1k training images make an epoch a
few seconds on one GPU; on 2 CPU cores only the test-sized overrides are practical.
"""

from configs import default
from dha_jax.comparison import experiments

SEARCH = {
    'ista': {'stem': 'imagenet', 'channels': 48, 'layers': 14, 'auxiliary_weight': 0.4,
             'drop_path': 0.0, 'budget_mparams': 6.0},
    'darts': {'stem': 'imagenet', 'channels': 16, 'layers': 8},
    'dsnas': {'space': 'shufflenet', 'budget': 330e6, 'warmup_epochs': 20,
              'search_epochs': 100},
}


def get_config(variant=''):
  c = default.get_config()
  c.dataset.source = 'folder'
  c.dataset.data_dir = '/data/sport8'
  c.dataset.load_size = 256
  c.dataset.val_size = 100
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.preprocess.kind = 'rrc_flip'
  c.preprocess.image_size = 224
  c.preprocess.rrc_min_scale = 0.25
  c.model.name = 'resnet'
  c.model.stage_sizes = (2, 2, 2, 2)
  c.model.width = 64
  c.model.stem = 'imagenet'
  c.batch_size = 64
  c.eval_batch_size = 64
  c.num_epochs = 200
  c.lr = 0.05
  c.weight_decay = 3e-4
  c.optimizer.name = 'nesterov'
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500
  return experiments.apply(
      c, variant, SEARCH, default_strategy='ista',
      hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.1), 'wd_bounds': (1e-4, 5e-4)})
