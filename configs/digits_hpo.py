"""The digits demo (configs/digits.py) with learned eta: lr and weight decay follow the
exact one-step hypergradient on a fresh un-augmented training batch ('train').

  python -m dha_jax.main --config=configs/digits_hpo.py --workdir=/tmp/digits_hpo

Expected (measured, 2 shared CPU cores): test accuracy 0.986-0.992 (baseline digits.py
0.997) in ~50 s of training (baseline ~38 s; the 'train' objective costs ~1.9x per step).
lr starts at the log-midpoint of its bounds, 0.022, climbs to ~0.19 within 40 steps and
settles at ~0.11-0.14; weight decay falls to its lower bound 1e-5 by step ~400 (the
short-horizon bias of greedy hypergradients, docs/method.md section 4). <workdir>/hparams.png
draws the trajectory (dha_jax/hpo/plot.py). --config.hpo.objective=lagged learns eta at
~1.0x the plain step's cost; 'val' uses the held-out split.
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
