"""RSA on a session: neural populations per brain region and every feature set, over behaviours.

``rsa(session)`` puts the units (binned spike counts, one population per brain region) and the
requested feature sets on one grid of bins, labels each bin with the behaviour bout that contains
it (``intervals/behavior_labels``), partitions the bins into the blocked folds of the encoding
models, computes one RDM per activity set (crossnobis where the folds allow, correlation distance
otherwise) and compares every feature-set RDM with each neural RDM (WUC). It returns an
:class:`RsaResult`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import ndx_mimic

from ..encoding.core import blocked_folds
from ..encoding.nwb import read_neural_data
from ..errors import InputError
from ..features import available_feature_sets, read_feature_set, resample_to_bins
from ..session import RESULTS_MODULE, opened
from .core import RSAResult, compute_rdms

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


@dataclass(frozen=True)
class RsaConfig:
    """Parameters of :func:`rsa`.

    ``bin_size`` and ``chunk_duration`` are seconds (finite, positive; the chunk a whole number of
    bins): the grid the activities are put on and the contiguous chunk of each partition;
    ``n_folds`` (an integer >= 2) the partitions for crossnobis; ``n_permutations`` (an integer in
    [1, ``MAX_PERMUTATIONS``]) the condition-label permutations of the comparisons' p-values (they
    are stored, so a run without them is refused rather than written with NaN).
    """

    bin_size: float = 0.02
    n_folds: int = 5
    chunk_duration: float = 4.0
    n_permutations: int = 1000

    def __post_init__(self):
        for what in ("bin_size", "chunk_duration"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"{what}: {value!r} is not a number of seconds")
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{what}: {value} s must be a finite positive number of seconds")
        ratio = self.chunk_duration / self.bin_size
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise ValueError(
                f"chunk_duration: {self.chunk_duration} s is not a whole number of bins of {self.bin_size} s"
            )
        n_folds, n_permutations = self.n_folds, self.n_permutations
        if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
            raise ValueError(f"n_folds: {n_folds!r} must be an integer >= 2")
        if isinstance(n_permutations, bool) or not isinstance(n_permutations, int | np.integer) or n_permutations < 1:
            raise ValueError(
                f"n_permutations: {n_permutations!r} must be an integer >= 1 (the permutation test gives the p-values)"
            )
        if n_permutations > MAX_PERMUTATIONS:
            raise ValueError(
                f"n_permutations: {n_permutations} is more than {MAX_PERMUTATIONS} (every permutation holds a "
                "permuted RDM in memory; 1000 give p-values down to 0.001)"
            )


@dataclass(frozen=True, eq=False)
class RsaResult:
    """What :func:`rsa` appended and computed.

    ``path`` is the session file, ``name`` the result's path (``processing/mimic/<name>``),
    ``result`` the core's :class:`~mimic_nwb.rsa.core.RSAResult` (RDMs (n_rdms, C, C) over the
    behaviour conditions, the comparisons table: similarity and permutation p-value of every
    feature-set RDM against each neural RDM), ``feature_sets`` the names compared and ``labels``
    the behaviour bouts used (``intervals/<name>``).
    """

    path: Path
    name: str
    result: RSAResult
    feature_sets: tuple[str, ...]
    labels: str

    def most_similar(self):
        """The best candidate RDM per neural reference: rows of ``result.comparisons``."""
        comparisons = self.result.comparisons
        return comparisons.sort_values("similarity", ascending=False).groupby("reference").head(1)

    def summary(self):
        """One line: the RDMs, the behaviours, the measure and the most similar RDM per population."""
        top = "; ".join(
            f"{r.reference}: {r.candidate} (WUC {r.similarity:.2f})" for r in self.most_similar().itertuples()
        )
        result = self.result
        return (
            f"{self.path}: {self.name}: {len(result.names)} RDMs over {len(result.conditions)} behaviours "
            f"({result.measure}); most similar: {top}"
        )


def rsa(
    session,
    feature_sets=None,
    config: RsaConfig | None = None,
    *,
    labels="behavior_labels",
    name="RepresentationalSimilarity",
    replace=False,
    progress=False,
) -> RsaResult:
    """Compute RDMs of the neural populations and ``feature_sets`` (default: all); append them.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``labels`` names the behaviour bouts in ``/intervals``; ``config`` the bins, folds and
    permutations (:class:`RsaConfig`). The result goes to ``processing/mimic/<name>``; ``replace``
    replaces a result of that name. The inputs (units, labels, the feature sets' results) are
    checked at the append. ``progress`` is accepted for uniformity with the other stages (the
    computation takes seconds and shows none).
    """
    config = config or RsaConfig()
    with opened(session) as session:
        path, nwbfile = session.path, session.nwbfile
        intervals = (nwbfile.intervals or {}).get(labels)
        if intervals is None or len(intervals) == 0:
            raise InputError(f"{path}: no behaviour labels at intervals/{labels}; import them first")
        names = list(feature_sets) if feature_sets else available_feature_sets(nwbfile)
        sets = [read_feature_set(nwbfile, n, path) for n in names]
        t_start = max([s.times[0] for s in sets], default=0.0)
        t_stop = min([s.times[-1] for s in sets], default=0.0)
        if not sets or t_stop <= t_start:
            raise InputError(f"{path}: no feature sets to compare (run stac / simulate first)")
        neural = read_neural_data(nwbfile, path, config.bin_size, t_start, t_stop)
        bins = bin_labels(intervals, neural.bin_centers)
        if not (bins != "").any():
            raise InputError(f"{path}: the behaviour labels do not overlap the data ({t_start:.2f}-{t_stop:.2f} s)")
        activities = {}
        for region in sorted(set(neural.brain_regions)):
            columns = [i for i, r in enumerate(neural.brain_regions) if r == region]
            activities[f"{NEURAL_PREFIX}{region}"] = neural.counts[:, columns].astype(np.float64)
        for feature_set in sets:
            activities[feature_set.name] = resample_to_bins(feature_set, neural.bin_centers)
        inputs = session.object_ids(intervals, neural.origin, *{id(s.result): s.result for s in sets}.values())
        usable = np.all([np.all(np.isfinite(a), axis=1) for a in activities.values()], axis=0) & (bins != "")
        try:
            _, partitions = blocked_folds(len(bins), config.bin_size, config.chunk_duration, config.n_folds, usable)
            references = [n for n in activities if n.startswith(NEURAL_PREFIX)]
            result = compute_rdms(
                activities,
                np.where(usable, bins, ""),
                partitions,
                reference=references,
                n_permutations=config.n_permutations,
            )
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        with session.append(replace=[name] if replace else (), inputs=inputs) as s:
            s.check_new(name)
            s.add(
                similarity_to_nwb(result, name),
                parameters=dict(
                    feature_sets=names,
                    # where each set was read: a replace of any of them takes or refuses this result
                    feature_sources={f.name: f.source for f in sets},
                    labels=f"intervals/{labels}",
                    bin_size=config.bin_size,
                    n_folds=config.n_folds,
                    chunk_duration=config.chunk_duration,
                    n_permutations=config.n_permutations,
                    measure=result.measure,
                    noise=result.noise,
                    partitions_used=result.partitions,
                    bins_per_condition=dict(zip(result.conditions, result.n_bins.tolist())),
                ),
            )
    return RsaResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        result=result,
        feature_sets=tuple(names),
        labels=f"intervals/{labels}",
    )


def similarity_to_nwb(result, name="RepresentationalSimilarity"):
    """The RepresentationalSimilarity (RDMs and their comparisons) of a core result."""
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
