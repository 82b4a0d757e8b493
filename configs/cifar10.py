"""CIFAR-10 from TFDS. The config argument picks the variant of the papers' comparison
(dha_jax/comparison/experiments.py); without one, the fixed-network baseline:

  python -m dha_jax.main --config=configs/cifar10.py --workdir=/tmp/cifar10
  python -m dha_jax.main --config=configs/cifar10.py:dha --workdir=/tmp/cifar10_dha
  python -m dha_jax.main --config=configs/cifar10.py:nas/darts --workdir=/tmp/c10_darts
  python -m dha_jax.compare --config=configs/cifar10.py --workdir=/tmp/c10_cmp

Needs the TFDS data (`tfds build cifar10`, ~160 MB) in config.dataset.data_dir or
~/tensorflow_datasets. fixed: a ResNet-20-width-16 class network, Nesterov lr 0.1 cosine,
crop+flip+Cutout(16), 200 epochs: ~94-95% test accuracy on one GPU (~1 h).
Search variants (DHA paper): ISTA-NAS one-stage on the DARTS cells, 20 cells, C = 36,
auxiliary head 0.4, drop-path 0.2 after the search, a 3.7M-parameter budget, 600 epochs
(search ends by freezing, ~120 epochs in the reference); eta by the 'train' hypergradient,
lr in [1e-3, 0.05], wd in [1e-4, 5e-4]. The paper reports 98.11% for full DHA (a few
GPU-days here; budget accordingly). '/darts': first-order DARTS search (8 cells, C = 16),
whose genotype sequential/darts trains at DARTS's evaluation size (20 cells, C = 36);
'/dsnas': the 32 px ShuffleNet choice space.
"""

from configs import default
from dha_jax.comparison import experiments

SEARCH = {
    'ista': {'channels': 36, 'layers': 20, 'auxiliary_weight': 0.4, 'drop_path': 0.2,
             'budget_mparams': 3.7},
    'darts': {'channels': 16, 'layers': 8, 'retrain': {'channels': 36, 'layers': 20}},
    'dsnas': {'space': 'shufflenet_small', 'stem_channels': 24,
              'stage_repeats': (2, 4, 4), 'stage_channels': (64, 160, 320),
              'last_channels': 1024, 'warmup_epochs': 10, 'search_epochs': 100},
}
SEARCH_EPOCHS = 600  # the reference recipe's total for the one-stage searched runs


def get_config(variant=''):
  c = default.get_config()
  c.compute_dtype = 'auto'  # bf16 convs on a GPU/TPU (~2x), float32 on CPU
  c.dataset.source = 'tfds'
  c.dataset.name = 'cifar10'
  c.dataset.val_size = 5000
  c.dataset.mean = (0.4914, 0.4822, 0.4465)
  c.dataset.std = (0.2470, 0.2435, 0.2616)
  c.preprocess.kind = 'crop_flip'
  c.preprocess.crop_padding = 4
  c.preprocess.cutout = 16
  c.model.name = 'resnet'
  c.model.stage_sizes = (3, 3, 3)
  c.model.width = 16
  c.model.stem = 'cifar'
  c.batch_size = 128
  c.num_epochs = 200
  c.lr = 0.1
  c.weight_decay = 5e-4
  c.optimizer.name = 'nesterov'
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c = experiments.apply(
      c, variant, SEARCH, default_strategy='ista',
      hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.05), 'wd_bounds': (1e-4, 5e-4)})
  if experiments.parse(variant, 'ista')[0] in experiments.SEARCHED:
    c.num_epochs = SEARCH_EPOCHS
  return c
