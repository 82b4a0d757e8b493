"""Full DHA on the offline digits set: tau (learned policy), alpha (DSNAS on the scaled
ShuffleNet choice space), eta (lr and weight decay by the one-step hypergradient) and
theta in one run; the derived child is exported to <workdir>/model.

  python -m dha_jax.main --config=configs/digits_dha.py --workdir=/tmp/digits_dha

Expected on 2 CPU cores: ~0.9-0.97 test accuracy in ~3-5 minutes (digits is 8x8; the
search ends at epoch 6 at the latest, then the child trains on with tau and eta).
notebooks/dha_digits.ipynb runs a shorter version of it and plots tau, alpha and eta.
"""

from configs import digits
from dha_jax import experiments

SEARCH = {'dsnas': {'stem_channels': 16, 'stage_repeats': (2, 2), 'stage_channels': (32, 64),
                    'last_channels': 128, 'warmup_epochs': 1, 'search_epochs': 6,
                    'optimizer': {'name': 'adam', 'lr': 3e-3, 'b1': 0.5, 'b2': 0.999}},
          'ista': {'channels': 8, 'layers': 3, 'auxiliary_weight': 0.0, 'drop_path': 0.0,
                   'freeze_from_epoch': 1}}


def get_config(variant='dha'):
  c = digits.get_config()
  c.num_epochs = 12
  return experiments.apply(
      c, variant, SEARCH, default_strategy='dsnas',
      policy={'magnitude_search': 0.3, 'magnitude_tune': 0.3},
      hpo={'objective': 'train', 'lr_bounds': (1e-3, 0.5), 'wd_bounds': (1e-5, 1e-3),
           'lr_init': 0.05, 'optimizer': {'name': 'adam', 'lr': 1e-2, 'b1': 0.9,
                                          'b2': 0.999}})
