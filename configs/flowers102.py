"""Oxford Flowers-102 (Nilsback & Zisserman 2008) from TFDS (`oxford_flowers102`: 1,020
train, 1,020 validation and 6,149 test images of 102 classes), with the recipe and the
variants of configs/sport8.py; training uses TFDS's train split (val_size of it held
out for the 'val' objectives), the test is TFDS's test split:

  python -m dha_jax.main --config=configs/flowers102.py --workdir=/tmp/flowers
  python -m dha_jax.main --config=configs/flowers102.py:dha --workdir=/tmp/flowers_dha

Needs `tfds build oxford_flowers102` (~330 MB) in config.dataset.data_dir or
~/tensorflow_datasets. The DHA paper lists Flowers-102 among its datasets but reports no
number for it; from-scratch training on 1k images is data-starved, so expect far below
the usual ImageNet-pretrained ~95% (we have not measured it). 300 epochs.
"""

from configs import sport8


def get_config(variant=''):
  c = sport8.get_config(variant)
  c.compute_dtype = 'auto'  # bf16 convs on a GPU/TPU (~2x), float32 on CPU
  c.dataset.source = 'tfds'
  c.dataset.name = 'oxford_flowers102'
  c.dataset.data_dir = ''
  c.dataset.val_size = 102
  c.num_epochs = 300
  return c
