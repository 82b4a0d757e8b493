"""Means over seeds with Student-t intervals, and paired differences between variants.

Seeds are few (3-5), so the interval uses Student's t with n-1 degrees of freedom, not the
normal quantile. Two variants run on the same seeds share the data order and the draws that
the seed fixes (data split and order, initialisation, augmentation draws), so their
difference is taken per seed (a paired interval): the spread that both share cancels,
which two separate intervals would count twice.
"""

import math

from scipy import stats as scipy_stats  # a dependency of JAX itself

LEVEL = 0.95


def t_quantile(p: float, dof: int) -> float:
  """The p-quantile of Student's t with `dof` degrees of freedom."""
  return float(scipy_stats.t.ppf(p, dof))


def mean_interval(values, level: float = LEVEL):
  """(mean, half-width of the two-sided `level` t-interval, n); the half-width is None
  for fewer than two values (one seed gives no spread to estimate)."""
  xs = [float(v) for v in values]
  n = len(xs)
  if not n:
    return None, None, 0
  mean = sum(xs) / n
  if n < 2:
    return mean, None, n
  sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
  return mean, t_quantile(0.5 + level / 2, n - 1) * sd / math.sqrt(n), n


def paired_difference(values: dict, reference: dict, level: float = LEVEL):
  """mean_interval of values[s] - reference[s] over the seeds s both have, and those
  differences ({seed: difference})."""
  diffs = {s: values[s] - reference[s] for s in values if s in reference}
  return (*mean_interval(diffs.values(), level), diffs)


def excludes_zero(mean, half) -> bool:
  """Whether the interval mean ± half lies entirely on one side of 0."""
  return mean is not None and half is not None and abs(mean) > half
