"""Batched Poisson GLM solver: one design matrix, many units at once.

Every unit of a recording is fitted on the same design (one feature set, one fold, one lag),
so the expensive steps are shared: the linear predictors of all units come from one matrix
product, the gradients from another, and the Hessians of all units from one product with the
pairwise column products of the design (see `_weighted_gram`). Each unit then takes its own
Newton step, found by a Cholesky solve of its (p+1) x (p+1) Hessian. The objective, the gradient
and the line search are float64; the Hessian is formed in float32 (the products of column pairs
with the weights are most of the work, and float32 halves their memory and more than halves
their time): it only chooses the direction of the step, so, as for a sub-sampled Hessian below,
the solution is where the exact float64 gradient vanishes. A unit still iterating after 20
iterations (a badly conditioned design, where float32 rounding slows the steps, or a Hessian
that a subset of bins does not represent, below) gets exact Hessians from then on: float64, on
every bin.

Objective (per unit, the same as statsmodels' ``GLM(family=Poisson()).fit_regularized``)::

    f(b0, b) = -(1/n) sum_t [ y_t * eta_t - exp(eta_t) - log(y_t!) ]
               + alpha * ( (1 - l1_wt) / 2 * ||b||_2^2  +  l1_wt * ||b||_1 ),
    eta_t = b0 + x_t . b

with n the number of bins (rows of the design), y_t the spike count in bin t, and the intercept
b0 not penalised. ``alpha=0`` is the unpenalised maximum-likelihood fit (statsmodels
``GLM(...).fit()``); with ``alpha > 0`` it is statsmodels' ``fit_regularized(alpha=a,
L1_wt=l1_wt)`` with ``a = [0, alpha, ..., alpha]`` (zero for the constant column). In
scikit-learn's terms (``PoissonRegressor``, ``ElasticNet``) ``alpha`` is the same and
``l1_wt`` is ``l1_ratio``.

Algorithm: Newton's method with a backtracking (Armijo) line search. With ``l1_wt > 0`` the
step is a proximal Newton step (the L1-penalised quadratic model is minimised by coordinate
descent, all units at once), which is slower but converges to the same optimum as coordinate
descent on the full problem. The gradient is always exact. The Hessian may be estimated on a
fixed random subset of ``hessian_rows`` bins (sub-sampled Newton: Roosta-Khorasani & Mahoney
2016, Erdogdu & Montanari 2015): the iteration still converges to the exact optimum, because
the fixed point is where the exact gradient vanishes, only a little more slowly (linearly
instead of quadratically), and each iteration costs far less. Heavy-tailed features are the
exception: a subset that misses the few bins that dominate the Hessian makes the steps too long
in their direction, and the iteration crawls; after 20 iterations the Hessian is formed on
every bin (quadratic convergence again, for the few units still iterating).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PoissonGLMFit", "fit_poisson_glm"]

# Armijo constant of the line search: accept a step that achieves this fraction of the
# decrease predicted by the quadratic model.
_ARMIJO = 1e-4
_MAX_HALVINGS = 40
# Memory for the products of column pairs of the design used to form Hessians (bytes): kept
# for the whole fit up to _PAIRS_CACHE_BYTES, otherwise formed in blocks every iteration.
_PAIRS_CACHE_BYTES = 256 * 2**20
# The (units x bins) float64 arrays of an iteration (expected counts and those of the units still
# iterating, the step's change of the linear predictor and of the counts, the update: five at
# most) are kept below this by fitting units in groups.
_UNIT_ARRAYS_BYTES = 256 * 2**20
# Newton iterations with float32 Hessians, on the ``hessian_rows`` subset if one is given (a fit
# usually converges in under ten); after them, exact Hessians: float64, on every bin.
_FLOAT32_HESSIAN_ITERATIONS = 20
_GRAM_BLOCK_BYTES = 32 * 2**20


@dataclass
class PoissonGLMFit:
    """Fitted Poisson GLMs of several units on one design.

    Attributes
    ----------
    intercept : ndarray, shape (n_units,)
        b0 of each unit (log of the expected count per bin when all features are 0).
    coef : ndarray, shape (n_features, n_units)
        Coefficients b of each unit, on the columns of the design.
    converged : ndarray of bool, shape (n_units,)
        Whether the convergence criterion was met within ``max_iter`` iterations.
    n_iter : ndarray of int, shape (n_units,)
        Newton iterations taken.
    objective : ndarray, shape (n_units,)
        Final value of the objective f (see the module docstring), without the constant
        ``mean(log(y!))`` term.
    """

    intercept: np.ndarray
    coef: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    objective: np.ndarray

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected spike counts per bin, shape (n_bins, n_units), for a design ``X`` (n_bins, n_features)."""
        return np.exp(self.linear_predictor(X))

    def linear_predictor(self, X: np.ndarray) -> np.ndarray:
        """eta = b0 + X b, shape (n_bins, n_units)."""
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept


