"""DSNAS search (docs/method.md 3a) on the offline digits set in the scaled MobileNet space
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

from configs import digits_dsnas


def get_config():
  """digits_dsnas.py's search and schedule, in the MobileNet space."""
  c = digits_dsnas.get_config()
  c.nas.space = 'mobilenet_small'
  c.nas.stage_channels = (16, 32)   # strides (1, 2): 8 px -> 8 -> 4; layers 1 and 3 may skip
  return c
