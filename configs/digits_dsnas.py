"""DSNAS search (docs/method.md 3a) on the offline digits set: the scaled ShuffleNet choice
space, alpha sampled per step per device, early fix, then the fixed child trains on.

  python -m dha_jax.main --config=configs/digits_dsnas.py --workdir=/tmp/digits_dsnas

Expected on 2 CPU cores: ~0.95-0.98 test accuracy in 2-4 minutes; most layers are fixed
by the early-fix rule before the last epoch (nas/fixed_layers in metrics.jsonl) and the
derived child's genotype, FLOPs and parameters are in result.json.
"""

from configs import digits
from dha_jax.nas import dsnas


def get_config():
  c = digits.get_config()
  c.nas = n = dsnas.default_config()
  n.space = 'shufflenet_small'
  n.stem_channels = 16
  n.stage_repeats = (2, 2)
  n.stage_channels = (32, 64)
  n.last_channels = 128
  n.optimizer.lr = 3e-3
  n.warmup_epochs = 2
  n.fix_threshold = 0.3
  n.search_epochs = 12
  c.num_epochs = 20
  c.batch_size = 64
  return c
