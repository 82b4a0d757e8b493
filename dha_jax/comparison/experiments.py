"""The papers' comparisons as config variants: which components a run switches on.

A dataset config takes the variant as its config argument,

  python -m dha_jax.main --config=configs/fashion_mnist.py:dha --workdir=W
  python -m dha_jax.main --config=configs/cifar10.py:nas/darts --workdir=W

and calls `apply(config, arg, search=...)`. The variants (docs/method.md section 5):

  none         the fixed network, hand-set eta, no augmentation at all (not even the
               dataset's standard crop+flip or Cutout): where augmentation cannot pay, no
               learned policy can
  fixed        the fixed network, hand-set eta, standard augmentation (the baseline)
  lr_grid      what a user does instead of HPO at the same cost: dha_jax/compare.py runs
               `fixed` at config.lr x {1/2, 1, 2}, each with a third of the budget, and
               reports on test the one best on validation (as a config: `fixed`)
  randaugment  the same with RandAugment
  trivialaugment  the same with TrivialAugment
  da           learned tau alone on the fixed network (hand-set eta)
  da_val       the same with tau on the held-out objective (config.policy.objective='val',
               augment/learned.py) and the dataset config's `policy_val` settings
  hpo          learned eta alone on the fixed network (standard augmentation)
  nas          architecture search alone (DSNAS / ISTA-NAS / DARTS)
  random       the random control of `nas` (docs/method.md 3c): a genotype drawn uniformly with
               config.seed from the same space, channels, cells and budget, trained like
               the searched network's derived one
  da_hpo       learned tau and eta on the fixed network
  dha          everything at once: tau, alpha, eta and theta in one run
  sequential   NAS first, then DA+HPO training the derived network from scratch: two
               runs chained by dha_jax/compare.py; this config is the second half, its
               genotype given by --config.nas.genotype. DiffAutoML's Table 2 rows
               "DSNAS + DA&HPO" (sequential/dsnas) and "DARTS + DA&HPO"
               (sequential/darts); sequential/ista is the same for ISTA-NAS. The second
               half is the strategy's fixed_counterpart (dsnas with a genotype,
               darts_fixed) with the search's config.nas fields it shares, then
               search[strategy]['retrain'] where the paper retrains another network than
               it searched (DARTS: more cells and channels)

'/<strategy>' picks the architecture strategy of the search variants ('dsnas', 'ista',
'darts'); without it the dataset config's `search` default is used.
"""

import ml_collections

VARIANTS = ('none', 'fixed', 'lr_grid', 'randaugment', 'trivialaugment', 'da', 'da_val', 'hpo',
            'da_hpo', 'nas', 'random', 'sequential', 'dha')
SEARCHED = ('nas', 'random', 'dha', 'sequential')
LEARNED_POLICY = ('da', 'da_val', 'da_hpo', 'dha', 'sequential')
LEARNED_HPARAMS = ('hpo', 'da_hpo', 'dha', 'sequential')


def searchable():
  """Strategies a search variant can name: those with a fixed counterpart (the strategy
  that trains one genotype of their space, for 'sequential' and 'random')."""
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  return sorted(k for k in nas.STRATEGIES if _counterpart(nas.STRATEGIES.get(k)))


def _counterpart(cls):
  from dha_jax.nas import base  # pylint: disable=g-import-not-at-top
  return cls.fixed_counterpart if issubclass(cls, base.Search) else None


def fixed_counterpart(strategy: str) -> str:
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  return _counterpart(nas.STRATEGIES.get(strategy))


def fixed_class(strategy: str):
  """The class (a base.FixedGenotype) that trains one genotype of `strategy`'s space."""
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  from dha_jax.nas import base  # pylint: disable=g-import-not-at-top
  name = fixed_counterpart(strategy)
  cls = nas.STRATEGIES.get(name) if name else None
  if cls is None or not issubclass(cls, base.FixedGenotype):
    raise ValueError(f'strategy {strategy!r} names no fixed counterpart that trains a given '
                     f'genotype ({name!r}: a registered base.FixedGenotype is needed)')
  return cls


