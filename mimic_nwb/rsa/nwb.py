"""RSA on a session: neural populations per brain region and every feature set, over behaviours.

``rsa_session(path)`` puts the units (binned spike counts, one population per brain region)
and the requested feature sets on one grid of bins, labels each bin with the behaviour bout
that contains it (``intervals/behavior_labels``), partitions the bins into the blocked folds of
the encoding models, computes one RDM per activity set (crossnobis where the folds allow,
correlation distance otherwise) and compares every feature-set RDM with each neural RDM (WUC).
"""

from pathlib import Path

import numpy as np

from ..encoding.core import blocked_folds
from ..encoding.nwb import read_neural_data
from ..errors import InputError
from ..features import available_feature_sets, read_feature_set, resample_to_bins
from ..session import append, read_session
from .core import compute_rdms

NEURAL_PREFIX = "neural_"
#: Most condition-label permutations accepted (the permuted RDMs are held in memory at once).
MAX_PERMUTATIONS = 100_000


def bin_labels(intervals, centers):
    """Behaviour label of each bin centre ('' where no bout contains it)."""
    starts = np.asarray(intervals["start_time"][:])
    stops = np.asarray(intervals["stop_time"][:])
    labels = [str(label) for label in intervals["label"][:]]
    out = np.full(len(centers), "", dtype=object)
    for start, stop, label in zip(starts, stops, labels):
        out[(centers >= start) & (centers < stop)] = label
    return out


def rsa_session(
    session,
    feature_sets=None,
    labels_name="behavior_labels",
    bin_size=0.02,
    n_folds=5,
    chunk_duration=4.0,
    n_permutations=1000,
    name="RepresentationalSimilarity",
    replace_existing=False,
):
    """Compute and append RDMs and their comparisons; return (summary line, RSAResult).

    ``bin_size`` and ``chunk_duration`` are seconds (finite, positive; the chunk a whole number of
    bins); ``n_folds`` an integer >= 2; ``n_permutations`` an integer in [1, ``MAX_PERMUTATIONS``]
    (the p-values of the comparisons are stored, so a run without them is refused rather than
    written with NaN).
    """
    session = Path(session)
    _check_numbers(bin_size, n_folds, chunk_duration, n_permutations)
    with read_session(session) as nwbfile:
        intervals = (nwbfile.intervals or {}).get(labels_name)
        if intervals is None or len(intervals) == 0:
            raise InputError(f"{session}: no behaviour labels at intervals/{labels_name}; import them first")
        names = list(feature_sets) if feature_sets else available_feature_sets(nwbfile)
        sets = [read_feature_set(nwbfile, n, session) for n in names]
        t_start = max([s.times[0] for s in sets], default=0.0)
        t_stop = min([s.times[-1] for s in sets], default=0.0)
        if not sets or t_stop <= t_start:
            raise InputError(f"{session}: no feature sets to compare (run stac / simulate first)")
        neural = read_neural_data(nwbfile, session, bin_size, t_start, t_stop)
        labels = bin_labels(intervals, neural.bin_centers)
        if not (labels != "").any():
            raise InputError(f"{session}: the behaviour labels do not overlap the data ({t_start:.2f}-{t_stop:.2f} s)")
        activities = {}
        for region in sorted(set(neural.brain_regions)):
            columns = [i for i, r in enumerate(neural.brain_regions) if r == region]
            activities[f"{NEURAL_PREFIX}{region}"] = neural.counts[:, columns].astype(np.float64)
        for feature_set in sets:
            activities[feature_set.name] = resample_to_bins(feature_set, neural.bin_centers)
    usable = np.all([np.all(np.isfinite(a), axis=1) for a in activities.values()], axis=0) & (labels != "")
    try:
        _, partitions = blocked_folds(len(labels), bin_size, chunk_duration, n_folds, usable)
        references = [n for n in activities if n.startswith(NEURAL_PREFIX)]
        result = compute_rdms(
            activities, np.where(usable, labels, ""), partitions, reference=references, n_permutations=n_permutations
        )
    except ValueError as error:
        raise InputError(f"{session}: {error}") from None
    with append(session, replace=[name] if replace_existing else ()) as s:
        s.check_new(name)
        s.add(
            similarity_to_nwb(result, name),
            parameters=dict(
                feature_sets=names,
                labels=f"intervals/{labels_name}",
                bin_size=bin_size,
                n_folds=n_folds,
                chunk_duration=chunk_duration,
                n_permutations=n_permutations,
                measure=result.measure,
                noise=result.noise,
                partitions_used=result.partitions,
                bins_per_condition=dict(zip(result.conditions, result.n_bins.tolist())),
            ),
        )
    best = result.comparisons.sort_values("similarity", ascending=False).groupby("reference").head(1)
    top = "; ".join(f"{r.reference}: {r.candidate} (WUC {r.similarity:.2f})" for r in best.itertuples())
    summary = (
        f"{session}: processing/mimic/{name}: {len(result.names)} RDMs over {len(result.conditions)} behaviours "
        f"({result.measure}); most similar: {top}"
    )
    return summary, result


def _check_numbers(bin_size, n_folds, chunk_duration, n_permutations):
    """Refuse bad numbers before the session is read (one line naming the option)."""
    for what, value in (("bin_size", bin_size), ("chunk_duration", chunk_duration)):
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise InputError(f"{what}: {value!r} is not a number of seconds")
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"{what}: {value} s must be a finite positive number of seconds")
    ratio = chunk_duration / bin_size
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise InputError(f"chunk_duration: {chunk_duration} s is not a whole number of bins of {bin_size} s")
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise InputError(f"n_folds: {n_folds!r} must be an integer >= 2")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer) or n_permutations < 1:
        raise InputError(
            f"n_permutations: {n_permutations!r} must be an integer >= 1 (the permutation test gives the p-values)"
        )
    if n_permutations > MAX_PERMUTATIONS:
        raise InputError(
            f"n_permutations: {n_permutations} is more than {MAX_PERMUTATIONS} (every permutation holds a permuted "
            "RDM in memory; 1000 give p-values down to 0.001)"
        )


def similarity_to_nwb(result, name="RepresentationalSimilarity"):
    import ndx_mimic

    comparisons = ndx_mimic.RdmComparisons(name="comparisons", description="RDM comparisons (rsatoolbox).")
    method_names = {"cosine_cov": "whitened_unbiased_cosine", "corr_cov": "whitened_correlation"}
    for row in result.comparisons.itertuples():
        comparisons.add_row(
            reference_rdm=row.reference,
            candidate_rdm=row.candidate,
            method=method_names.get(row.method, row.method),
            similarity=float(row.similarity),
            p_value=float(row.p_value),
        )
    return ndx_mimic.RepresentationalSimilarity(
        name=name,
        rdms=result.rdms,
        rdm_names=list(result.names),
        dissimilarity_measures=[result.measure] * len(result.names),
        condition_labels=list(result.conditions),
        comparisons=comparisons,
    )
