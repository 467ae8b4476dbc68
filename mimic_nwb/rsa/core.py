"""Representational similarity analysis over behaviour categories.

Pure core of ``mimic-nwb rsa``: arrays in, an `RSAResult` out; no files. The NWB adapter puts
the neural population of each brain region (spike counts per bin) and every feature set and
network layer on one grid of bins, labels each bin with its behaviour (or leaves it
unlabelled), and calls `compute_rdms`.

1. Constant channels are dropped and each channel (unit, feature, layer unit) is z-scored
   over the bins used (optional), so that channels in different units weigh alike.
2. Activity is averaged per behaviour condition, separately in each partition of the
   session (e.g. the cross-validation folds of `mimic_nwb.encoding.blocked_folds`).
3. One RDM (condition x condition dissimilarities) per activity set:

   - **crossnobis** (cross-validated Mahalanobis distance, Walther et al. 2016; rsatoolbox
     ``calc_rdm(method='crossnobis')``, leave-one-partition-out) when at least two
     partitions contain every condition. Only those partitions are used. Distances are
     unbiased (0 in expectation for identical conditions, and can be negative) and whitened
     by the noise precision estimated from the residuals of the bins around their
     condition x partition means (``noise``, default Schäfer-Strimmer shrinkage towards the
     diagonal, as rsatoolbox's ``prec_from_residuals(method='shrinkage_diag')``).
     Divided by the number of channels, as rsatoolbox does.
   - **correlation** distance (1 - Pearson r between condition-mean patterns) otherwise.

   One measure is used for all RDMs of a result, so they can be compared.
4. RDMs are compared with the whitened unbiased cosine similarity (WUC; Diedrichsen et al.
   2021), which rsatoolbox calls ``compare(method='cosine_cov')``, and a p-value from a
   condition-label permutation test (`compare_rdms`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RSAResult", "compare_rdms", "compute_rdms", "condition_means", "noise_precision"]

NOISE_METHODS = ("shrinkage_diag", "shrinkage_eye", "diag", "full", None)
# Rows of residuals processed at once when estimating the noise covariance (memory bound).
_BLOCK_ROWS = 8192


@dataclass
class RSAResult:
    """RDMs over behaviour conditions, and optionally their comparisons.

    Attributes
    ----------
    names : list of str, length n_rdms
        The activity sets (neural populations, feature sets, network layers).
    conditions : list of str, length n_conditions
        Behaviour labels, in RDM row/column order.
    measure : str
        'crossnobis' or 'correlation'.
    rdms : ndarray, shape (n_rdms, n_conditions, n_conditions)
        Symmetric dissimilarity matrices with zero diagonal.
    n_bins : ndarray of int, shape (n_conditions,)
        Bins averaged per condition (over the partitions used).
    partitions : list of int
        Partition ids used for crossnobis (empty for correlation distance).
    noise : str or None
        Noise-precision estimator used for crossnobis.
    comparisons : pandas.DataFrame or None
        Output of `compare_rdms` when a reference was given.
    """

    names: list[str]
    conditions: list[str]
    measure: str
    rdms: np.ndarray
    n_bins: np.ndarray
    partitions: list[int]
    noise: str | None
    comparisons: object = field(default=None, repr=False)

    def index(self, name: str) -> int:
        """Position of RDM ``name``; ValueError naming it if unknown."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown RDM {name!r} (known: {', '.join(self.names)})") from None

    def to_rsatoolbox(self, names: Sequence[str] | None = None):
        """The RDMs as an ``rsatoolbox.rdm.RDMs`` object (rdm_descriptors 'name', pattern_descriptors 'condition')."""
        from rsatoolbox.rdm import RDMs

        rows = [self.index(n) for n in (self.names if names is None else names)]
        return RDMs(
            self.rdms[rows],
            dissimilarity_measure=self.measure,
            rdm_descriptors={"name": [self.names[i] for i in rows]},
            pattern_descriptors={"condition": list(self.conditions)},
        )

    def to_dataframe(self):
        """Tidy table, one row per RDM x condition pair (upper triangle):
        rdm, condition_a, condition_b, dissimilarity, measure."""
        import pandas as pd

        i, j = np.triu_indices(len(self.conditions), k=1)
        conditions = np.asarray(self.conditions, dtype=object)
        return pd.DataFrame(
            {
                "rdm": np.repeat(np.asarray(self.names, dtype=object), i.size),
                "condition_a": np.tile(conditions[i], len(self.names)),
                "condition_b": np.tile(conditions[j], len(self.names)),
                "dissimilarity": self.rdms[:, i, j].ravel(),
                "measure": self.measure,
            }
        )


