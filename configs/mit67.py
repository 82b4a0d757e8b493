"""MIT67 (indoor scenes, Quattoni & Torralba 2009: 67 classes, 15,620 photos) in the
image-folder layout of configs/sport8.py, whose recipe and variants it shares. Use the
official TrainImages.txt / TestImages.txt lists (80 / 20 images per class) to fill
<data_dir>/train/<class>/ and <data_dir>/test/<class>/:

  python -m dha_jax.main --config=configs/mit67.py --workdir=/tmp/mit67 \
      --config.dataset.data_dir=/data/mit67
  python -m dha_jax.main --config=configs/mit67.py:dha --workdir=/tmp/mit67_dha \
      --config.dataset.data_dir=/data/mit67

The DHA paper reports 73.35% test accuracy for DHA on MIT67 (Sequential DHA 72.34%,
one-stage ISTA-NAS 72.12%, DARTS 70.73%). 5,360 training images: ~10x Sport8's epoch
cost; 100 epochs.
"""

from configs import sport8


def get_config(variant=''):
  c = sport8.get_config(variant)
  c.dataset.data_dir = '/data/mit67'
  c.dataset.val_size = 335
  c.num_epochs = 100
  return c