def genotype_flag(strategy: str, genotype) -> str:
  """The flag that makes `strategy`'s fixed counterpart train `genotype` (a search's
  result.json entry) from scratch: sequential's second half."""
  return fixed_class(strategy).genotype_flag(genotype)


def parse(arg: str, default_strategy: str):
  variant, _, strategy = (arg or 'fixed').partition('/')
  if variant not in VARIANTS:
    raise ValueError(f'config argument {arg!r}: the variant must be one of {VARIANTS} '
                     f"(optionally /<strategy>, one of {searchable()})")
  return variant, strategy or default_strategy


RETRAIN = 'retrain'  # search[strategy][RETRAIN]: config.nas fields of sequential's 2nd half


def nas_config(strategy: str, overrides: dict) -> ml_collections.ConfigDict:
  """config.nas for `strategy` with the dataset's overrides (e.g. space sizes); fields
  the strategy does not have are skipped (search-only fields for a fixed genotype)."""
  from dha_jax import nas  # pylint: disable=g-import-not-at-top
  n = nas.default_config(strategy)
  for k, v in overrides.items():
    if k in n:
      n[k] = v
  return n


def retrain_config(strategy: str, overrides: dict) -> ml_collections.ConfigDict:
  """config.nas of sequential's second half: the fixed counterpart with the search's
  fields, then overrides[RETRAIN] (e.g. DARTS's evaluation network: 20 cells at C = 36
  where it searched 8 at C = 16); a field the fixed strategy lacks is an error."""
  from dha_jax.core import config_util  # pylint: disable=g-import-not-at-top
  fixed = fixed_counterpart(strategy)
  return config_util.merge(nas_config(fixed, overrides), overrides.get(RETRAIN, {}),
                           f'search[{strategy!r}][{RETRAIN!r}]')


def apply(c, arg: str, search: dict, default_strategy: str = 'ista', hpo=None,
          policy=None, policy_val=None):
  """Switches the components of config `c` for the variant named by `arg`.

  search: {strategy: {field: value}} overrides of config.nas per strategy, optionally
    with RETRAIN: {field: value} for sequential's second half only.
  hpo / policy: config.hpo / config.policy fields of the learned variants.
  policy_val: config.policy fields of da_val, over `policy` (e.g. tau's optimizer: the
    held-out scores are lr <grad l_k, grad L_val>, far smaller than training losses).
  """
  variant, strategy = parse(arg, default_strategy)
  if variant in SEARCHED and strategy not in search:
    raise ValueError(f'config argument {arg!r}: this dataset config has search settings '
                     f'for {sorted(search)}')
  if variant in ('nas', 'dha'):
    c.nas = nas_config(strategy, search[strategy])
  elif variant in ('sequential', 'random'):  # a fixed genotype of the searched space
    fixed = fixed_class(strategy)
    if variant == 'random':
      c.nas = nas_config(fixed_counterpart(strategy), search[strategy])
      fixed.configure_random(c.nas)
    else:  # the derived genotype, from scratch (compare.py sets it)
      c.nas = retrain_config(strategy, search[strategy])
      fixed.configure_derived(c.nas)
  if variant == 'none':
    c.preprocess.kind, c.preprocess.flip, c.preprocess.cutout = 'none', False, 0
    c.policy.name = 'none'
  if variant in ('randaugment', 'trivialaugment'):
    c.policy.name = variant
  if variant in LEARNED_POLICY:
    c.policy.name = 'learned'
    for k, v in (policy or {}).items():
      c.policy[k] = v
    if variant == 'da_val':
      c.policy.objective = 'val'
      for k, v in (policy_val or {}).items():
        c.policy[k] = v
  if variant in LEARNED_HPARAMS:
    from dha_jax.hpo import hypergrad  # pylint: disable=g-import-not-at-top
    c.hpo = hypergrad.default_config()
    c.hpo.enabled = True
    for k, v in (hpo or {}).items():
      c.hpo[k] = v
  return c
