"""The digits demo (configs/digits.py) with learned eta: lr and weight decay follow the
exact one-step hypergradient on a fresh un-augmented training batch ('train').

  python -m dha_jax.main --config=configs/digits_hpo.py --workdir=/tmp/digits_hpo

Expected: TO BE MEASURED
"""

from configs import digits
from dha_jax.hpo import hypergrad


def get_config():
  c = digits.get_config()
  c.hpo = hypergrad.default_config()
  c.hpo.enabled = True
  c.hpo.objective = 'train'
  c.hpo.lr_bounds = (1e-3, 0.5)
  c.hpo.wd_bounds = (1e-5, 1e-3)
  c.hpo.optimizer.lr = 1e-2   # 600 steps: a short run needs larger eta steps
  return c
