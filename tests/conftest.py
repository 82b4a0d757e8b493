"""Four fake CPU devices for the whole suite (must be set before JAX is imported), LLVM
at -O0 for its compiles, and one compilation cache shared by the suite's processes.

The suite is bound by XLA compiles, and many are the same program compiled again in
another process (xdist workers, the command-line runs of the resume, SIGKILL and compare
tests). The project's own cache (dha_jax/core/compile_cache.py: JAX's persistent cache for
every program, the loop's steps kept whole) in a directory made for this run, passed to
every process as $DHA_JAX_CACHE_DIR (config.compile_cache_dir's default), compiles each
once; it starts empty, as on CI, and is removed at the end.
"""

import os
import shutil
import sys
import tempfile

# LLVM at -O0 for the CPU backend: about half of a compile here is LLVM's, and -O0 cuts
# the suite's CPU time by about a quarter (1,132 -> 870 user-s on 2 cores); execution is
# slower at -O0, but the suite runs few steps. XLA's own passes (HLO, fusion) are
# unchanged, and every comparison runs both sides under the same flags; subprocesses
# inherit them through the environment.
# XLA:CPU's older loop emitters and one LLVM module per program (not split for parallel
# code generation, which two busy cores cannot use) compile faster again: test_dha.py
# with test_darts_space.py took 142 s against 165 s wall (187 against 223 user-s) on 2
# cores on 2026-12-08.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=4'
                           ' --xla_backend_optimization_level=0'
                           ' --xla_cpu_use_fusion_emitters=false'
                           ' --xla_cpu_parallel_codegen_split_count=1').strip()
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')  # tests are CPU-only by design
if 'DHA_TEST_XLA_CACHE' not in os.environ:  # the first process of the run (xdist's
  os.environ['DHA_TEST_XLA_CACHE'] = tempfile.mkdtemp(prefix='dha_xla_cache_')  # parent)
  _OWNS_CACHE = True
else:
  _OWNS_CACHE = False
# never the user's own cache (~/.cache/dha_jax/xla): a run's config reads this variable
os.environ['DHA_JAX_CACHE_DIR'] = os.environ['DHA_TEST_XLA_CACHE']
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

from dha_jax.core import compile_cache  # pylint: disable=g-import-not-at-top,wrong-import-position

jax.config.update('jax_platforms', 'cpu')
compile_cache.enable(os.environ['DHA_JAX_CACHE_DIR'])  # the tests that compile directly


@pytest.fixture
def test_config():
  from configs import test  # pylint: disable=g-import-not-at-top
  return test.get_config()


@pytest.fixture(autouse=True)
def _restore_conv_default(request):
  """train.setup sets the process-wide conv formulation from config.conv_impl (one run
  per process in real use); tests share a process, so each gets the default back, and
  the float32 compute dtype. Each test starts on XLA's own convolution, as the suite's
  runs do (configs/test.py): the CPU formulations are many more ops to compile (a DSNAS
  child's eager gradient: 559 compiles, 59 s), and equal to it (test_conv.py, which
  tests the process default itself and keeps it)."""
  from dha_jax.layers import conv, precision  # pylint: disable=g-import-not-at-top
  old = conv.get_default_impl()
  if request.module.__name__ != 'test_conv':
    conv.set_default_impl('xla')
  with precision.use('float32'):  # also the compute dtype train.setup sets
    yield
  conv.set_default_impl(old)


def pytest_unconfigure(config):
  del config
  if _OWNS_CACHE:
    shutil.rmtree(os.environ['DHA_TEST_XLA_CACHE'], ignore_errors=True)
