"""The LASSO recovery ISTA-NAS runs once per epoch on the host (docs/method.md 3b):
x = argmin 1/2 ||A x - b||^2 + lam ||x||_1, in float64 by the exact homotopy path, refined
by FISTA where the path degenerates, certified by the duality gap. The problems are tiny
(7 x 35 per node) and the support is decided by the solution, so it is solved to
optimality rather than by a fixed number of float32 iterations (tests/test_ista.py checks
it against scikit-learn).
"""

import warnings

import numpy as np


def duality_gap(A, b, x, lam):
  """P(x) - D(theta) >= P(x) - min P for P(x) = 1/2 ||A x - b||^2 + lam ||x||_1, with the
  dual point theta = the residual scaled into the dual feasible set ||A^T theta|| <= lam.
  float64; a certificate of how far x is from optimal without knowing the optimum."""
  A, b, x = (np.asarray(v, np.float64) for v in (A, b, x))
  r = b - A @ x
  corr = np.max(np.abs(A.T @ r)) if A.shape[1] else 0.0
  theta = r * min(1.0, lam / corr) if corr > 0 else r
  primal = 0.5 * r @ r + lam * np.sum(np.abs(x))
  return max(primal - (theta @ b - 0.5 * theta @ theta), 0.0), primal


def _homotopy(A, b, lam, max_steps):
  """The exact LASSO path (LARS with the lasso modification, Efron et al. 2004) from
  lam_max = ||A^T b||_inf down to lam: between breakpoints x is linear in lambda; a
  breakpoint adds a column whose correlation reaches lambda or drops one that crosses
  zero. Exact up to rounding, in ~2n linear solves of at most m x m. Returns (x, ok):
  ok False if the path left general position (a singular active set, too many steps)."""
  m, n = A.shape
  x = np.zeros(n)
  c = A.T @ b
  lam_k = float(np.max(np.abs(c))) if n else 0.0
  if lam >= lam_k:
    return x, True
  first = int(np.argmax(np.abs(c)))
  active, signs = [first], [float(np.sign(c[first]))]
  for _ in range(max_steps):
    S, s = np.asarray(active), np.asarray(signs)
    tiny = 1e-12 * lam_k  # a column that just left or entered is not an event again
    if len(S) > m:
      return x, False
    A_S = A[:, S]
    try:
      d = np.linalg.solve(A_S.T @ A_S, s)  # dx_S / d(-lambda)
    except np.linalg.LinAlgError:
      return x, False
    a = A.T @ (A_S @ d)                      # dc / d(-lambda)
    step, event = lam_k - lam, None
    free = np.ones(n, bool)
    free[S] = False
    with np.errstate(divide='ignore', invalid='ignore'):
      for sign in (1.0, -1.0):  # c_j - g a_j = sign (lam_k - g)
        g = (lam_k - sign * c) / (1.0 - sign * a)
        g = np.where(free & (1.0 - sign * a > 0) & (g > tiny), g, np.inf)
        j = int(np.argmin(g))
        if g[j] < step:
          step, event = g[j], ('in', j, sign)
      g = np.where(-x[S] / d > tiny, -x[S] / d, np.inf)
    k = int(np.argmin(g))
    if g[k] < step:
      step, event = g[k], ('out', k, 0.0)
    lam_k -= step
    if event is not None and event[0] == 'in':
      active.append(event[1])
      signs.append(event[2])
    elif event is not None:
      x[active.pop(event[1])] = 0.0
      signs.pop(event[1])
    if not active:
      return x, False
    # re-solve the active set's optimality conditions at lam_k (no drift between steps)
    S, s = np.asarray(active), np.asarray(signs)
    A_S = A[:, S]
    try:
      x[S] = np.linalg.solve(A_S.T @ A_S, A_S.T @ b - lam_k * s)
    except np.linalg.LinAlgError:
      return x, False
    if event is None:
      break
    c = A.T @ (b - A @ x)
  else:
    return x, False
  return x, True


def _fista(A, b, lam, x, num_iters, tol):
  """FISTA with adaptive restart (O'Donoghue & Candes 2015) from x, until the relative
  duality gap is <= tol: the fallback should the homotopy meet a degenerate path."""
  L = max(np.linalg.norm(A, 2) ** 2, np.finfo(np.float64).tiny)
  soft = lambda v: np.sign(v) * np.maximum(np.abs(v) - lam / L, 0.0)
  y, t = x.copy(), 1.0
  for k in range(num_iters):
    x_new = soft(y - (A.T @ (A @ y - b)) / L)
    if np.dot(y - x_new, x_new - x) > 0:  # momentum points uphill: restart
      t_new, y = 1.0, x_new
    else:
      t_new = (1.0 + np.sqrt(1.0 + 4.0 * t * t)) / 2.0
      y = x_new + ((t - 1.0) / t_new) * (x_new - x)
    x, t = x_new, t_new
    if k % 100 == 99:
      gap, primal = duality_gap(A, b, x, lam)
      if gap <= tol * primal:
        break
  return x


def lasso(A, b, lam, num_iters=20000, tol=1e-10):
  """x = argmin_x 1/2 ||A x - b||^2 + lam ||x||_1, in float64 on the host.
  A [..., m, n], b [..., m]: leading dimensions are independent problems. The exact
  homotopy path; if its result's relative duality gap exceeds tol (a degenerate path),
  FISTA with restart refines it for up to num_iters iterations. Measured on 200 random
  problems of the ISTA shapes (tests/test_ista.py): certified relative gap <= 3e-11,
  ~1 ms a problem."""
  A, b = np.asarray(A, np.float64), np.asarray(b, np.float64)
  flat_A = A.reshape((-1,) + A.shape[-2:])
  flat_b = b.reshape((-1, A.shape[-2]))
  out, unsolved = np.zeros(flat_A.shape[:1] + A.shape[-1:]), []
  for k, (a, v) in enumerate(zip(flat_A, flat_b)):
    # zero columns (ISTA's padding) never enter a solution: solve without them
    cols = np.flatnonzero(np.any(a != 0, axis=0))
    x, ok = _homotopy(a[:, cols], v, float(lam), max_steps=50 * max(len(cols), 1))
    gap, primal = duality_gap(a[:, cols], v, x, lam)
    if not ok or gap > tol * primal:
      # A near-singular active set can leave x far out (|x| ~ 1e6 with near-duplicate
      # columns), where FISTA would not come back within num_iters: start from 0 then.
      _, at_zero = duality_gap(a[:, cols], v, np.zeros_like(x), lam)
      start = x if ok and np.isfinite(primal) and primal <= at_zero else np.zeros_like(x)
      x = _fista(a[:, cols], v, float(lam), start, int(num_iters), tol)
      gap, primal = duality_gap(a[:, cols], v, x, lam)
      if gap > max(tol, 1e-6) * primal:
        unsolved.append(k)
    out[k, cols] = x
  if unsolved:
    warnings.warn(f'LASSO: {len(unsolved)} of {len(flat_A)} problems ended with a relative '
                  f'duality gap above max(tol, 1e-6) after {num_iters} FISTA iterations '
                  f'(problems {unsolved[:5]}); their codes are approximate', RuntimeWarning)
  return out.reshape(A.shape[:-2] + A.shape[-1:])
