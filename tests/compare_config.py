"""The comparison test's config (tests/test_compare.py): configs/test.py cut to 6 steps,
with the variant as its argument and a one-layer choice space to search, since every
variant and seed of a comparison is a process of its own (~10 s each on 2 CPU cores).

  python -m dha_jax.main --config=tests/compare_config.py:sequential --workdir=/tmp/t

What the test checks is the runner (which run, seed, workdir, genotype), so tau and eta stay
off in every variant: their compile would add ~5 s to each learned run. That the variants
switch them on is tested in tests/test_dha.py. Accuracy is not the point.
"""

from configs import test
from dha_jax.comparison import experiments

# One choice layer of 4 blocks, run as the full supernet ('masked' compiles faster here).
SEARCH = {'dsnas': {'stem_channels': 4, 'stage_repeats': (1,), 'stage_channels': (8,),
                    'last_channels': 16, 'execution': 'masked',
                    'optimizer': {'name': 'adam', 'lr': 0.05}}}
STEPS = 6


def get_config(variant=''):
  c = test.get_config()
  c.num_steps = STEPS
  c.checkpoint_every_steps = STEPS // 2
  c.log_every_steps = STEPS // 2
  c.eval_every_epochs = 0
  c.recalibration_batches = 0  # no BN recalibration pass (one compile less)
  c = experiments.apply(c, variant, SEARCH, default_strategy='dsnas')
  c.policy.name = 'none'
  c.hpo.enabled = False
  return c
