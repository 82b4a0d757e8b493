"""CIFAR-100 from TFDS: the recipe and the variants of configs/cifar10.py.

  python -m dha_jax.main --config=configs/cifar100.py --workdir=/tmp/cifar100
  python -m dha_jax.main --config=configs/cifar100.py:dha --workdir=/tmp/cifar100_dha

Expected: ~72-75% test top-1 for the fixed ResNet after 200 epochs on one GPU (~1 h);
the DHA paper reports 83.93% for the full system (DARTS cells by ISTA-NAS, 600 epochs,
eta in lr [1e-3, 0.05], wd [1e-4, 5e-4] as in the reference) and "42% less time than
DARTS".
"""

from configs import cifar10


def get_config(variant=''):
  c = cifar10.get_config(variant)
  c.dataset.name = 'cifar100'
  c.dataset.mean = (0.5071, 0.4865, 0.4409)
  c.dataset.std = (0.2673, 0.2564, 0.2762)
  return c
