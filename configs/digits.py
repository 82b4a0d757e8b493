"""The embedded demo: scikit-learn's 8x8 digits, offline, on CPU. The config argument
picks the variant of the papers' comparison (dha_jax/comparison/experiments.py):

  python -m dha_jax.main --config=configs/digits.py --workdir=/tmp/digits            # fixed
  python -m dha_jax.main --config=configs/digits.py:da --workdir=/tmp/digits_da      # + tau
  python -m dha_jax.main --config=configs/digits.py:hpo --workdir=/tmp/digits_hpo    # + eta
  python -m dha_jax.main --config=configs/digits.py:dha --workdir=/tmp/digits_dha \
      --config.num_epochs=12                                    # tau + DSNAS alpha + eta
  python -m dha_jax.main --config=configs/digits.py:nas/ista --workdir=/tmp/digits_ista
  python -m dha_jax.main --config=configs/digits.py:nas/dsnas --workdir=/tmp/digits_mb \
      --config.nas.space=mobilenet_small --config.nas.stage_channels='(16,32)'

fixed: a small CNN, SGD-momentum, cosine schedule, crop: test accuracy ~0.97-0.99 (360
test images) in about a minute on 2 CPU cores. Search variants default to DSNAS on the
scaled ShuffleNet choice space ('/ista': 3 DARTS cells, C = 8); the learned tau uses
magnitudes 0.3; the learned eta follows the exact one-step hypergradient on a fresh
un-augmented training batch ('train'), lr in [1e-3, 0.5] from 0.05, wd in [1e-5, 1e-3].
dha with 12 epochs: ~0.96 test accuracy in ~2-5 minutes (the search ends at epoch 6 at
the latest); notebooks/dha_digits.ipynb runs a shorter one and plots tau, alpha and eta.
The measured runs and the flags that reproduce the earlier per-variant files
(digits_dsnas.py, digits_ista.py, ...): docs/results.md.
"""

from configs import default
from dha_jax.comparison import experiments

SEARCH = {'dsnas': {'stem_channels': 16, 'stage_repeats': (2, 2), 'stage_channels': (32, 64),
                    'last_channels': 128, 'warmup_epochs': 1, 'search_epochs': 6,
                    'optimizer': {'name': 'adam', 'lr': 3e-3, 'b1': 0.5, 'b2': 0.999}},
          'ista': {'channels': 8, 'layers': 3, 'auxiliary_weight': 0.0, 'drop_path': 0.0,
                   'freeze_from_epoch': 1}}


def get_config(variant=''):
  c = default.get_config()
  c.dataset.source = 'digits'
  c.dataset.val_size = 150
  c.dataset.mean, c.dataset.std = (0.3,), (0.35,)
  c.preprocess.kind = 'crop_flip'
  c.preprocess.crop_padding = 1
  c.preprocess.flip = False
  c.model.name = 'small_cnn'
  c.model.widths = (32, 64)
  c.batch_size = 64
  c.num_epochs = 30
  c.lr = 0.05
  c.weight_decay = 5e-4
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return experiments.apply(
      c, variant, SEARCH, default_strategy='dsnas',
      policy={'magnitude_search': 0.3, 'magnitude_tune': 0.3},
      hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.5), 'wd_bounds': (1e-5, 1e-3),
           'lr_init': 0.05, 'optimizer': {'name': 'adam', 'lr': 1e-2, 'b1': 0.9,
                                          'b2': 0.999}})
