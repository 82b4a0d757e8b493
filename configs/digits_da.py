"""The digits demo with the learned augmentation policy tau (DA component only).

  python -m dha_jax.main --config=configs/digits_da.py --workdir=/tmp/digits_da

Expected: ~97-99% test accuracy in about 2 minutes on 2 CPU cores; <workdir>/policy.png
shows the learned p(tau) over the 196 ordered op pairs, result.json its table.
"""

from configs import digits


def get_config():
  c = digits.get_config()
  c.policy.name = 'learned'
  c.policy.magnitude_search = c.policy.magnitude_tune = 0.3
  return c
