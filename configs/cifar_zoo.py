"""The CIFAR rows of DiffAutoML's Table 2: a fixed network of the zoo with its published
recipe, and DA+HPO (learned tau and eta) on it. The argument names the network, the
variant and the dataset, separated by '/', in any order (defaults wrn28_10, fixed, cifar10):

  python -m dha_jax.main --config=configs/cifar_zoo.py:wrn28_10/da_hpo --workdir=/tmp/w28
  python -m dha_jax.main --config=configs/cifar_zoo.py:wrn40_2/da_hpo/cifar100 --workdir=W
  python -m dha_jax.main --config=configs/cifar_zoo.py:pyramidnet272/da_hpo --workdir=W
  python -m dha_jax.main --config=configs/cifar_zoo.py:da_hpo --config.model.name=wrn40_2 \
      --workdir=W   # swaps the network only: the argument also sets its recipe

Variants: the fixed-network ones of dha_jax/comparison/experiments.py (fixed, randaugment,
trivialaugment, da, hpo, da_hpo); the search variants have no space here.
Recipe (Fast AutoAugment's published configs for these networks, which Table 2 compares
against; DiffAutoML gives none of its own): crop+flip, Cutout 16, Nesterov SGD with a
5-epoch warmup into a cosine, global grad-norm clip 5;
  wrn28_10       200 epochs, batch 128, lr 0.1,  wd 5e-4   36.5M parameters
  wrn40_2        200 epochs, batch 128, lr 0.1,  wd 2e-4   2.2M
  pyramidnet272  1800 epochs, batch 64, lr 0.05, wd 5e-5   26.2M (ShakeDrop, p_L = 0.5)
DA+HPO: tau the learned policy (config.policy defaults), eta against the held-out 'val'
split (DiffAutoML; 5000 of the 50000 training images): lr a learned multiplier in [1/4, 4]
of the recipe's cosine and wd learned in [wd/4, 4 wd], both starting at the recipe's
values (docs/method.md 4: a greedy absolute lr collapses).

Published top-1 (%), DiffAutoML Table 2 (Baseline / FAA / PBA / AdvAA / DiffAutoML):
  CIFAR-10   WRN-28-10      96.1 / 97.3 / 97.4 / 98.1 / 98.0 +- 0.1
             WRN-40-2       94.7 / 96.4 / not reported / not reported / 96.8 +- 0.0
             PyramidNet+SD  97.3 / 98.3 / 98.5 / 98.6 / 98.6 +- 0.1
  CIFAR-100  WRN-28-10      81.2 / 82.9 / 83.3 / 84.5 / 84.0 +- 0.2
             WRN-40-2       74.0 / 79.3 / not reported / not reported / 80.6 +- 0.0
             PyramidNet+SD  not reported
AutoAugment is not a column of Table 2: not reported there.
Expected cost (not measured: XLA's count of the forward, x3 for a training step, 45000
images an epoch): WRN-28-10 9.5 GFLOPs an image, 2.6e17 FLOPs for the fixed run (~3.6 h at
a sustained 20 TFLOP/s); WRN-40-2 0.6 GFLOPs, 1.6e16 (well under 1 h, not FLOP-bound);
PyramidNet-272 8.7 GFLOPs, 2.1e18 (~29 h). da_hpo's 'val' hypergradient adds one
forward/backward a step: about twice that.
"""

from configs import cifar10, cifar100
from dha_jax.comparison import experiments

RECIPES = {  # FAA's confs/{wresnet28x10,wresnet40x2,pyramid272}_cifar.yaml
    'wrn28_10': {'batch_size': 128, 'num_epochs': 200, 'lr': 0.1, 'weight_decay': 5e-4},
    'wrn40_2': {'batch_size': 128, 'num_epochs': 200, 'lr': 0.1, 'weight_decay': 2e-4},
    'pyramidnet272': {'batch_size': 64, 'num_epochs': 1800, 'lr': 0.05,
                      'weight_decay': 5e-5},
}
DATASETS = {'cifar10': cifar10, 'cifar100': cifar100}
FIXED_VARIANTS = ('fixed', 'randaugment', 'trivialaugment', 'da', 'hpo', 'da_hpo')


def parse(arg: str):
  """'wrn40_2/da_hpo/cifar100' (any order, each part optional) -> (network, variant,
  dataset)."""
  picked = {}
  for part in (arg or '').split('/'):
    if not part:
      continue
    kind = ('network' if part in RECIPES else 'dataset' if part in DATASETS else
            'variant' if part in FIXED_VARIANTS else None)
    if kind is None:
      raise ValueError(f'config argument {arg!r}: {part!r} is none of the networks '
                       f'{sorted(RECIPES)}, the datasets {sorted(DATASETS)} or the '
                       f'fixed-network variants {FIXED_VARIANTS}')
    if kind in picked:
      raise ValueError(f'config argument {arg!r} names two {kind}s')
    picked[kind] = part
  return (picked.get('network', 'wrn28_10'), picked.get('variant', 'fixed'),
          picked.get('dataset', 'cifar10'))


def get_config(arg=''):
  network, variant, dataset = parse(arg)
  c = DATASETS[dataset].get_config()  # the dataset, its normalisation and crop+flip+Cutout
  c.model.name = network
  for k, v in RECIPES[network].items():
    c[k] = v
  c.optimizer.name = 'nesterov'
  c.schedule = 'cosine'
  c.warmup_epochs = 5.0
  c.preprocess.cutout = 16
  wd = c.weight_decay
  return experiments.apply(
      c, variant, search={},
      hpo={'objective': 'val', 'lr_mode': 'multiplier', 'lr_multiplier_bounds': (0.25, 4.0),
           'learn_wd': True, 'wd_bounds': (wd / 4, wd * 4), 'wd_init': wd})
