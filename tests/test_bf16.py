"""bfloat16 compute (config.compute_dtype): the same step as float32 within bf16's
rounding, a float32 state, bf16 really in the compiled program, every network traced."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dha_jax import models
from dha_jax.core import parallel
from dha_jax.layers import conv, precision
from dha_jax.training import steps, train

import slow
from test_dha import dha_config

# bf16 keeps 8 significand bits (a rounding is within 2^-9 relative). The first step's
# loss, a float32 reduction over the logits of a bf16 network, measured (2026-12-03, on
# searches of 3 choice layers / 3 cells then; DSNAS's row has 1 now, ISTA's 2): 2.9e-5
# plain, 3.0e-4 DSNAS, 3.9e-5 ISTA, 2.0e-4 full DHA relative to float32; the bound
# is one bf16 ulp, 2^-8 = 3.9e-3 (13x the largest).
LOSS_RTOL = 2.0 ** -8


def _one_step(config, dtype):
  config.compute_dtype = dtype
  mesh = parallel.make_mesh(jax.devices()[:1])
  ds, comps, state, _, _ = train.setup(config, mesh)
  state = parallel.replicate(state, mesh)
  before = jax.device_get(state.params['net'])
  train_step, _ = steps.compile_steps(comps, mesh)
  batch = parallel.shard_batch(next(train.Batches(ds, comps, config)), mesh)
  text = train_step.lower(state, batch).as_text()
  new, metrics = train_step(state, batch)
  moved = max(float(np.abs(a - b).max()) for a, b in zip(
      jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(jax.device_get(
          new.params['net']))))
  return jax.device_get(new), jax.device_get(metrics), text, moved


def _conv_operand_types(text):
  """The element types of each stablehlo.convolution's two operands, from the lowered
  program's text ('(tensor<32x8x8x1xbf16>, tensor<3x3x1x8xbf16>) -> ...')."""
  out = []
  for line in text.splitlines():
    if 'stablehlo.convolution' in line:
      operands = line.rsplit(': (', 1)[1].split(') ->')[0]
      out.append(tuple(t.rsplit('x', 1)[1].rstrip('>') for t in operands.split(', ')))
  return out


def _configs():
  from configs import test  # pylint: disable=g-import-not-at-top
  plain = test.get_config()
  dsnas = dha_config('nas/dsnas')
  # one choice layer: a searched network in bf16 is the claim, not its depth (half the
  # compile of test_dha's two)
  dsnas.nas.stage_repeats, dsnas.nas.stage_channels = (1,), (16,)
  # ISTA in its default 'traced' execution on the small registered cell space: the cells'
  # bf16 convolutions are the claim, not the space's size
  ista = dha_config('nas/ista')
  ista.nas.cell_space = 'darts_small'
  assert ista.nas.execution == 'traced'
  return {'plain': plain, 'dsnas': dsnas, 'ista': ista, 'dha': dha_config('dha/dsnas')}


FULL_DHA = slow.opt_in('full DHA compiled twice: ~4 CPU-minutes',
                       "the 'dsnas' row (its network) and test_dha")


@pytest.mark.parametrize('name', ['plain', 'dsnas', 'ista',
                                  pytest.param('dha', marks=FULL_DHA)])
def test_bf16_step_matches_float32_and_keeps_a_float32_state(name):
  f32, m32, text32, moved32 = _one_step(_configs()[name], 'float32')
  bf16, m16, text16, moved16 = _one_step(_configs()[name], 'bfloat16')
  assert 'bf16' not in text32
  # every convolution of the bf16 step (forward and backward) takes bf16 operands
  convs16, convs32 = _conv_operand_types(text16), _conv_operand_types(text32)
  assert len(convs16) == len(convs32) > 0
  assert set(convs16) == {('bf16', 'bf16')} and set(convs32) == {('f32', 'f32')}
  assert moved16 > 0 and moved32 > 0  # theta moved in both dtypes
  np.testing.assert_allclose(m16['train/loss'], m32['train/loss'], rtol=LOSS_RTOL)
  for path, leaf in jax.tree_util.tree_leaves_with_path(bf16):
    if jnp.issubdtype(np.asarray(leaf).dtype, jnp.floating):
      assert np.asarray(leaf).dtype == np.float32, jax.tree_util.keystr(path)
    assert np.all(np.isfinite(leaf)), jax.tree_util.keystr(path)
  # the same tree, and the step moved theta in both
  assert jax.tree_util.tree_structure(bf16) == jax.tree_util.tree_structure(f32)
  for m in (m16, m32):
    assert all(np.all(np.isfinite(v)) for v in jax.tree_util.tree_leaves(m))


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_every_fixed_network_traces_in_bf16_with_float32_params_and_logits(name):
  from configs import default  # pylint: disable=g-import-not-at-top
  cfg = default.get_config().model
  cfg.name = name
  model = models.create(cfg, 10, bn_axis_name=None)
  x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
  with precision.use('bfloat16'), conv.use_impl('xla'):  # convs as one primitive
    variables = jax.eval_shape(lambda k, u: model.init(k, u, train=False),
                               jax.random.PRNGKey(0), x)
    jaxpr = jax.make_jaxpr(lambda v, u: model.apply(v, u, train=False))(variables, x)
    out = jax.eval_shape(lambda v, u: model.apply(v, u, train=False), variables, x)
  assert out.dtype == jnp.float32  # the classifier head (and so every loss) in float32
  assert {a.dtype for a in jax.tree_util.tree_leaves(variables)} == {jnp.dtype('float32')}
  convs = [l for l in str(jaxpr).splitlines() if 'conv_general_dilated[' in l]
  assert convs and all(l.split('=')[0].strip().endswith(']') and 'bf16[' in l.split('=')[0]
                       for l in convs), convs[:3]


def test_resolve_auto_and_bad_names():
  assert precision.resolve('auto') == (jnp.float32 if jax.default_backend() == 'cpu'
                                       else jnp.bfloat16)
  assert precision.resolve('bfloat16') == jnp.bfloat16
  with pytest.raises(ValueError, match='config.compute_dtype=.float16.*float32, bfloat16'):
    precision.resolve('float16')
  with precision.use('bfloat16'):
    assert precision.compute_dtype() == jnp.bfloat16
  assert precision.compute_dtype() == jnp.float32  # restored (conftest: float32)
  with pytest.raises(ValueError, match="compute_dtype='float64' needs .*JAX_ENABLE_X64=1"):
    precision.resolve('float64')  # the suite runs without 64-bit mode
  with jax.enable_x64(True):
    assert precision.resolve('float64') == jnp.float64


def test_float64_state_is_float64_in_every_float_leaf(test_config):
  """config.compute_dtype='float64' (a numerics check): the whole TrainState in float64,
  integer leaves (step, PRNG key, horizon) as they were."""
  from dha_jax.core import parallel  # pylint: disable=g-import-not-at-top
  from dha_jax.training import train  # pylint: disable=g-import-not-at-top
  test_config.compute_dtype = 'float64'
  with jax.enable_x64(True):
    _, _, state, _, _ = train.setup(test_config, parallel.make_mesh(jax.devices()[:1]),
                                    abstract=True)
  dtypes = {jnp.dtype(a.dtype) for a in jax.tree_util.tree_leaves(state)}
  assert jnp.dtype(jnp.float64) in dtypes and jnp.dtype(jnp.float32) not in dtypes, dtypes
  assert state.step.dtype == jnp.int32 and state.horizon.dtype == jnp.int32
