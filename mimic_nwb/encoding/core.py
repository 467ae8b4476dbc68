"""Cross-validated Poisson GLM encoding models: which feature set, at which lag, predicts each unit.

Pure core of ``mimic-nwb encode``: arrays in, an `EncodingResult` out; no files. The NWB
adapter reads spike counts and feature sets from a session, puts them on one grid of bins
(`mimic_nwb.encoding.binning`), calls `fit_encoding_models`, asks the result for its
`EncodingResult.significance` (Benjamini-Hochberg per brain region), and appends it.

For every feature set, lag and fold, and all units at once:

1. the features are lagged (`lag_features`: activity at t is paired with features at t - lag;
   negative lags = features later than the activity = premotor);
2. standardised (z-scored) and reduced by PCA to the components that keep ``pca_variance`` of
   the variance, both fitted on the training folds only (`FeatureTransform`);
3. a Poisson GLM with log link and unpenalised intercept is fitted per unit on the training
   folds (`mimic_nwb.encoding.glm.fit_poisson_glm`; objective and penalty there);
4. the held-out folds are predicted, and compared with a mean-rate model whose rate is the
   unit's mean count over the same training folds.

Cross-validation is blocked: the bins are cut into contiguous chunks of ``chunk_duration`` and
whole chunks are held out (`blocked_folds`), so the strong autocorrelation of behaviour at
20 ms does not leak between training and test data.

Metrics, per unit x feature set x lag, pooled over the held-out bins of all folds (every
usable bin is held out exactly once):

- ``cv_llr``: cross-validated log-likelihood ratio against the mean-rate model, in bits per
  spike: (LL_model - LL_mean_rate) / (n_spikes * ln 2).
- ``pseudo_r2``: deviance pseudo-R^2 = 1 - D_model / D_mean_rate, with the held-out Poisson
  deviances D = 2 sum [y log(y / mu) - (y - mu)]. It can be negative (worse than the mean rate).
- ``p_value``: one-sided Wilcoxon signed-rank test that the model beats the mean-rate model,
  over the held-out chunks: one paired difference per chunk (the chunk's summed
  log-likelihood gain), not one per fold (five folds can never reach significance).

All bins that are usable for *every* feature set at *every* lag are used, so that the
metrics of different feature sets and lags are computed on the same bins and comparable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.stats

from .binning import _BIN_TOL, lag_in_bins
from .glm import fit_poisson_glm

__all__ = [
    "DEFAULT_LAGS",
    "ConvergenceWarning",
    "EncodingConfig",
    "EncodingResult",
    "FeatureTransform",
    "benjamini_hochberg",
    "blocked_folds",
    "fit_encoding_models",
]

#: Default lags, seconds: -1.0 ... +0.3 in steps of 0.1 s (14 lags). 100 ms is five 20 ms bins,
#: fine enough to place the peak of a unit's lag tuning, which is broad (behavioural features
#: are smooth at this scale), and coarse enough to keep a full analysis practical.
DEFAULT_LAGS: tuple[float, ...] = tuple(round(-1.0 + 0.1 * i, 1) for i in range(14))


class ConvergenceWarning(UserWarning):
    """Some GLM fits stopped at ``max_iter`` before meeting the tolerance (see `EncodingResult.converged`)."""


@dataclass(frozen=True)
class EncodingConfig:
    """Parameters of `fit_encoding_models`.

    Attributes
    ----------
    bin_size : float, default 0.02
        Width of the bins the counts and features are on, seconds.
    lags : tuple of float, default -1.0 ... 0.3 step 0.1
        Lags, seconds, each a whole number of bins. Activity at t is paired with features at
        t - lag: negative lags pair activity with later features (premotor).
    n_folds : int, default 5
        Cross-validation folds.
    chunk_duration : float, default 4.0
        Length of the contiguous chunks held out together, seconds (a whole number of bins).
    pca_variance : float or None, default 0.9
        Keep the fewest principal components of the standardised features that explain at
        least this fraction of their variance; None: no PCA (standardised features).
    alpha : float, default 1e-4
        Penalty strength on the per-bin scale of statsmodels'
        ``GLM.fit_regularized(alpha=..., L1_wt=...)``: the objective is
        ``-loglike / n_bins + alpha * ((1 - l1_wt) / 2 * |b|^2 + l1_wt * |b|_1)`` (intercept not
        penalised). The default is a light ridge: it changes the fit of a unit firing at
        5 Hz by well under a percent and mainly keeps rarely firing units finite. PCA scores
        are not whitened, so the L2 penalty equals the L2 penalty on the coefficients of the
        standardised features. 0: unpenalised maximum likelihood.
    l1_wt : float, default 0
        Fraction of the penalty that is L1 (0: ridge, the fast path; > 0: elastic net, slower).
    max_iter : int, default 100
        Most Newton iterations per fit.
    tol : float, default 1e-14
        Convergence tolerance of the solver (remaining training log-likelihood gain, nats per
        spike); see `fit_poisson_glm`.
    hessian_rows : int or None, default 16384
        Bins used to estimate each Newton step's Hessian (None: all training bins). Does not
        change the solution, only the speed; see `fit_poisson_glm`.
    keep_coefficients : bool, default False
        Keep the fitted coefficients, mapped back to the original (unstandardised) features.
    keep_predictions : bool, default False
        Keep the cross-validated predicted counts per bin (float32; n_lags x n_bins x n_units
        per feature set: 1 GB for 14 lags of a 1 h session of 100 units at 20 ms).
    random_state : int, default 0
        Seed of the Hessian subsample.
    """

    bin_size: float = 0.02
    lags: tuple[float, ...] = DEFAULT_LAGS
    n_folds: int = 5
    chunk_duration: float = 4.0
    pca_variance: float | None = 0.9
    alpha: float = 1e-4
    l1_wt: float = 0.0
    max_iter: int = 100
    tol: float = 1e-14
    hessian_rows: int | None = 16384
    keep_coefficients: bool = False
    keep_predictions: bool = False
    random_state: int = 0

    def __post_init__(self):
        object.__setattr__(self, "lags", tuple(float(lag) for lag in np.atleast_1d(self.lags)))
        # Numbers at the door: NaN and infinity pass comparisons like "> 0" (inf) or fail them
        # silently, and would then flow into the bin grid and the penalty.
        for what in ("bin_size", "chunk_duration", "alpha", "l1_wt", "tol"):
            value = getattr(self, what)
            if not isinstance(value, int | float | np.integer | np.floating) or not math.isfinite(value):
                raise ValueError(f"{what} must be a finite number; got {value!r}")
        if self.pca_variance is not None and not (
            isinstance(self.pca_variance, int | float | np.integer | np.floating) and math.isfinite(self.pca_variance)
        ):
            raise ValueError(f"pca_variance must be a finite number or None; got {self.pca_variance!r}")
        if not self.bin_size > 0:
            raise ValueError(f"bin_size must be positive; got {self.bin_size}")
        if len(self.lags) == 0:
            raise ValueError("lags must not be empty")
        if not all(math.isfinite(lag) for lag in self.lags):
            raise ValueError(f"lags must be finite; got {self.lags}")
        if len(set(self.lags)) != len(self.lags):
            raise ValueError(f"lags must be distinct; got {self.lags}")
        for lag in self.lags:
            lag_in_bins(lag, self.bin_size)
        if not (isinstance(self.n_folds, int | np.integer) and self.n_folds >= 2):
            raise ValueError(f"n_folds must be an integer >= 2; got {self.n_folds}")
        _whole_bins(self.chunk_duration, self.bin_size, "chunk_duration")
        if self.pca_variance is not None and not 0 < self.pca_variance <= 1:
            raise ValueError(f"pca_variance must be in (0, 1] or None; got {self.pca_variance}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0; got {self.alpha}")
        if not 0 <= self.l1_wt <= 1:
            raise ValueError(f"l1_wt must be in [0, 1]; got {self.l1_wt}")
        if not (isinstance(self.max_iter, int | np.integer) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1; got {self.max_iter!r}")
        if self.hessian_rows is not None and self.hessian_rows < 1:
            raise ValueError(f"hessian_rows must be positive or None; got {self.hessian_rows}")


@dataclass
class FeatureTransform:
    """Standardisation followed by PCA, fitted on training bins: x -> ((x - mean) / scale) @ components.

    Attributes
    ----------
    mean, scale : ndarray, shape (n_features,)
        Training mean and standard deviation of each feature (scale 1 for a constant feature,
        which then contributes nothing).
    components : ndarray, shape (n_features, n_components)
        Orthonormal principal axes of the standardised features (columns), by decreasing
        variance; without PCA, the identity restricted to the non-constant features.
    explained_variance_ratio : ndarray, shape (n_components,)
    """

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def n_components(self) -> int:
        return self.components.shape[1]

    @classmethod
    def fit(cls, X: np.ndarray, pca_variance: float | None = 0.9) -> FeatureTransform:
        """Fit on training features ``X`` (n_bins, n_features; float32 or float64).

        Computed in float64 over blocks of rows (``_TRANSFORM_BLOCK_ROWS``), so that a long
        session's features are never copied whole; up to one block, all at once.
        """
        X = _float_features(X)
        n_bins, n_features = X.shape
        if n_bins <= _TRANSFORM_BLOCK_ROWS:
            X = np.asarray(X, dtype=np.float64)
            mean = X.mean(axis=0)
            scale = X.std(axis=0)
        else:
            mean = X.mean(axis=0, dtype=np.float64)
            squares = sum(((block - mean) ** 2).sum(axis=0) for block in _row_blocks(X))
            scale = np.sqrt(squares / n_bins)
        constant = ~(scale > 1e-12 * np.maximum(np.abs(mean), 1.0))
        scale[constant] = 1.0
        total = float(np.sum(~constant))  # total variance of the standardised features
        if pca_variance is None:
            components = np.eye(n_features)[:, ~constant]
            variances = np.ones(components.shape[1])
        else:
            gram = np.zeros((n_features, n_features))
            for block in _row_blocks(X):
                Z = (block - mean) / scale
                Z[:, constant] = 0.0
                gram += Z.T @ Z
            eigenvalues, eigenvectors = np.linalg.eigh(gram / n_bins)
            order = np.argsort(eigenvalues)[::-1]
            eigenvalues = np.clip(eigenvalues[order], 0.0, None)
            k = 0
            if total > 0:
                ratio = np.cumsum(eigenvalues) / eigenvalues.sum()
                k = int(np.searchsorted(ratio, pca_variance - 1e-12)) + 1
                k = min(k, int(np.sum(eigenvalues > 1e-12 * eigenvalues.sum())))
            components = eigenvectors[:, order[:k]]
            variances = eigenvalues[:k]
        ratio = variances / total if total > 0 else variances
        return cls(mean=mean, scale=scale, components=components, explained_variance_ratio=ratio)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Design for features ``X`` (n_bins, n_features): shape (n_bins, n_components), float64
        (computed over blocks of rows)."""
        X = _float_features(X)
        if len(X) <= _TRANSFORM_BLOCK_ROWS:
            return ((np.asarray(X, dtype=np.float64) - self.mean) / self.scale) @ self.components
        design = np.empty((len(X), self.n_components))
        start = 0
        for block in _row_blocks(X):
            design[start : start + len(block)] = ((block - self.mean) / self.scale) @ self.components
            start += len(block)
        return design

    def to_feature_space(self, intercept: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map GLM parameters on the design back to the original features.

        ``intercept (n_units,)``, ``coef (n_components, n_units)`` -> ``(intercept', coef')`` with
        ``coef'`` of shape (n_features, n_units) such that eta = intercept' + x @ coef' for raw
        features x (coef' in 1 / feature unit).
        """
        coef_raw = (self.components @ coef) / self.scale[:, None]
        return intercept - self.mean @ coef_raw, coef_raw

    def from_feature_space(self, intercept: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of `to_feature_space` (a least-squares projection onto the kept components)."""
        coef_pca = self.components.T @ (coef * self.scale[:, None])
        coef_raw = (self.components @ coef_pca) / self.scale[:, None]
        return intercept + self.mean @ coef_raw, coef_pca


# Rows of features standardised at a time (float64) by FeatureTransform.
_TRANSFORM_BLOCK_ROWS = 1 << 16


def _float_features(X) -> np.ndarray:
    """``X`` as float32 (if it is) or float64, 2-D, without a copy when it already is."""
    X = np.asarray(X)
    return X if X.dtype == np.float32 else np.asarray(X, dtype=np.float64)


def _row_blocks(X):
    """Consecutive blocks of ``_TRANSFORM_BLOCK_ROWS`` rows of ``X``, as float64."""
    for start in range(0, len(X), _TRANSFORM_BLOCK_ROWS):
        yield np.asarray(X[start : start + _TRANSFORM_BLOCK_ROWS], dtype=np.float64)


def blocked_folds(
    n_bins: int,
    bin_size: float = 0.02,
    chunk_duration: float = 4.0,
    n_folds: int = 5,
    usable: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Assign bins to contiguous chunks and chunks to cross-validation folds.

    Bin t belongs to chunk ``t // (chunk_duration / bin_size)`` (chunks are laid on the bin
    grid from the first bin; the last may be shorter). The chunks that contain at least one
    usable bin are numbered 0, 1, 2, ... in time order and chunk i goes to fold
    ``i mod n_folds``: every fold is spread evenly over the whole session (no fold is "the
    last 20 minutes"), and folds differ in size by at most one chunk.

    Parameters
    ----------
    n_bins : int
    bin_size, chunk_duration : float
        Seconds; ``chunk_duration`` must be a whole number of bins.
    n_folds : int
    usable : array of bool, shape (n_bins,), optional
        Bins that can be used (default all).

    Returns
    -------
    chunk_of_bin, fold_of_bin : ndarray of int, shape (n_bins,)
        Chunk number (among chunks with usable bins) and fold of each bin; -1 for unusable bins.
    """
    bins_per_chunk = _whole_bins(chunk_duration, bin_size, "chunk_duration")
    usable = np.ones(n_bins, dtype=bool) if usable is None else np.asarray(usable, dtype=bool)
    if usable.shape != (n_bins,):
        raise ValueError(f"usable must have shape ({n_bins},); got {usable.shape}")
    grid_chunk = np.arange(n_bins) // bins_per_chunk
    used = np.unique(grid_chunk[usable])
    if used.size < n_folds:
        raise ValueError(
            f"too few chunks: {used.size} chunks of {chunk_duration} s contain usable bins, "
            f"{n_folds} folds need at least {n_folds}"
        )
    number = np.full(grid_chunk.max() + 1, -1)
    number[used] = np.arange(used.size)
    chunk_of_bin = np.where(usable, number[grid_chunk], -1)
    fold_of_bin = np.where(usable, chunk_of_bin % n_folds, -1)
    return chunk_of_bin, fold_of_bin


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (FDR-adjusted p-values) of a set of p-values.

    Same values as ``statsmodels.stats.multitest.multipletests(p, method='fdr_bh')[1]``.
    NaN entries are ignored (and stay NaN); the shape is kept. Apply it to one family of
    tests, e.g. all units x feature sets of one brain region.
    """
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    if ok.size == 0:
        return q
    if np.any((flat[ok] < 0) | (flat[ok] > 1)):
        raise ValueError("p_values must lie in [0, 1]")
    order = ok[np.argsort(flat[ok], kind="mergesort")]
    m = order.size
    scaled = flat[order] * m / np.arange(1, m + 1)
    # q_i = min over j >= i of p_(j) m / j
    scaled = np.minimum.accumulate(scaled[::-1])[::-1]
    q_flat = q.ravel()
    q_flat[order] = np.minimum(scaled, 1.0)
    return q_flat.reshape(p.shape)


@dataclass
class EncodingResult:
    """Cross-validated encoding models of units x feature sets x lags.

    Arrays indexed ``[feature_set, lag, unit]`` follow `feature_set_names`, `lags` and
    `unit_names`.

    Attributes
    ----------
    unit_names : list of str, length n_units
    feature_set_names : list of str, length n_sets
    lags : ndarray, shape (n_lags,)
        Seconds; activity at t paired with features at t - lag (negative: premotor).
    cv_llr : ndarray, shape (n_sets, n_lags, n_units)
        Cross-validated log-likelihood ratio against the mean-rate model, bits per spike.
    pseudo_r2 : ndarray, shape (n_sets, n_lags, n_units)
        Cross-validated deviance pseudo-R^2.
    p_value : ndarray, shape (n_sets, n_lags, n_units)
        One-sided Wilcoxon signed-rank p-value over held-out chunks.
    converged : ndarray of bool, shape (n_sets, n_lags, n_units)
        Whether the solver converged in every fold.
    n_components : ndarray of int, shape (n_sets, n_lags, n_folds)
        Principal components kept in each fit.
    n_spikes : ndarray of int, shape (n_units,)
        Spikes in the usable bins (each held out once).
    chunk_of_bin, fold_of_bin : ndarray of int, shape (n_bins,)
        Chunk and fold of each bin, -1 for bins not used.
    config : EncodingConfig
    coefficients : dict of str -> ndarray, shape (n_lags, n_folds, 1 + n_features, n_units), or None
        Per feature set: intercept (row 0; log expected count per bin) and coefficients on the
        original features (rows 1:, per feature unit), so eta = row0 + x @ rows1:.
    predicted_counts : dict of str -> ndarray (float32), shape (n_lags, n_bins, n_units), or None
        Per feature set: cross-validated expected spike count per bin (NaN in unused bins);
        divide by bin_size for a rate in Hz.
    """

    unit_names: list[str]
    feature_set_names: list[str]
    lags: np.ndarray
    cv_llr: np.ndarray
    pseudo_r2: np.ndarray
    p_value: np.ndarray
    converged: np.ndarray
    n_components: np.ndarray
    n_spikes: np.ndarray
    chunk_of_bin: np.ndarray
    fold_of_bin: np.ndarray
    config: EncodingConfig
    coefficients: dict[str, np.ndarray] | None = field(default=None, repr=False)
    predicted_counts: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def to_dataframe(self):
        """Tidy table, one row per unit x feature set x lag.

        Columns: unit, feature_set, lag (s), cv_llr (bits/spike), pseudo_r2, p_value,
        n_spikes, n_components (mean over folds), converged.
        """
        import pandas as pd  # only needed here; the fitting itself does not use pandas

        n_sets, n_lags, n_units = self.cv_llr.shape
        s, lag, u = np.meshgrid(np.arange(n_sets), np.arange(n_lags), np.arange(n_units), indexing="ij")
        s, lag, u = s.ravel(), lag.ravel(), u.ravel()
        return pd.DataFrame(
            {
                "unit": np.asarray(self.unit_names, dtype=object)[u],
                "feature_set": np.asarray(self.feature_set_names, dtype=object)[s],
                "lag": self.lags[lag],
                "cv_llr": self.cv_llr.ravel(),
                "pseudo_r2": self.pseudo_r2.ravel(),
                "p_value": self.p_value.ravel(),
                "n_spikes": self.n_spikes[u],
                "n_components": self.n_components.mean(axis=2)[s, lag],
                "converged": self.converged.ravel(),
            }
        )

    def best_lags(self):
        """Tidy table, one row per unit x feature set, at the lag with the highest CV-LLR.

        Columns as `to_dataframe`, plus ``p_value_lags``: the p-value at the best lag with a
        Bonferroni correction for having picked it among n_lags (min(1, n_lags * p)). This is
        the per-unit x feature-set p-value to pass to `benjamini_hochberg`.
        """
        table = self.to_dataframe()
        best = table.loc[table.groupby(["feature_set", "unit"], sort=False)["cv_llr"].idxmax()]
        best = best.reset_index(drop=True)
        best["p_value_lags"] = np.minimum(1.0, best["p_value"] * len(self.lags))
        return best

    def significance(self, q_threshold: float = 0.05, families: Mapping[str, str] | None = None):
        """Which unit x feature-set pairs are significant, with Benjamini-Hochberg over each family.

        One row per unit x feature set at its best lag (`best_lags`). The family of a unit is
        ``families[unit]`` (e.g. its brain region; default: one family of all units): the
        q-values are BH-adjusted ``p_value_lags`` over all units x feature sets of a family, and
        ``significant`` is ``q_value < q_threshold``. Each row's ``converged`` says whether its
        fit converged in every fold (a row that did not is still tested, and flagged).

        Returns
        -------
        pandas.DataFrame
            Columns of `best_lags` plus ``family``, ``q_value`` and ``significant``.
        """
        if not (isinstance(q_threshold, int | float | np.integer | np.floating) and 0 < q_threshold <= 1):
            raise ValueError(f"q_threshold must be a number in (0, 1]; got {q_threshold!r}")
        best = self.best_lags()
        if families is None:
            best["family"] = "all"
        else:
            missing = [u for u in self.unit_names if u not in families]
            if missing:
                raise ValueError(f"families: no family for unit(s) {', '.join(missing[:5])}")
            best["family"] = best["unit"].map({u: str(families[u]) for u in self.unit_names})
        best["q_value"] = np.nan
        for _, rows in best.groupby("family").groups.items():
            best.loc[rows, "q_value"] = benjamini_hochberg(best.loc[rows, "p_value_lags"].to_numpy())
        best["significant"] = best["q_value"] < q_threshold
        return best

    def feature_set_index(self, name: str) -> int:
        """Position of feature set ``name``; ValueError naming it if unknown."""
        try:
            return self.feature_set_names.index(name)
        except ValueError:
            raise ValueError(f"unknown feature set {name!r} (known: {', '.join(self.feature_set_names)})") from None


ProgressCallback = Callable[[int, int, str], None]


def fit_encoding_models(
    counts: np.ndarray,
    feature_sets: Mapping[str, np.ndarray],
    config: EncodingConfig | None = None,
    *,
    unit_names: Sequence[str] | None = None,
    feature_set_names: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
) -> EncodingResult:
    """Fit cross-validated Poisson GLMs of every unit on every feature set at every lag.

    Parameters
    ----------
    counts : array, shape (n_bins, n_units)
        Spike counts per bin (non-negative integers), bins of ``config.bin_size``.
    feature_sets : mapping of str -> array, shape (n_bins, n_features)
        Features on the same bins (row t = bin t; 1-D arrays are one feature; float32 arrays
        are kept float32, others are read as float64). Bins where a
        feature set is not finite (NaN: outside its time range, tracking gaps) are dropped,
        together with the bins that would pair with them at some lag.
    config : EncodingConfig, optional
        Defaults: 20 ms bins, lags -1.0 ... 0.3 s, 5 folds of 4 s chunks, PCA keeping 90 %
        of the variance, light ridge penalty.
    unit_names : sequence of str, optional
        Default "0", "1", ...
    feature_set_names : sequence of str, optional
        Fit only these feature sets, in this order (default: all, in mapping order).
    progress : callable(done, total, description), optional
        Called after each (feature set, fold, lag) fit of all units.

    Returns
    -------
    EncodingResult

    Raises
    ------
    ValueError
        With a one-line message naming the input, for: counts that are not (n_bins, n_units)
        non-negative integers; units without spikes (in all usable bins, or in the training
        bins of a fold); a feature set of the wrong length or without any finite bin; an
        unknown feature set name; too few chunks with usable bins for the folds.
    """
    config = EncodingConfig() if config is None else config
    Y = _check_counts(counts)
    n_bins, n_units = Y.shape
    units = _check_unit_names(unit_names, n_units)
    sets = _check_feature_sets(feature_sets, feature_set_names, n_bins)
    shifts = [lag_in_bins(lag, config.bin_size) for lag in config.lags]

    # Bins usable at every lag for every feature set: the feature row paired with bin t at
    # shift k is t - k, and it must exist and be finite.
    usable = np.ones(n_bins, dtype=bool)
    for name, F in sets.items():
        finite = np.all(np.isfinite(F), axis=1)
        if not finite.any():
            raise ValueError(f"feature set {name!r} has no bins with finite values")
        for k in shifts:
            usable &= _shifted(finite, k)
    if not usable.any():
        raise ValueError(
            "feature_sets: no bin has finite features in every feature set at every lag "
            f"(lags {min(config.lags)} ... {max(config.lags)} s)"
        )
    chunk_of_bin, fold_of_bin = blocked_folds(n_bins, config.bin_size, config.chunk_duration, config.n_folds, usable)
    n_chunks = int(chunk_of_bin.max()) + 1

    n_spikes = Y[usable].sum(axis=0)
    silent = np.flatnonzero(n_spikes == 0)
    if silent.size:
        raise ValueError(f"counts: unit(s) {[units[u] for u in silent]} have no spikes in the usable bins")

    # Per fold: training/test bins, the mean-rate model's rate, and where each held-out chunk
    # starts (test bins are in time order, chunks contiguous). The held-out counts and the
    # mean-rate log-likelihood are formed again for each feature set (`_held_out`): kept for
    # every fold they would be two more copies of all the counts.
    folds = []
    ll_null_total = np.zeros(n_units)
    for f in range(config.n_folds):
        train = np.flatnonzero(usable & (fold_of_bin != f))
        test = np.flatnonzero(fold_of_bin == f)
        rate = Y[train].mean(axis=0)
        empty = np.flatnonzero(rate == 0)
        if empty.size:
            raise ValueError(
                f"counts: unit(s) {[units[u] for u in empty]} have no spikes in the training bins of fold {f} "
                "(all their spikes are in its held-out chunks)"
            )
        chunks = chunk_of_bin[test]
        starts = np.flatnonzero(np.r_[True, chunks[1:] != chunks[:-1]])
        folds.append({"train": train, "test": test, "rate": rate, "chunk_ids": chunks[starts], "chunk_starts": starts})
        ll_null_total += _held_out(Y, folds[-1])[1].sum(axis=0)
    Y_used = Y[usable]
    # Saturated minus mean-rate log-likelihood = D_mean_rate / 2 (held-out, pooled over folds).
    with np.errstate(divide="ignore", invalid="ignore"):
        ll_saturated = np.sum(np.where(Y_used > 0, Y_used * np.log(Y_used), 0.0) - Y_used, axis=0)
    del Y_used  # a copy of the usable counts, not needed past this
    half_null_deviance = ll_saturated - ll_null_total

    n_sets, n_lags = len(sets), len(shifts)
    cv_llr = np.empty((n_sets, n_lags, n_units))
    pseudo_r2 = np.empty((n_sets, n_lags, n_units))
    p_value = np.empty((n_sets, n_lags, n_units))
    converged = np.ones((n_sets, n_lags, n_units), dtype=bool)
    n_components = np.zeros((n_sets, n_lags, config.n_folds), dtype=int)
    coefficients = {} if config.keep_coefficients else None
    predicted = {} if config.keep_predictions else None
    total, done = n_sets * config.n_folds * n_lags, 0

    for s, (name, F) in enumerate(sets.items()):
        gains = np.zeros((n_lags, n_chunks, n_units))  # held-out LL gain per chunk, nats
        if coefficients is not None:
            coefficients[name] = np.empty((n_lags, config.n_folds, 1 + F.shape[1], n_units))
        if predicted is not None:
            predicted[name] = np.full((n_lags, n_bins, n_units), np.nan, dtype=np.float32)
        # Warm starts, in original feature space: the same lag in the previous fold, or the
        # previous lag in the first fold (neighbouring fits have nearly the same solution).
        warm: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for f, fold in enumerate(folds):
            Y_train = Y[fold["train"]]  # not kept for all folds at once: it is most of the memory
            Y_test, ll_null = _held_out(Y, fold)
            for i, k in enumerate(shifts):
                F_train = F[fold["train"] - k]
                transform = FeatureTransform.fit(F_train, config.pca_variance)
                design = transform.transform(F_train)
                del F_train  # the design replaces it (fewer columns, once PCA has reduced them)
                start = warm.get(i - 1) if f == 0 else warm.get(i)
                fit = fit_poisson_glm(
                    design,
                    Y_train,
                    alpha=config.alpha,
                    l1_wt=config.l1_wt,
                    start=None if start is None else transform.from_feature_space(*start),
                    max_iter=config.max_iter,
                    tol=config.tol,
                    hessian_rows=config.hessian_rows,
                    random_state=config.random_state,
                )
                intercept_raw, coef_raw = transform.to_feature_space(fit.intercept, fit.coef)
                warm[i] = (intercept_raw, coef_raw)
                eta = transform.transform(F[fold["test"] - k]) @ fit.coef + fit.intercept
                mu = np.exp(eta)
                gain = Y_test * eta - mu - ll_null
                gains[i, fold["chunk_ids"]] = np.add.reduceat(gain, fold["chunk_starts"], axis=0)
                converged[s, i] &= fit.converged
                n_components[s, i, f] = transform.n_components
                if coefficients is not None:
                    coefficients[name][i, f, 0] = intercept_raw
                    coefficients[name][i, f, 1:] = coef_raw
                if predicted is not None:
                    predicted[name][i, fold["test"]] = mu
                done += 1
                if progress is not None:
                    progress(done, total, f"{name} fold {f + 1}/{config.n_folds} lag {config.lags[i]:+.3f} s")
            del Y_train, Y_test, ll_null
        llr = gains.sum(axis=1)  # (n_lags, n_units), nats
        cv_llr[s] = llr / (n_spikes * math.log(2))
        pseudo_r2[s] = llr / half_null_deviance
        p_value[s] = _wilcoxon_greater(gains)

    if not converged.all():
        # Not an error: the fit stopped at max_iter and its metrics are those of that point, which
        # can understate the model. Say how many and where, so the user can raise max_iter.
        s_bad, lag_bad, u_bad = np.nonzero(~converged)
        examples = ", ".join(
            f"{units[u]} x {list(sets)[s]} at {config.lags[i]:+g} s" for s, i, u in list(zip(s_bad, lag_bad, u_bad))[:3]
        )
        warnings.warn(
            f"{s_bad.size} of {converged.size} unit x feature set x lag fits did not converge within "
            f"max_iter={config.max_iter} Newton iterations in every fold (e.g. {examples}); their rows are "
            "flagged converged=False",
            ConvergenceWarning,
            stacklevel=2,
        )

    return EncodingResult(
        unit_names=units,
        feature_set_names=list(sets),
        lags=np.asarray(config.lags),
        cv_llr=cv_llr,
        pseudo_r2=pseudo_r2,
        p_value=p_value,
        converged=converged,
        n_components=n_components,
        n_spikes=n_spikes.astype(np.int64),
        chunk_of_bin=chunk_of_bin,
        fold_of_bin=fold_of_bin,
        config=config,
        coefficients=coefficients,
        predicted_counts=predicted,
    )


def _held_out(Y: np.ndarray, fold: dict) -> tuple[np.ndarray, np.ndarray]:
    """A fold's held-out counts and the mean-rate model's log-likelihood of each (without log(y!))."""
    Y_test = Y[fold["test"]]
    return Y_test, Y_test * np.log(fold["rate"]) - fold["rate"]


def _wilcoxon_greater(gains: np.ndarray) -> np.ndarray:
    """One-sided Wilcoxon signed-rank p-values that the chunk gains exceed 0.

    ``gains`` (n_lags, n_chunks, n_units) -> (n_lags, n_units). A model identical to the
    mean-rate model (all gains 0, e.g. no components kept) gets p = 1.
    """
    n_lags, _, n_units = gains.shape
    p = np.ones((n_lags, n_units))
    testable = np.any(gains != 0, axis=1)
    for i in range(n_lags):
        columns = np.flatnonzero(testable[i])
        if columns.size:
            p[i, columns] = scipy.stats.wilcoxon(gains[i][:, columns], alternative="greater", axis=0).pvalue
    return p


def _shifted(finite: np.ndarray, k: int) -> np.ndarray:
    """ok[t] = finite[t - k] where 0 <= t - k < n, else False."""
    n = finite.size
    ok = np.zeros(n, dtype=bool)
    if k >= 0:
        ok[k:] = finite[: max(n - k, 0)]
    else:
        ok[: max(n + k, 0)] = finite[-k:]
    return ok


def _whole_bins(duration: float, bin_size: float, what: str) -> int:
    ratio = duration / bin_size
    n = int(round(ratio))
    if n < 1 or abs(ratio - n) > _BIN_TOL:
        raise ValueError(f"{what} ({duration} s) must be a positive whole number of bins of {bin_size} s")
    return n


def _check_counts(counts) -> np.ndarray:
    Y = np.asarray(counts)
    if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
        raise ValueError(f"counts must be a 2-D array (n_bins, n_units); got shape {Y.shape}")
    if not np.issubdtype(Y.dtype, np.number) or np.issubdtype(Y.dtype, np.complexfloating):
        raise ValueError(f"counts must be numeric; got dtype {Y.dtype}")
    Y = np.asarray(Y, dtype=np.float64)  # float64 counts are used as they are, not copied
    if not np.all(np.isfinite(Y)) or np.any(Y < 0) or np.any(Y != np.round(Y)):
        raise ValueError("counts must be finite non-negative integers (spike counts per bin)")
    return Y


def _check_unit_names(unit_names, n_units: int) -> list[str]:
    if unit_names is None:
        return [str(u) for u in range(n_units)]
    names = [str(name) for name in unit_names]
    if len(names) != n_units:
        raise ValueError(f"unit_names has {len(names)} names but counts has {n_units} units")
    if len(set(names)) != n_units:
        raise ValueError("unit_names must be unique")
    return names


def _check_feature_sets(feature_sets, feature_set_names, n_bins: int) -> dict[str, np.ndarray]:
    if not isinstance(feature_sets, Mapping) or len(feature_sets) == 0:
        raise ValueError("feature_sets must be a non-empty mapping of name -> (n_bins, n_features) array")
    names = list(feature_sets) if feature_set_names is None else [str(n) for n in feature_set_names]
    if not names:
        raise ValueError("feature_set_names must not be empty")
    unknown = [n for n in names if n not in feature_sets]
    if unknown:
        raise ValueError(
            f"feature_set_names: unknown feature set {unknown[0]!r} (known: {', '.join(map(str, feature_sets))})"
        )
    if len(set(names)) != len(names):
        raise ValueError("feature_set_names must be unique")
    sets = {}
    for name in names:
        F = np.asarray(feature_sets[name])
        # float32 features stay float32 (half the memory of a long session's features; each
        # fit's design is formed from them in float64); anything else is taken as float64.
        F = F if F.dtype == np.float32 else np.asarray(F, dtype=np.float64)
        if F.ndim == 1:
            F = F[:, None]
        if F.ndim != 2 or F.shape[1] == 0:
            raise ValueError(f"feature set {name!r} must be (n_bins, n_features); got shape {F.shape}")
        if F.shape[0] != n_bins:
            raise ValueError(f"feature set {name!r} has {F.shape[0]} bins but counts has {n_bins}")
        sets[str(name)] = F
    return sets
