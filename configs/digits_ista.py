"""One-stage ISTA-NAS on the offline 8x8 digits (DARTS cells, CPU-sized).

  python -m dha_jax.main --config=configs/digits_ista.py --workdir=/tmp/digits_ista

3 cells (reductions at cells 1 and 2: 8 -> 4 -> 2 px), C = 8, auxiliary head 0.4. The
codes b are searched on the training loss; nodes freeze once their recovered code moves
less than freeze_threshold per epoch (from epoch 2), then the same network trains on with
drop-path. Measured on 2 CPU cores: the search ends by freezing all 8 nodes at epoch 14
(2026-11-24) / 13 (2026-11-26), then the derived network trains on; 0.992 / 0.983 test
accuracy, ~150 s wall, mostly the first compile of each support (~20-40 s each).
"""

from configs import digits
from dha_jax.nas import ista


def get_config():
  c = digits.get_config()
  n = ista.default_config()
  n.channels, n.layers = 8, 3
  n.auxiliary_weight = 0.4
  n.drop_path = 0.1
  n.code_init_std = 0.1
  n.freeze_threshold = 5e-3     # ~20 steps/epoch: Adam moves b by a few 1e-3 per epoch
  n.budget_mparams = 0.0
  c.nas = n
  c.batch_size = 64
  c.num_epochs = 30
  return c