def condition_means(
    activity: np.ndarray,
    labels: Sequence,
    partitions: np.ndarray | None = None,
    conditions: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Mean activity per behaviour label, optionally separately per partition (fold).

    Parameters
    ----------
    activity : array, shape (n_bins, n_channels)
    labels : sequence, length n_bins
        Behaviour label of each bin; None, NaN or "" for unlabelled bins (not used).
    partitions : array of int, shape (n_bins,), optional
        Partition (e.g. fold) of each bin, negative for bins not used; default one partition.
    conditions : sequence of str, optional
        Labels to average, in this order; default all labels present, sorted.

    Returns
    -------
    means : ndarray, shape (n_partitions, n_conditions, n_channels)
        NaN where a partition has no bin of a condition (or the bin's activity is not finite).
    n_bins : ndarray of int, shape (n_partitions, n_conditions)
    conditions : list of str
    partition_ids : ndarray of int, shape (n_partitions,)
    """
    activity = np.asarray(activity, dtype=np.float64)
    if activity.ndim == 1:
        activity = activity[:, None]
    labels = _as_labels(labels)
    if activity.shape[0] != labels.size:
        raise ValueError(f"activity has {activity.shape[0]} bins but labels has {labels.size}")
    part = np.zeros(labels.size, dtype=int) if partitions is None else np.asarray(partitions)
    if part.shape != labels.shape:
        raise ValueError(f"partitions must have shape {labels.shape}; got {part.shape}")
    used = (labels != "") & (part >= 0) & np.all(np.isfinite(activity), axis=1)
    if conditions is None:
        conditions = sorted(set(labels[used].tolist()))
    conditions = [str(c) for c in conditions]
    code_of = {c: i for i, c in enumerate(conditions)}
    codes = np.array([code_of.get(label, -1) for label in labels.tolist()])
    used &= codes >= 0
    partition_ids = np.unique(part[used])
    index = np.where(used, np.searchsorted(partition_ids, part), -1)
    means, n_bins = _cell_means(activity, np.where(used, codes, -1), len(conditions), index, partition_ids.size)
    return means, n_bins, conditions, partition_ids


def _cell_means(
    activity: np.ndarray, codes: np.ndarray, n_conditions: int, partition_index: np.ndarray, n_partitions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Means (n_partitions, n_conditions, n_channels) and bin counts of the cells of integer
    condition codes x partition indices (both -1 for bins not used)."""
    used = (codes >= 0) & (partition_index >= 0)
    cell = partition_index[used] * n_conditions + codes[used]
    n_cells = n_partitions * n_conditions
    n_bins = np.bincount(cell, minlength=n_cells)
    sums = np.zeros((n_cells, activity.shape[1]))
    _sum_rows(sums, cell, activity[used])
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / n_bins[:, None]
    return means.reshape(n_partitions, n_conditions, -1), n_bins.reshape(n_partitions, n_conditions)


def noise_precision(residuals: np.ndarray, dof: int, method: str | None = "shrinkage_diag") -> np.ndarray | None:
    """Noise precision matrix (n_channels x n_channels) from residuals (n_bins, n_channels).

    Same estimators as ``rsatoolbox.data.noise.prec_from_residuals`` ('shrinkage_diag':
    Schäfer & Strimmer 2005; 'shrinkage_eye': Ledoit & Wolf 2004; 'diag'; 'full'), computed
    with matrix products over blocks of rows instead of rsatoolbox's Python loop over rows,
    which is too slow for the ~10^5 bins of a session. The residuals must have zero mean per
    channel (as after subtracting condition means). ``None`` returns None (identity noise).
    """
    if method is None:
        return None
    residuals = np.asarray(residuals, dtype=np.float64)
    blocks = (residuals[i : i + _BLOCK_ROWS] for i in range(0, residuals.shape[0], _BLOCK_ROWS))
    return _precision(*_residual_moments(blocks, residuals.shape[1], method), dof, method)


def _residual_moments(blocks, n_channels: int, method: str):
    """Sum of outer products of the residual rows, and of their squares (for shrinkage)."""
    if method not in NOISE_METHODS:
        raise ValueError(f"noise must be one of {NOISE_METHODS}; got {method!r}")
    n = 0
    s_sum = np.zeros((n_channels, n_channels))
    s2_sum = np.zeros((n_channels, n_channels)) if method.startswith("shrinkage") else None
    for r in blocks:
        n += r.shape[0]
        s_sum += r.T @ r
        if s2_sum is not None:
            r2 = r * r
            s2_sum += r2.T @ r2
    return n, s_sum, s2_sum


def _precision(n: int, s_sum: np.ndarray, s2_sum: np.ndarray | None, dof: int, method: str) -> np.ndarray:
    """rsatoolbox's covariance estimators (data/noise.py), from the moments, inverted."""
    n_channels = s_sum.shape[0]
    if method == "diag":
        cov = np.diag(np.diag(s_sum) / dof)
    elif method == "full":
        cov = s_sum / dof
    elif method == "shrinkage_eye":
        s = s_sum / n
        b2 = np.sum(s2_sum / n - s * s) / n
        m = np.trace(s) / n_channels
        d2 = np.sum((s - m * np.eye(n_channels)) ** 2)
        b2 = min(d2, b2)
        cov = (b2 / d2 * m * np.eye(n_channels) + (d2 - b2) / d2 * s) * n / dof
    else:  # shrinkage_diag
        s = s_sum / dof
        var = np.diag(s)
        std = np.sqrt(var)
        s_mean = s_sum / std[None, :] / std[:, None] / (n - 1)
        s2_mean = s2_sum / var[None, :] / var[:, None] / (n - 1)
        var_hat = n / dof**2 * (s2_mean - s_mean**2)
        off = ~np.eye(n_channels, dtype=bool)
        lamb = np.sum(var_hat[off]) / np.sum(s_mean[off] ** 2) if n_channels > 1 else 1.0
        lamb = max(min(lamb, 1.0), 0.0)
        cov = s * (np.eye(n_channels) + (1 - lamb) * off)
    return np.linalg.inv(cov)


def compute_rdms(
    activities: Mapping[str, np.ndarray],
    labels: Sequence,
    partitions: np.ndarray | None = None,
    *,
    conditions: Sequence[str] | None = None,
    standardize: bool = True,
    noise: str | None = "shrinkage_diag",
    reference: str | Sequence[str] | None = None,
    method: str = "cosine_cov",
    n_permutations: int = 1000,
    random_state: int = 0,
) -> RSAResult:
    """RDMs over behaviour conditions for several activity sets on the same bins.

    Parameters
    ----------
    activities : mapping of str -> array, shape (n_bins, n_channels)
        Neural population (spike counts per bin), feature sets, network layers; all on the
        same bins. Bins where any set is not finite are not used.
    labels : sequence, length n_bins
        Behaviour label of each bin; None, NaN or "" for unlabelled bins (not used).
    partitions : array of int, shape (n_bins,), optional
        Independent partition of each bin (e.g. ``EncodingResult.fold_of_bin`` or
        `mimic_nwb.encoding.blocked_folds`); negative: not used. With at least two partitions
        that contain every condition the RDMs are crossnobis, otherwise correlation distance.
    conditions : sequence of str, optional
        Conditions (labels) to use, in this order; default all labels present, sorted.
    standardize : bool, default True
        z-score each channel over the bins used.
    noise : {'shrinkage_diag', 'shrinkage_eye', 'diag', 'full', None}, default 'shrinkage_diag'
        Noise-precision estimator for crossnobis (None: identity).
    reference : str or sequence of str, optional
        If given, compare every other RDM with each reference (`compare_rdms`) and store the
        table in ``comparisons``.
    method, n_permutations, random_state
        Passed to `compare_rdms`.

    Returns
    -------
    RSAResult
    """
    import rsatoolbox

    if noise not in NOISE_METHODS:
        raise ValueError(f"noise must be one of {NOISE_METHODS}; got {noise!r}")
    if not isinstance(activities, Mapping) or len(activities) == 0:
        raise ValueError("activities must be a non-empty mapping of name -> (n_bins, n_channels) array")
    labels = _as_labels(labels)
    n_bins = labels.size
    sets = {}
    for name, values in activities.items():
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] == 0:
            raise ValueError(f"activity {name!r} must be (n_bins, n_channels); got shape {values.shape}")
        if values.shape[0] != n_bins:
            raise ValueError(f"activity {name!r} has {values.shape[0]} bins but labels has {n_bins}")
        sets[str(name)] = values
    if partitions is None:
        part = np.zeros(n_bins, dtype=int)
    else:
        part = np.asarray(partitions)
        if part.shape != (n_bins,) or not np.issubdtype(part.dtype, np.integer):
            raise ValueError(f"partitions must be integers of shape ({n_bins},); got {part.dtype} {part.shape}")

    labelled = labels != ""
    finite = np.ones(n_bins, dtype=bool)
    for values in sets.values():
        finite &= np.all(np.isfinite(values), axis=1)
    used = labelled & finite & (part >= 0)
    if not used.any():
        raise ValueError("labels: no labelled bin has finite activity in every set (labels do not overlap the data)")
    present = sorted(set(labels[used].tolist()))
    if conditions is None:
        conditions = present
    else:
        conditions = [str(c) for c in conditions]
        missing = [c for c in conditions if c not in present]
        if missing:
            raise ValueError(f"conditions: {missing[0]!r} has no labelled bin with finite activity")
        if len(set(conditions)) != len(conditions):
            raise ValueError("conditions must be unique")
    if len(conditions) < 3:
        raise ValueError(f"labels: RSA needs at least 3 conditions with data; got {conditions}")
    code_of = {c: i for i, c in enumerate(conditions)}
    codes = np.array([code_of.get(label, -1) for label in labels.tolist()])
    used &= codes >= 0

    # Partitions that contain every condition allow crossnobis.
    partition_ids = np.unique(part[used])
    index = np.searchsorted(partition_ids, part)
    index = np.where(used, index, -1)
    _, counts = _cell_means(
        np.zeros((n_bins, 1)), np.where(used, codes, -1), len(conditions), index, partition_ids.size
    )
    complete = np.flatnonzero(np.all(counts > 0, axis=1))
    crossnobis = complete.size >= 2
    if crossnobis:
        keep = np.isin(index, complete)
        used &= keep
        remap = np.full(partition_ids.size, -1)
        remap[complete] = np.arange(complete.size)
        index = np.where(used, remap[np.clip(index, 0, None)], -1)
        n_partitions = complete.size
    else:
        index = np.where(used, 0, -1)
        n_partitions = 1
    codes = np.where(used, codes, -1)

    rdms = []
    n_cond = len(conditions)
    cell_codes, cell_index = codes[used], index[used]
    for name, values in sets.items():
        X = values[used]
        sd = X.std(axis=0)
        varying = sd > 0
        if not varying.any():
            raise ValueError(f"activity {name!r} is constant over the labelled bins")
        # Constant channels carry no information (and would make the noise singular).
        X = X[:, varying]
        if standardize:
            X = (X - X.mean(axis=0)) / sd[varying]
        means, cell_bins = _cell_means(X, cell_codes, n_cond, cell_index, n_partitions)
        if crossnobis:
            precision = None
            if noise is not None:
                blocks = (
                    X[i : i + _BLOCK_ROWS] - means[cell_index[i : i + _BLOCK_ROWS], cell_codes[i : i + _BLOCK_ROWS]]
                    for i in range(0, X.shape[0], _BLOCK_ROWS)
                )
                moments = _residual_moments(blocks, X.shape[1], noise)
                if np.any(np.diag(moments[1]) <= 0):
                    raise ValueError(
                        f"activity {name!r}: some channels do not vary within conditions, so the noise "
                        "precision is undefined; use noise=None"
                    )
                precision = _precision(*moments, X.shape[0] - n_partitions * n_cond, noise)
            dataset = rsatoolbox.data.Dataset(
                means.reshape(n_partitions * n_cond, -1),
                obs_descriptors={
                    # float descriptors: rsatoolbox averages descriptors and warns when casting NaN to int
                    "condition": np.tile(np.arange(n_cond, dtype=float), n_partitions),
                    "partition": np.repeat(np.arange(n_partitions, dtype=float), n_cond),
                },
            )
            rdm = rsatoolbox.rdm.calc_rdm(
                dataset, method="crossnobis", descriptor="condition", cv_descriptor="partition", noise=precision
            )
        else:
            if X.shape[1] < 2:
                raise ValueError(f"activity {name!r}: correlation distance needs at least 2 varying channels")
            dataset = rsatoolbox.data.Dataset(means[0], obs_descriptors={"condition": np.arange(n_cond, dtype=float)})
            rdm = rsatoolbox.rdm.calc_rdm(dataset, method="correlation", descriptor="condition")
        rdms.append(rdm.get_matrices()[0])
    result = RSAResult(
        names=list(sets),
        conditions=list(conditions),
        measure="crossnobis" if crossnobis else "correlation",
        rdms=np.stack(rdms),
        n_bins=cell_bins.sum(axis=0).astype(np.int64),
        partitions=[int(partition_ids[i]) for i in complete] if crossnobis else [],
        noise=noise if crossnobis else None,
    )
    if reference is not None:
        result.comparisons = compare_rdms(
            result, reference, method=method, n_permutations=n_permutations, random_state=random_state
        )
    return result


def compare_rdms(
    result: RSAResult,
    reference: str | Sequence[str],
    candidates: Sequence[str] | None = None,
    *,
    method: str = "cosine_cov",
    n_permutations: int = 1000,
    random_state: int = 0,
):
    """Compare candidate RDMs with reference RDMs.

    Parameters
    ----------
    result : RSAResult
    reference : str or sequence of str
        Reference RDM name(s), e.g. the neural population of each brain region.
    candidates : sequence of str, optional
        Default: every RDM that is not a reference.
    method : str, default 'cosine_cov'
        An ``rsatoolbox.rdm.compare`` method. 'cosine_cov' is the whitened unbiased cosine
        similarity (WUC; 1 for identical RDMs, ~0 for a candidate without condition structure);
        'corr_cov' is the whitened Pearson correlation. WUC assumes unbiased distances
        (crossnobis); correlation distances are all positive, so unrelated RDMs do not give
        ~0 with it, and 'corr_cov' is the better choice for them.
    n_permutations : int, default 1000
        Condition-label permutation test: the candidate's rows and columns are permuted
        together, the similarity recomputed, and p = (1 + #{permuted >= observed}) /
        (1 + n_permutations), one-sided. With n_conditions! <= n_permutations all
        permutations are enumerated and p = #{permuted >= observed} / n_conditions! (exact; the
        smallest possible p is 1 / n_conditions!). 0: no p-value (NaN).
    random_state : int, default 0

    Returns
    -------
    pandas.DataFrame
        One row per reference x candidate: reference, candidate, method, similarity,
        p_value, n_permutations.
    """
    import pandas as pd
    from rsatoolbox.rdm import RDMs, compare

    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer) or n_permutations < 0:
        raise ValueError(f"n_permutations must be an integer >= 0 (0: no p-values); got {n_permutations!r}")
    references = [reference] if isinstance(reference, str) else list(reference)
    if not references:
        raise ValueError("reference must name at least one RDM")
    for name in references:
        result.index(name)
    if candidates is None:
        candidates = [n for n in result.names if n not in references]
    else:
        candidates = list(candidates)
        for name in candidates:
            result.index(name)
    n_cond = len(result.conditions)
    rng = np.random.default_rng(random_state)
    if n_permutations > 0 and math.factorial(n_cond) <= n_permutations:
        permutations = np.array(list(itertools.permutations(range(n_cond))))
        exact = True
    else:
        permutations = np.array([rng.permutation(n_cond) for _ in range(n_permutations)]).reshape(-1, n_cond)
        exact = False
    rows = []
    for ref in references:
        ref_rdm = RDMs(result.rdms[result.index(ref)][None], dissimilarity_measure=result.measure)
        for cand in candidates:
            if cand == ref:
                continue
            matrix = result.rdms[result.index(cand)]
            similarity = float(compare(ref_rdm, RDMs(matrix[None]), method=method)[0, 0])
            p = np.nan
            if permutations.size:
                permuted = matrix[permutations[:, :, None], permutations[:, None, :]]
                null = compare(ref_rdm, RDMs(permuted), method=method)[0]
                # Allow for rounding: a permutation that reproduces the RDM counts as >=.
                hits = int(np.sum(null >= similarity - 1e-12))
                p = hits / len(permutations) if exact else (1 + hits) / (1 + len(permutations))
            rows.append(
                dict(
                    reference=ref,
                    candidate=cand,
                    method=method,
                    similarity=similarity,
                    p_value=p,
                    n_permutations=len(permutations),
                )
            )
    return pd.DataFrame(rows, columns=["reference", "candidate", "method", "similarity", "p_value", "n_permutations"])


def _as_labels(labels) -> np.ndarray:
    """Labels as an array of str, with "" for unlabelled bins (None, NaN or "")."""
    out = []
    for label in labels:
        if label is None or (isinstance(label, float | np.floating) and np.isnan(label)):
            out.append("")
        else:
            out.append(str(label))
    return np.asarray(out, dtype=object)


def _sum_rows(sums: np.ndarray, cell: np.ndarray, rows: np.ndarray) -> None:
    """sums[cell[i]] += rows[i] for all i, via a sort and reduceat (np.add.at is slow)."""
    if cell.size == 0:
        return
    order = np.argsort(cell, kind="stable")
    sorted_cells = cell[order]
    starts = np.flatnonzero(np.r_[True, sorted_cells[1:] != sorted_cells[:-1]])
    sums[sorted_cells[starts]] += np.add.reduceat(rows[order], starts, axis=0)
