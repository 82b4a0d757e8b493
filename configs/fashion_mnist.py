"""Fashion-MNIST (the real data: `apt-get install dataset-fashion-mnist`), baseline mode.

  python -m dha_jax.main --config=configs/fashion_mnist.py --workdir=/tmp/fmnist

Fixed 4-conv CNN, SGD-momentum cosine, crop+flip. Expected on 2 CPU cores: ~92% test
accuracy after 8 epochs (the DESIGN.md yardstick: a 6-conv CNN reached 92.7% in 10
epochs); time is bounded by the CPU convolution speed (benchmarks/step_cost.py).
"""

from configs import default


def get_config():
  c = default.get_config()
  c.dataset.source = 'idx'
  c.dataset.data_dir = '/usr/share/datasets/fashion-mnist'
  c.dataset.val_size = 5000
  c.dataset.mean, c.dataset.std = (0.286,), (0.353,)
  c.preprocess.kind = 'crop_flip'
  c.preprocess.crop_padding = 2
  c.preprocess.flip = True
  c.model.name = 'small_cnn'
  c.model.widths = (32, 64)
  c.batch_size = 128
  c.num_epochs = 8
  c.lr = 0.05
  c.weight_decay = 5e-4
  c.log_every_steps = 50
  c.checkpoint_every_steps = 500
  return c
