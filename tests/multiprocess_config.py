"""The multi-process tests' config (tests/test_multiprocess.py): configs/test.py cut to 8
steps over 2 epochs of 4, so that a run crosses an epoch boundary (and, for full DHA,
DSNAS fixes its one choice layer there) in seconds.

  python -m dha_jax.local_cluster --num_processes=2 -- \\
      --config=tests/multiprocess_config.py:dha --workdir=/tmp/t

'' is the plain fixed CNN; 'dha' is tau + DSNAS alpha + eta ('train' objective);
'dha/ista' the same with ISTA's once-per-epoch recovery and freezing instead.
"""

from configs import test
from dha_jax.comparison import experiments

SEARCH = {'dsnas': {'stem_channels': 4, 'stage_repeats': (1,), 'stage_channels': (8,),
                    'last_channels': 16, 'warmup_epochs': 0, 'search_epochs': 1,
                    'max_search_fraction': 0.0,
                    'optimizer': {'name': 'adam', 'lr': 0.05}},
          'ista': {'channels': 2, 'layers': 1, 'auxiliary_weight': 0.0,
                   'freeze_from_epoch': 1, 'cell_space': 'darts_small'}}
STEPS_PER_EPOCH = 4


def get_config(variant=''):
  c = test.get_config()
  c.dataset.train_subset = STEPS_PER_EPOCH * c.batch_size
  c.num_epochs = 2
  c.checkpoint_every_steps = STEPS_PER_EPOCH
  c.log_every_steps = 2
  c.eval_every_epochs = 1
  c.recalibration_batches = 2
  if variant:
    c = experiments.apply(c, variant, SEARCH, default_strategy='dsnas',
                          hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.5),
                               'optimizer': {'name': 'adam', 'lr': 0.05}})
  return c
