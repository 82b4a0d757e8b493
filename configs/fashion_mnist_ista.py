"""One-stage ISTA-NAS on Fashion-MNIST (real data, DARTS cells, CPU-sized).

  python -m dha_jax.main --config=configs/fashion_mnist_ista.py --workdir=/tmp/fm_ista

5 cells (reductions at cells 1 and 3: 28 -> 14 -> 7 px), C = 8, auxiliary head 0.4,
drop-path 0.1 after the search, budget 0.1M parameters. Nodes freeze when their recovered
code moves less than freeze_threshold in an epoch (from epoch 2); then the derived network
trains on. Measured (2026-11-26, 2 CPU cores, one uninterrupted run): 7 of 8 nodes froze
at epoch 2, the last at epoch 3 (step 1287), then 90.90% test accuracy after 12 epochs,
42,002 parameters, 59.5 min. With 2e-2 three nodes kept moving 0.05-0.09 an epoch through
epoch 9 and the search did not end in 15 epochs (docs/results.md, "ISTA search on the real
Fashion-MNIST"; <workdir>/freezing.png draws the movements against the threshold).
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
  n.freeze_threshold = 0.1      # 429 steps/epoch: 2.3e-4 a step (digits_ista: 5e-3 over ~20)
  n.budget_mparams = 0.1
  c.nas = n
  c.batch_size = 128
  c.num_epochs = 12
  return c
