"""ISTA-NAS's LASSO fallback solver (sparse_recovery._fista) against scikit-learn, the
cases where `lasso` falls back to it, and ISTA's 'masked' execution against the static
support's network."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso

from dha_jax.core import parallel
from dha_jax.nas import ista, sparse_recovery

from test_ista import _config  # pylint: disable=g-bad-import-order


def _objective(A, b, x, lam):
  return 0.5 * np.sum((A @ x - b) ** 2) + lam * np.sum(np.abs(x))


def _sklearn_lasso(A, b, lam):
  """scikit-learn's coordinate descent, an independent solver. Its objective is
  1/(2 m) ||A x - b||^2 + alpha ||x||_1 (m = rows), so alpha = lam / m; no intercept."""
  with warnings.catch_warnings():  # its own stopping rule; the checks below are ours
    warnings.simplefilter('ignore', ConvergenceWarning)
    return Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14,
                 max_iter=10 ** 6).fit(A, b).coef_


class _Spy:
  """Counts lasso's calls of FISTA and records the homotopy's `ok` flags (`homotopy`: a
  stand-in for the real path solver)."""

  def __init__(self, monkeypatch, homotopy=None):
    self.fista_calls, self.homotopy_ok = 0, []
    # pylint: disable=protected-access
    fista, real_homotopy = sparse_recovery._fista, sparse_recovery._homotopy
    homotopy = homotopy or real_homotopy

    def spy_fista(*args):
      self.fista_calls += 1
      return fista(*args)

    def spy_homotopy(*args, **kwargs):
      x, ok = homotopy(*args, **kwargs)
      self.homotopy_ok.append(ok)
      return x, ok

    monkeypatch.setattr(sparse_recovery, '_fista', spy_fista)
    monkeypatch.setattr(sparse_recovery, '_homotopy', spy_homotopy)


# over-determined (unique minimiser), square, and under-determined (the ISTA shapes' kind)
SHAPES = [(20, 8), (12, 12), (7, 21), (5, 30)]


@pytest.mark.parametrize('lam', [1e-1, 1e-2])
def test_fista_matches_sklearn(lam):
  """_fista from x = 0 to lasso's default relative duality gap (1e-10) on random problems
  of every shape: x within 1e-8 of sklearn's and the objective within 1e-9 (relative) of
  its (measured <= 5e-12 and 2e-16); its own certificate (duality_gap) below 1e-10."""
  rng = np.random.default_rng(7)
  for m, n in SHAPES:
    A, b = rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(m)
    x = sparse_recovery._fista(  # pylint: disable=protected-access
        A, b, lam, np.zeros(n), 20000, 1e-10)
    ref = _sklearn_lasso(A, b, lam)
    assert np.count_nonzero(ref) >= 2  # a nontrivial support
    np.testing.assert_allclose(x, ref, atol=1e-8, err_msg=str((m, n)))
    f, f_ref = _objective(A, b, x, lam), _objective(A, b, ref, lam)
    assert abs(f - f_ref) <= 1e-9 * f_ref, (m, n, f, f_ref)
    gap, primal = sparse_recovery.duality_gap(A, b, x, lam)
    assert gap <= 1e-10 * primal, (m, n, gap, primal)


def test_lasso_falls_back_to_fista_on_a_duplicated_column(monkeypatch):
  """A column repeated (A 5 x 5, its last column a copy of the first): the homotopy path
  can take both copies into its active set, whose Gram matrix is then singular; lasso
  hands the problem to FISTA (measured: 5 of these 40 problems). Only x_0 + x_4 is
  determined then: it and x_1..x_3 equal sklearn's solution of the problem without the
  copy (1e-8; measured 1e-10), the copies never carry opposite signs, and the objective
  is that problem's optimum (1e-9 relative)."""
  spy = _Spy(monkeypatch)
  rng = np.random.default_rng(0)
  lam = 1e-2
  fell_back = 0
  for _ in range(40):
    A, b = rng.standard_normal((5, 4)), rng.standard_normal(5)
    calls = spy.fista_calls
    x = sparse_recovery.lasso(np.concatenate([A, A[:, :1]], 1), b, lam)
    fell_back += spy.fista_calls > calls
    ref = _sklearn_lasso(A, b, lam)
    merged = np.concatenate([[x[0] + x[4]], x[1:4]])
    np.testing.assert_allclose(merged, ref, atol=1e-8)
    assert x[0] * x[4] >= 0
    f, f_ref = _objective(A, b, merged, lam), _objective(A, b, ref, lam)
    assert abs(f - f_ref) <= 1e-9 * f_ref
  assert fell_back >= 1, 'no duplicated-column problem made the homotopy fail'
  assert spy.homotopy_ok.count(False) == fell_back  # each fallback: a failed path


