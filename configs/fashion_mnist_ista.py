"""One-stage ISTA-NAS on Fashion-MNIST (real data, DARTS cells, CPU-sized).

  python -m dha_jax.main --config=configs/fashion_mnist_ista.py --workdir=/tmp/fm_ista

5 cells (reductions at cells 1 and 3: 28 -> 14 -> 7 px), C = 8, auxiliary head 0.4,
drop-path 0.1 after the search, budget 0.1M parameters. Nodes freeze when their recovered
code moves less than freeze_threshold in an epoch (from epoch 2); then the derived network
trains on. Measured (2026-11-26, 2 CPU cores, ~5 min an epoch): frozen nodes after epochs
1-9: 0, 0, 1, 4, 5, 5, 5, 5, 5; the last three kept moving 0.05-0.09 an epoch, so with
this threshold the search does not end within the 15 epochs. Resumed at step 4106 with
--config.nas.freeze_threshold=0.1 they froze at epoch 10 and the derived network trained
on: 91.23% test accuracy after 15 epochs, 0.045M parameters (README, "ISTA search on the real Fashion-MNIST").
"""

from configs import fashion_mnist
from dha_jax.nas import ista


def get_config():
  c = fashion_mnist.get_config()
  n = ista.default_config()
  n.channels, n.layers = 8, 5
  n.auxiliary_weight = 0.4
  n.drop_path = 0.1
  n.code_init_std = 0.1
  n.freeze_threshold = 0.1      # ~430 steps/epoch at batch 128 (digits: 2e-2 over 20)
  n.budget_mparams = 0.1
  c.nas = n
  c.batch_size = 128
  c.num_epochs = 12
  return c
