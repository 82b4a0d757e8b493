"""DSNAS search (METHOD.md 3a) on the offline digits set in the scaled MobileNet space
(dha_jax/nas/mobilenet.py, 'mobilenet_small' narrowed to two stages for 8 px digits):
MBConv k 3/5/7 x e 3/6 per layer, skip where the identity fits; alpha sampled per step
per device, early fix, then the fixed child trains on.

  python -m dha_jax.main --config=configs/digits_mobilenet.py --workdir=/tmp/digits_mb

4 choice layers (1.8k paths); children from 0.22 to 1.39 M multiply-adds, the supernet
4.6 M (all candidates), 0.16 M parameters. Checked end to end with --config.num_steps=6
(2026-12-02, 2 CPU cores shared with other jobs: 5.7 min, 4.6 of them compiling, 2.2
the search step alone); accuracy over the full 20 epochs not measured. The space at 28 px:
`--config=configs/fashion_mnist_dsnas.py --config.nas.space=mobilenet_small` (its three
stages of 32 / 64 / 128 channels are read by this space too: 28 -> 28 -> 14 -> 7 px).
The derived child's genotype (e.g. 'k5_e6', 'skip'), FLOPs and parameters go to
result.json.
"""

from configs import digits
from dha_jax.nas import dsnas


def get_config():
  c = digits.get_config()
  c.nas = n = dsnas.default_config()
  n.space = 'mobilenet_small'
  n.stem_channels = 16
  n.stage_repeats = (2, 2)      # layers 1 and 3 may be skipped
  n.stage_channels = (16, 32)   # strides (1, 2): 8 px -> 8 -> 4
  n.last_channels = 128
  n.optimizer.lr = 3e-3
  n.warmup_epochs = 2
  n.fix_threshold = 0.3
  n.search_epochs = 12
  c.num_epochs = 20
  c.batch_size = 64
  return c
