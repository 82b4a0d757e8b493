"""The embedded demo: scikit-learn's 8x8 digits, offline, on CPU.

  python -m dha_jax.main --config=configs/digits.py --workdir=/tmp/digits

Expected: test accuracy ~0.97-0.99 (360 test images) in about a minute on 2 CPU cores
(fixed small CNN, SGD-momentum, cosine schedule; no search components).
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset.source = 'digits'
  c.dataset.val_size = 150
  c.dataset.mean, c.dataset.std = (0.3,), (0.35,)
  c.preprocess.kind = 'crop_flip'
  c.preprocess.crop_padding = 1
  c.preprocess.flip = False
  c.model.name = 'small_cnn'
  c.model.widths = (32, 64)
  c.batch_size = 64
  c.num_epochs = 30
  c.lr = 0.05
  c.weight_decay = 5e-4
  c.log_every_steps = 20
  c.checkpoint_every_steps = 200
  return c
