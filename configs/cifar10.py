"""CIFAR-10 from TFDS, baseline mode (fixed ResNet, hand-set eta, crop+flip+Cutout).

  python -m dha_jax.main --config=configs/cifar10.py --workdir=/tmp/cifar10

Needs the TFDS data (`tfds build cifar10`, ~160 MB) in config.dataset.data_dir or
~/tensorflow_datasets. Expected: ~94-95% test accuracy for this ResNet-20-width-16 class
network after 200 epochs on one GPU (~1 h); the DHA papers' full system reaches 98.11%
with the DARTS cell space and 600 epochs.
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset.source = 'tfds'
  c.dataset.name = 'cifar10'
  c.dataset.val_size = 5000
  c.dataset.mean = (0.4914, 0.4822, 0.4465)
  c.dataset.std = (0.2470, 0.2435, 0.2616)
  c.preprocess.kind = 'crop_flip'
  c.preprocess.crop_padding = 4
  c.preprocess.cutout = 16
  c.model.name = 'resnet'
  c.model.stage_sizes = (3, 3, 3)
  c.model.width = 16
  c.model.stem = 'cifar'
  c.batch_size = 128
  c.num_epochs = 200
  c.lr = 0.1
  c.weight_decay = 5e-4
  c.optimizer.name = 'nesterov'
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  return c
