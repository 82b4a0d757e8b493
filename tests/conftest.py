"""Four fake CPU devices for the whole suite (must be set before JAX is imported)."""

import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # tests are CPU-only by design
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_platforms', 'cpu')


@pytest.fixture
def test_config():
  from configs import test  # pylint: disable=g-import-not-at-top
  return test.get_config()


@pytest.fixture(autouse=True)
def _restore_conv_default():
  """train.setup sets the process-wide conv formulation from config.conv_impl (one run
  per process in real use); tests share a process, so each gets the default back."""
  from dha_jax.layers import conv  # pylint: disable=g-import-not-at-top
  old = conv.get_default_impl()
  yield
  conv.set_default_impl(old)
