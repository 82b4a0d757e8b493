"""DSNAS search on the real Fashion-MNIST (`apt-get install dataset-fashion-mnist`): the
scaled ShuffleNet choice space for 28 px (no stem downsampling, 3 stages), alpha sampled
per step per device, early fix, then the fixed child trains on; BN recalibrated, exported.

  python -m dha_jax.main --config=configs/fashion_mnist_dsnas.py --workdir=/tmp/fm_dsnas

The search phase ends by early fix or at epoch 3; the child's genotype, FLOPs and
parameters go to result.json and model/. Not measured end to end (6 epochs: over an hour
on 2 CPU cores). Measured 2026-11-24 with the same space from configs/fashion_mnist.py:nas/dsnas
and 480 steps (search ended at step 429): 57.9% test accuracy, a 6.3-MFLOP child; the
sampled supernet learns far slower than its child alone (74.1% after 150 steps of the
child trained directly), since each block is trained on a quarter of the steps.
"""

from configs import fashion_mnist
from dha_jax.nas import dsnas


def get_config():
  c = fashion_mnist.get_config()
  c.nas = n = dsnas.default_config()
  n.space = 'shufflenet_small'
  n.stem_channels = 16
  n.stage_repeats = (1, 2, 2)
  n.stage_channels = (32, 64, 128)
  n.last_channels = 256
  n.optimizer.lr = 3e-3
  n.warmup_epochs = 1
  n.search_epochs = 3
  c.num_epochs = 6
  return c
