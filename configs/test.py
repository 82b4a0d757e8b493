"""The tiny config the test suite uses: digits, a narrow CNN, a few dozen steps.

  python -m dha_jax.main --config=configs/test.py --workdir=/tmp/test_run

Expected: runs in seconds on CPU; accuracy is not the point (a smoke-sized run).
"""

from configs import digits


def get_config():
  c = digits.get_config()
  c.model.widths = (8, 16)
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_epochs = 2
  c.log_every_steps = 10
  c.checkpoint_every_steps = 20
  c.progress = False
  # The suite is compile-bound and XLA's own convolution compiles ~2x faster; the CPU
  # formulations are checked equal to it in tests/test_conv.py (forward and gradient).
  c.conv_impl = 'xla'
  return c