def fit_poisson_glm(
    X: np.ndarray,
    counts: np.ndarray,
    *,
    alpha: float = 0.0,
    l1_wt: float = 0.0,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    max_iter: int = 100,
    tol: float = 1e-14,
    hessian_rows: int | None = None,
    random_state: int = 0,
) -> PoissonGLMFit:
    """Fit one Poisson GLM (log link, unpenalised intercept) per unit, all on the same design.

    Parameters
    ----------
    X : array, shape (n_bins, n_features)
        Design without the constant column (an intercept is always fitted).
    counts : array, shape (n_bins, n_units) or (n_bins,)
        Spike counts per bin; every unit needs at least one spike.
    alpha : float, default 0
        Penalty strength, on the per-bin scale of statsmodels (see the module docstring).
    l1_wt : float in [0, 1], default 0
        Fraction of the penalty that is L1 (0: ridge, 1: lasso).
    start : (intercept (n_units,), coef (n_features, n_units)), optional
        Warm start. A unit whose warm start is worse than the mean-rate model starts from
        the mean-rate model instead.
    max_iter : int, default 100
        Most Newton iterations per unit.
    tol : float, default 1e-14
        A unit has converged when the decrease of the objective predicted by its next Newton
        step is at most ``tol * mean(y)``, i.e. when at most ``tol`` nats per spike of
        training log-likelihood remain to be gained. The default is far below what moves the
        cross-validated log-likelihood at 1e-6 bits/spike.
    hessian_rows : int, optional
        Estimate the Hessian on this many randomly chosen bins (``None``: all bins). The
        gradient, and therefore the solution, is exact either way.
    random_state : int, default 0
        Seed of the Hessian subset.

    Returns
    -------
    PoissonGLMFit
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(counts, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X must be (n_bins, n_features) and counts (n_bins, n_units) with the same n_bins; got {X.shape} and {Y.shape}"
        )
    if not 0.0 <= l1_wt <= 1.0 or alpha < 0:
        raise ValueError(f"alpha must be >= 0 and l1_wt in [0, 1]; got alpha={alpha}, l1_wt={l1_wt}")
    n, p = X.shape
    n_units = Y.shape[1]
    group = max(1, _UNIT_ARRAYS_BYTES // (5 * 8 * n))
    if n_units > group:
        # Units apart from each other in groups (their fits are independent), so that the
        # (units x bins) arrays of a long session stay within _UNIT_ARRAYS_BYTES.
        fits = [
            fit_poisson_glm(
                X,
                Y[:, u : u + group],
                alpha=alpha,
                l1_wt=l1_wt,
                start=None
                if start is None
                else (np.asarray(start[0])[u : u + group], np.asarray(start[1])[:, u : u + group]),
                max_iter=max_iter,
                tol=tol,
                hessian_rows=hessian_rows,
                random_state=random_state,
            )
            for u in range(0, n_units, group)
        ]
        return PoissonGLMFit(
            intercept=np.concatenate([fit.intercept for fit in fits]),
            coef=np.concatenate([fit.coef for fit in fits], axis=1),
            converged=np.concatenate([fit.converged for fit in fits]),
            n_iter=np.concatenate([fit.n_iter for fit in fits]),
            objective=np.concatenate([fit.objective for fit in fits]),
        )
    q = p + 1
    A = np.empty((n, q))
    A[:, 0] = 1.0
    A[:, 1:] = X
    # Arrays over (unit, bin) are kept unit-major so that selecting the units still being
    # iterated copies contiguous rows.
    # Sufficient statistics: c[u] = mean over bins of y_u * a, so sum_t y_t eta_t = n c[u] . beta_u.
    c = (Y.T @ A) / n
    y_mean = c[:, 0].copy()
    if np.any(y_mean <= 0):
        bad = np.flatnonzero(y_mean <= 0)
        raise ValueError(f"counts: unit columns {bad.tolist()} have no spikes")
    l2 = alpha * (1.0 - l1_wt)
    l1 = alpha * l1_wt
    penalised = np.ones(q)
    penalised[0] = 0.0  # the intercept is not penalised

    def penalty(B):
        return 0.5 * l2 * np.sum(penalised * B**2, axis=1) + l1 * np.sum(penalised * np.abs(B), axis=1)

    # Start from the mean-rate model: f = mean(y) - mean(y) * log(mean(y)).
    B = np.zeros((n_units, q))  # [intercept, coef] per unit
    B[:, 0] = np.log(y_mean)
    mu = np.repeat(y_mean[:, None], n, axis=1)  # expected counts, (n_units, n_bins)
    f = y_mean - y_mean * B[:, 0]
    if start is not None:
        B_start = np.hstack([np.asarray(start[0], dtype=np.float64)[:, None], np.asarray(start[1], dtype=np.float64).T])
        if B_start.shape != B.shape:
            raise ValueError(f"start must give {n_units} intercepts and a ({p}, {n_units}) coef array")
        with np.errstate(over="ignore", invalid="ignore"):
            mu_start = B_start @ A.T
            np.exp(mu_start, out=mu_start)  # in place: one (units x bins) array, not two
            f_start = mu_start.mean(axis=1) - np.sum(c * B_start, axis=1) + penalty(B_start)
        better = np.isfinite(f_start) & (f_start < f)
        B[better] = B_start[better]
        for u in np.flatnonzero(better):  # row by row: no copy of all the better rows at once
            mu[u] = mu_start[u]
        f[better] = f_start[better]
        del mu_start

    if hessian_rows is not None and hessian_rows < n:
        rng = np.random.default_rng(random_state)
        hess_idx = np.sort(rng.choice(n, size=hessian_rows, replace=False))
        A_hess_T = np.ascontiguousarray(A[hess_idx].T, dtype=np.float32)
    else:
        hess_idx = None
        A_hess_T = np.ascontiguousarray(A.T, dtype=np.float32)
    # The design does not change between iterations: keep its column-pair products when they fit.
    n_pairs = q * (q + 1) // 2
    pairs = _column_pairs(A_hess_T) if 4 * n_pairs * A_hess_T.shape[1] <= _PAIRS_CACHE_BYTES else None

    converged = np.zeros(n_units, dtype=bool)
    n_iter = np.zeros(n_units, dtype=int)
    active = np.arange(n_units)
    for iteration in range(max_iter):
        if active.size == 0:
            break
        if iteration == _FLOAT32_HESSIAN_ITERATIONS:
            # Units still iterating: a badly conditioned Hessian, whose float32 rounding slows
            # the steps down, or one the bins of the subset do not represent (heavy-tailed
            # features: the few bins that dominate it are missed, and the steps shrink to a
            # crawl). From here on it is exact: float64, on every bin (column pairs in blocks).
            A_hess_T = np.ascontiguousarray(A.T)
            hess_idx = None
            pairs = None
        everyone = active.size == n_units
        B_a = B[active]
        mu_a = mu if everyone else mu[active]
        grad = mu_a @ A / n - c[active] + l2 * penalised * B_a
        H = _weighted_gram(A_hess_T, mu_a if hess_idx is None else mu_a[:, hess_idx], pairs)
        H[:, np.arange(1, q), np.arange(1, q)] += l2
        if l1 == 0:
            D = _newton_direction(H, grad)
            decrease = -np.sum(grad * D, axis=1)  # Newton decrement squared
            predicted = 0.5 * decrease
        else:
            D = _l1_newton_direction(H, grad, B_a, l1, penalised)
            decrease = -(np.sum(grad * D, axis=1) + l1 * np.sum(penalised * (np.abs(B_a + D) - np.abs(B_a)), axis=1))
            predicted = decrease
        small = predicted <= tol * y_mean[active]
        converged[active[small]] = True
        done = small | ~np.isfinite(predicted)  # a non-finite step (singular H): stop, not converged
        if np.any(done):
            keep = ~done
            active, B_a, D, decrease = active[keep], B_a[keep], D[keep], decrease[keep]
            mu_a = mu[active]
            everyone = False
        if active.size == 0:
            break
        n_iter[active] += 1
        step = np.ones(active.size)
        pen_old = penalty(B_a)
        AD = D @ A.T  # change of eta for a full step, (n_active, n_bins)
        with np.errstate(over="ignore", invalid="ignore"):
            # expm1 gives the change of mu accurately even for tiny steps, so the objective
            # change is not lost in rounding (f is ~mean(y); its change can be 1e-15 of it).
            dmu = np.expm1(AD)
            dmu *= mu_a
            df = dmu.mean(axis=1) - np.sum(c[active] * D, axis=1) + penalty(B_a + D) - pen_old
        ok = df <= -_ARMIJO * step * decrease
        for _ in range(_MAX_HALVINGS):
            bad = np.flatnonzero(~ok)
            if bad.size == 0:
                break
            step[bad] *= 0.5
            s = step[bad, None]
            with np.errstate(over="ignore", invalid="ignore"):
                dmu[bad] = mu_a[bad] * np.expm1(s * AD[bad])
                df[bad] = (
                    dmu[bad].mean(axis=1)
                    - np.sum(c[active[bad]] * s * D[bad], axis=1)
                    + penalty(B_a[bad] + s * D[bad])
                    - pen_old[bad]
                )
            ok[bad] = df[bad] <= -_ARMIJO * step[bad] * decrease[bad]
        del AD
        # A unit whose step cannot decrease the objective has reached the limit of floating
        # point: keep its parameters and stop iterating it (converged stays False).
        if np.all(ok):
            B[active] = B_a + step[:, None] * D
            if everyone:
                mu += dmu  # in place: no copy of the (units x bins) array
            else:
                mu[active] = mu_a + dmu
            f[active] += df
        else:
            moved = active[ok]
            B[moved] = B_a[ok] + step[ok, None] * D[ok]
            mu[moved] = mu_a[ok] + dmu[ok]
            f[moved] += df[ok]
            active = moved
    return PoissonGLMFit(
        intercept=B[:, 0].copy(), coef=B[:, 1:].T.copy(), converged=converged, n_iter=n_iter, objective=f
    )


def _column_pairs(A_T: np.ndarray) -> np.ndarray:
    """Products of all pairs of columns j <= k of a design, from its transpose ``A_T`` (q, m).

    Returns shape (q(q+1)/2, m), rows in ``np.triu_indices(q)`` order. Built from the
    transpose so that every product runs along long contiguous rows.
    """
    q, m = A_T.shape
    pairs = np.empty((q * (q + 1) // 2, m), dtype=A_T.dtype)
    offset = 0
    for j in range(q):
        np.multiply(A_T[j:], A_T[j], out=pairs[offset : offset + q - j])
        offset += q - j
    return pairs


def _weighted_gram(A_T: np.ndarray, W: np.ndarray, pairs: np.ndarray | None = None) -> np.ndarray:
    """Per-unit Hessians (1/m) A^T diag(W[u]) A, shape (n_units, q, q), for a design given by its
    transpose ``A_T`` (q, m) and weights W (n_units, m).

    All units share A, so the q(q+1)/2 products of column pairs (``pairs``, from
    `_column_pairs`, or formed here block by block) are multiplied by the weights of all units
    in one matrix product, which also uses the symmetry to halve the work of n_units separate
    weighted Gram matrices.
    """
    q, m = A_T.shape
    iu, ju = np.triu_indices(q)
    W = W.astype(A_T.dtype)  # float32 for a float32 design (fit_poisson_glm's): one float32 product
    if pairs is not None:
        packed = (W @ pairs.T).astype(np.float64)
    else:
        packed = np.zeros((W.shape[0], iu.size))
        block = max(1, _GRAM_BLOCK_BYTES // (A_T.itemsize * iu.size))
        for start in range(0, m, block):
            packed += W[:, start : start + block] @ _column_pairs(A_T[:, start : start + block]).T
    packed /= m
    H = np.empty((W.shape[0], q, q))
    H[:, iu, ju] = packed
    H[:, ju, iu] = packed
    return H


def _newton_direction(H: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Solve H[u] d[u] = -grad[u] for every unit; H (n_units, q, q), grad (n_units, q).

    Batched Cholesky factors, then the two triangular systems (through numpy's batched
    ``solve``: scipy's triangular solves are batched only from scipy 1.15 on, and q is small
    enough that this costs nothing next to forming H). A unit whose H is not numerically
    positive definite falls back to least squares.
    """
    try:
        L = np.linalg.cholesky(H)
    except np.linalg.LinAlgError:
        return np.stack([np.linalg.lstsq(H[u], -grad[u], rcond=None)[0] for u in range(H.shape[0])])
    z = np.linalg.solve(L, -grad[:, :, None])
    return np.linalg.solve(np.swapaxes(L, 1, 2), z)[:, :, 0]


