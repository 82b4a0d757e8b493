"""ImageNet (TFDS imagenet2012, streamed): random-resized crop + flip at 224 px,
SGD-momentum cosine, label smoothing 0.1. The architecture is a config argument:

  python -m dha_jax.main --config=configs/imagenet.py --workdir=gs://bucket/imnet
  python -m dha_jax.main --config=configs/imagenet.py:dsnas --workdir=gs://bucket/imnet_ds

  ''           fixed ResNet-18-style network (the baseline)
  'dsnas'      DSNAS over the SPOS ShuffleNetV2 choice space (DiffAutoML, METHOD.md 3a):
               alpha by Adam 1e-3 (0.5, 0.999), early fix at 0.3, a 330M-FLOPs budget.
               The reference genotype [0,0,3,0,3,2,0,0,3,3,2,3,3,3,2,0,0,3,3,0] counts
               323.3M multiply-adds and 3.55M parameters at 224 px here.

Needs the manual ImageNet download built with `tfds build imagenet2012`. Batch 1024 as
in the DiffAutoML recipe (lr 0.5 cosine, wd 4e-5). Expected: ~70% top-1 for this
ResNet-18-class network after 90 epochs (8 GPUs, ~1 day). The papers' searched systems
reach 75.5% (DiffAutoML, ShuffleNet space, 318M FLOPs) and 77.4% (DHA, DARTS cells).
"""

from configs import default


def get_config(arch=''):
  c = default.get_config()
  c.dataset.source = 'tfds'
  c.dataset.name = 'imagenet2012'
  c.dataset.in_memory = False
  c.dataset.train_size = 1281167
  c.dataset.val_size = 10000
  c.dataset.test_split = 'validation'
  c.dataset.load_size = 256
  c.dataset.mean = (0.485, 0.456, 0.406)
  c.dataset.std = (0.229, 0.224, 0.225)
  c.preprocess.kind = 'rrc_flip'
  c.preprocess.image_size = 224
  c.model.name = 'resnet'
  c.model.stage_sizes = (2, 2, 2, 2)
  c.model.width = 64
  c.model.stem = 'imagenet'
  c.batch_size = 1024
  c.eval_batch_size = 1024
  c.num_epochs = 90
  c.lr = 0.5
  c.weight_decay = 4e-5
  c.label_smoothing = 0.1
  c.warmup_epochs = 1.0
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2500
  if arch == 'dsnas':
    from dha_jax.nas import dsnas  # pylint: disable=g-import-not-at-top
    c.nas = n = dsnas.default_config()
    n.space = 'shufflenet'
    n.budget = 330e6
    n.penalty_weight = 1.0
    n.search_epochs = 60     # remaining layers fixed to their argmax here at the latest
    c.num_epochs = 240
  elif arch:
    raise ValueError(f"configs/imagenet.py:{arch}: the architecture argument is '' "
                     "(ResNet) or 'dsnas'")
  return c