@pytest.mark.parametrize('failure', ['path_failed', 'gap_too_large'])
def test_lasso_fallback_gives_the_reference_answer(monkeypatch, failure):
  """lasso's two fallback triggers, forced on random problems of every shape: the
  homotopy reporting failure (ok False, with a wrong x: FISTA starts there), or returning
  a wrong x it calls good (only the duality-gap certificate catches it). Either way the
  answer is sklearn's (x within 1e-8, the objective within 1e-9 relative) and FISTA ran
  once per problem."""
  def broken(A, b, lam, max_steps):
    del b, lam, max_steps
    return np.full(A.shape[1], 0.3), failure == 'gap_too_large'

  spy = _Spy(monkeypatch, broken)
  rng = np.random.default_rng(3)
  lam = 1e-2
  for m, n in SHAPES:
    A, b = rng.standard_normal((m, n)) / np.sqrt(m), rng.standard_normal(m)
    x, ref = sparse_recovery.lasso(A, b, lam), _sklearn_lasso(A, b, lam)
    np.testing.assert_allclose(x, ref, atol=1e-8, err_msg=str((m, n)))
    f, f_ref = _objective(A, b, x, lam), _objective(A, b, ref, lam)
    assert abs(f - f_ref) <= 1e-9 * f_ref, (m, n, f, f_ref)
  assert spy.fista_calls == len(SHAPES)
  assert spy.homotopy_ok == [failure == 'gap_too_large'] * len(SHAPES)


# ------------------------------------------------------------ 'masked' execution


def test_masked_execution_equals_the_static_support():
  """config.nas.execution='masked' runs the supernet with zero weight off the support.
  On a tiny ISTA net (test_ista's _config on the 3-op, 2-node 'darts_small' cells: the
  7-op supernet's gradient compiles for minutes) its training forward gives the logits,
  the auxiliary logits and the new BatchNorm statistics of the specialised static
  support's network (1e-5), and so do their derivatives along a random direction of theta
  and of the codes b (forward mode: the same projection of the gradient, for a fraction of
  a reverse pass's compile); along the weights off the support alone, exactly zero."""
  from configs import test  # pylint: disable=g-import-not-at-top
  c = _config(test.get_config(), execution='masked', cell_space='darts_small')
  s = ista.ISTA(c, 10, (8, 8, 1))
  assert not s.packed and s.static_key(None) is None  # the supernet, one program
  net, bs, arch, ns = s.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 8, 1)))
  static = s.specialize(ista.edges_of(jax.device_get(ns['support'])))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1))
  mesh = parallel.make_mesh(jax.devices()[:1])
  R = parallel.REPLICATED
  leaves, treedef = jax.tree_util.tree_flatten((net, arch))
  keys = jax.random.split(jax.random.PRNGKey(2), len(leaves))
  direction = [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)]
  used = jax.tree_util.tree_leaves((static.active_net(net), {'b': True}))
  assert sum(used) > 10 and len(used) - sum(used) > sum(used)  # most ops are off it
  off_support = [jnp.where(u, 0.0, d) for u, d in zip(used, direction)]

  def derivatives(strategy):
    def forward(net, arch):
      logits, new_bs, aux = strategy.apply(net, bs, arch, ns, x, None, True)
      return logits, aux['aux_logits'], new_bs
    return parallel.data_parallel(lambda p, t: jax.jvp(forward, p, t), mesh, (R, R), R)

  masked, sparse = derivatives(s), derivatives(static)
  tangent = jax.tree_util.tree_unflatten(treedef, direction)
  (m_logits, m_aux, m_bs), (dm_logits, dm_aux, _) = jax.device_get(masked((net, arch), tangent))
  (s_logits, s_aux, s_bs), (ds_logits, ds_aux, _) = jax.device_get(sparse((net, arch), tangent))
  for a, b in ((m_logits, s_logits), (m_aux, s_aux), (dm_logits, ds_logits), (dm_aux, ds_aux)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert np.abs(b).max() > 1e-2
  # the statistics the support's network updates (the rest it returns as they were)
  updated = 0
  for (path, m), s_new, old in zip(jax.tree_util.tree_leaves_with_path(m_bs),
                                   jax.tree_util.tree_leaves(s_bs), jax.tree_util.tree_leaves(bs)):
    if np.any(s_new != old):
      np.testing.assert_allclose(m, s_new, rtol=1e-5, atol=1e-6,
                                 err_msg=jax.tree_util.keystr(path))
      updated += 1
  assert updated > 10
  _, (d_logits, d_aux, _) = jax.device_get(
      masked((net, arch), jax.tree_util.tree_unflatten(treedef, off_support)))
  np.testing.assert_array_equal(d_logits, 0.0)
  np.testing.assert_array_equal(d_aux, 0.0)


def test_lasso_recovers_from_a_near_singular_path_with_near_duplicate_columns():
  """A column repeated with 1e-9 noise: the homotopy can return |x| ~ 1e6 and call it
  good (a near-singular active-set solve). The duality gap sends it to FISTA, which must
  then start from 0, not from there: every problem ends at sklearn's objective (1e-8
  relative) with a certified relative gap <= 1e-6, and without a warning."""
  rng = np.random.default_rng(1)
  far = 0
  for _ in range(40):
    A = rng.standard_normal((5, 4))
    A = np.concatenate([A, A[:, :1] + 1e-9 * rng.standard_normal((5, 1))], 1)
    b = rng.standard_normal(5)
    x_path, _ = sparse_recovery._homotopy(A, b, 0.01, 250)  # pylint: disable=protected-access
    far += np.abs(x_path).max() > 1e3
    with warnings.catch_warnings():
      warnings.simplefilter('error', RuntimeWarning)
      x = sparse_recovery.lasso(A, b, 0.01)
    gap, primal = sparse_recovery.duality_gap(A, b, x, 0.01)
    assert gap <= 1e-6 * primal, (gap, primal)
    ref = _sklearn_lasso(A, b, 0.01)
    assert _objective(A, b, x, 0.01) <= _objective(A, b, ref, 0.01) * (1 + 1e-8) + 1e-12
  assert far > 0  # the case arose: the test exercises the restart from 0