def _l1_newton_direction(
    H: np.ndarray,
    grad: np.ndarray,
    B: np.ndarray,
    l1: float,
    penalised: np.ndarray,
    max_sweeps: int = 10_000,
    tol: float = 1e-15,
) -> np.ndarray:
    """Proximal Newton direction. For every unit, minimise over z
    g.(z - b) + 1/2 (z - b)^T H (z - b) + l1 * sum_j penalised_j |z_j|
    by cyclic coordinate descent, vectorised over units; H (n_units, q, q), grad and B
    (n_units, q). Returns z - b, shape (n_units, q)."""
    q = H.shape[1]
    Z = B.copy()
    V = np.zeros_like(B)  # H (z - b), kept up to date
    diag = np.einsum("ujj->uj", H)
    scale = np.maximum(np.abs(B).max(axis=1), 1.0)
    for _ in range(max_sweeps):
        largest = 0.0
        for j in range(q):
            r = grad[:, j] + V[:, j]
            if penalised[j]:
                u = diag[:, j] * Z[:, j] - r
                new = np.sign(u) * np.maximum(np.abs(u) - l1, 0.0) / diag[:, j]
            else:
                new = Z[:, j] - r / diag[:, j]
            delta = new - Z[:, j]
            if np.any(delta):
                Z[:, j] = new
                V += H[:, :, j] * delta[:, None]
                largest = max(largest, float(np.max(np.abs(delta) / scale)))
        if largest <= tol:
            break
    return Z - B
