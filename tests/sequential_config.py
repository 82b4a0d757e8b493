"""The sequential variant's test config (tests/test_sequential.py): configs/test.py cut
to 4 steps, with a tiny search space per strategy, DA+HPO on in the second half.

  python -m dha_jax.main --config=tests/sequential_config.py:sequential/darts \
      --workdir=/tmp/t --config.nas.genotype=DARTS_V2

Each strategy's search half and training half are one short run each; accuracy is not
the point, the hand-over of the genotype is.
"""

from configs import test
from dha_jax.comparison import experiments

# One choice layer of 4 blocks; cell networks of one cell at C = 2, no auxiliary head
# (their compile dominates: at 3 cells, C = 4, ISTA's step alone compiled for 2 minutes).
SEARCH = {'dsnas': {'stem_channels': 4, 'stage_repeats': (1,), 'stage_channels': (8,),
                    'last_channels': 16, 'execution': 'masked',
                    'optimizer': {'name': 'adam', 'lr': 0.05}},
          'ista': {'channels': 2, 'layers': 1, 'auxiliary_weight': 0.0},
          'darts': {'channels': 2, 'layers': 1, 'auxiliary_weight': 0.0}}
STEPS = 4


def get_config(variant=''):
  c = test.get_config()
  c.num_steps = STEPS
  c.checkpoint_every_steps = STEPS
  c.log_every_steps = STEPS // 2
  c.eval_every_epochs = 0
  c.recalibration_batches = 0  # no BN recalibration pass (one compile less)
  # 'lagged': the cheapest eta hypergradient (no extra pass over a batch).
  return experiments.apply(c, variant, SEARCH, default_strategy='dsnas',
                           hpo={'objective': 'lagged'})
