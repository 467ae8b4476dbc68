"""Encoding models on a session: units (spike times or binned counts) x feature sets, appended.

``encode(session)`` bins the neural data (or takes the session's BinnedSpikeCounts), resamples
every requested feature set onto the bins, fits the cross-validated Poisson GLMs of
:mod:`mimic_nwb.encoding.core`, takes their significance from the core (Benjamini-Hochberg
q-values per brain region over all units x feature sets, `EncodingResult.significance`), and
appends an EncodingResults table with each row's convergence flag. It returns an
:class:`EncodeResult`.
"""

from dataclasses import dataclass
from dataclasses import replace as replace_fields
from pathlib import Path

import numpy as np
import pandas as pd
from hdmf.common import DynamicTableRegion, VectorData, VectorIndex

import ndx_mimic
from ndx_mimic import BinnedSpikeCounts

from ..errors import InputError
from ..features import available_feature_sets, read_feature_set, resample_to_bins
from ..session import RESULTS_MODULE, find_result, find_results, opened
from .binning import bin_centers, bin_spike_times
from .core import EncodingConfig, EncodingResult, fit_encoding_models


@dataclass
class NeuralData:
    """Spike counts on regular bins, with what is known about each unit.

    ``origin`` is the object the counts were read from (the Units table or a BinnedSpikeCounts):
    a stage passes its ``object_id`` to the append as an input.
    """

    counts: np.ndarray  # (n_bins, n_units)
    bin_centers: np.ndarray  # (n_bins,) seconds
    unit_names: list[str]
    brain_regions: list[str]
    source: str  # "units" or the BinnedSpikeCounts name
    unit_index: np.ndarray  # row of Units, or column of the counts, per unit
    origin: object = None


def _units_regions(units):
    if "brain_region" in units.colnames:
        return [str(r) for r in units["brain_region"][:]]
    if "electrode_group" in units.colnames:
        return [g.location for g in units["electrode_group"][:]]
    return ["unknown"] * len(units)


def read_neural_data(nwbfile, path, bin_size, t_start, t_stop, counts_name=None):
    """Counts on bins of ``bin_size`` (s) over [t_start, t_stop) s from Units, or from binned counts.

    The BinnedSpikeCounts named ``counts_name`` is used when given; without it, the Units table,
    or, in a session without units, its only BinnedSpikeCounts (several: an error naming them).
    """
    binned = find_results(nwbfile, BinnedSpikeCounts, RESULTS_MODULE)
    if counts_name is not None or (nwbfile.units is None and binned):
        series = find_result(nwbfile, BinnedSpikeCounts, counts_name, RESULTS_MODULE, path=path)
        if abs(series.bin_size - bin_size) > 1e-9:
            raise InputError(f"{path}: {series.name} has {series.bin_size} s bins; run with bin_size {series.bin_size}")
        centers = series.get_timestamps() + series.bin_size / 2
        keep = np.ones(len(series.column_names), dtype=bool)
        if series.active is not None:
            keep = np.asarray(series.active[:], dtype=bool)
        columns = np.flatnonzero(keep)
        names = [str(series.column_names[i]) for i in columns]
        regions = (
            [str(series.brain_region[i]) for i in columns]
            if series.brain_region is not None
            else ["unknown"] * len(columns)
        )
        inside = (centers >= t_start) & (centers < t_stop)
        counts = np.asarray(series.data[:])[inside][:, columns]
        return NeuralData(counts, centers[inside], names, regions, series.name, columns, series)
    if nwbfile.units is None or len(nwbfile.units) == 0:
        raise InputError(f"{path}: no units and no BinnedSpikeCounts; import units first (mimic-nwb import-units)")
    units = nwbfile.units
    spike_times = [np.asarray(units.get_unit_spike_times(i)) for i in range(len(units))]
    names = [str(n) for n in units["unit_name"][:]] if "unit_name" in units.colnames else [str(i) for i in units.id[:]]
    counts = bin_spike_times(spike_times, t_start, t_stop, bin_size)
    return NeuralData(
        counts,
        bin_centers(t_start, t_stop, bin_size),
        names,
        _units_regions(units),
        "units",
        np.arange(len(units)),
        units,
    )


def _progress_bar(enabled):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(desc="encoding fits", unit="fit", leave=False)

    def progress(done, total, description):
        bar.total = total
        bar.update(done - bar.n)

    return progress, bar.close


def _check_q_threshold(q_threshold):
    if (
        isinstance(q_threshold, bool)
        or not isinstance(q_threshold, int | float | np.integer | np.floating)
        or not (np.isfinite(q_threshold) and 0 < q_threshold <= 1)
    ):
        raise InputError(f"q_threshold: {q_threshold!r} must be a number in (0, 1]")


@dataclass(frozen=True, eq=False)
class EncodeResult:
    """What :func:`encode` appended and computed.

    ``path`` is the session file, ``name`` the table's path (``processing/mimic/<name>``);
    ``result`` the core's :class:`~mimic_nwb.encoding.core.EncodingResult` (every unit x feature
    set x lag); ``best`` the tidy best-lag table (one row per unit x feature set: ``cv_llr`` in
    bits/spike, ``lag`` s, ``p_value``, BH ``q_value`` within the ``brain_region``,
    ``significant``); ``feature_sets`` the names fitted; ``t_start``/``t_stop`` the time range
    fitted (s); ``neural_data`` ``"units"`` or the BinnedSpikeCounts used.
    """

    path: Path
    name: str
    result: EncodingResult
    best: pd.DataFrame
    feature_sets: tuple[str, ...]
    t_start: float
    t_stop: float
    neural_data: str

    @property
    def not_converged(self) -> int:
        """Number of unit x feature set x lag fits that did not converge in every fold."""
        return int((~self.result.converged).sum())

    def summary(self):
        """One line: the table, its size, the significant pairs, the best feature set per unit."""
        share = self.best.groupby("unit")["cv_llr"].idxmax()
        winners = self.best.loc[share, "feature_set"].value_counts().to_dict()
        text = (
            f"{self.path}: {self.name}: {len(self.result.unit_names)} units x {len(self.feature_sets)} feature sets x "
            f"{len(self.result.lags)} lags; significant unit x feature-set pairs: {int(self.best['significant'].sum())}; "
            f"best feature set per unit: {winners}"
        )
        if self.not_converged:
            text += f"; {self.not_converged} fit(s) did not converge (rows flagged converged=False)"
        return text


def encode(
    session,
    feature_sets=None,
    config: EncodingConfig | None = None,
    *,
    counts=None,
    q_threshold=0.05,
    name="EncodingResults",
    replace=False,
    progress=False,
) -> EncodeResult:
    """Fit encoding models of every unit on ``feature_sets`` (default: all available); append them.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path. The neural data are the Units table, or the BinnedSpikeCounts named ``counts`` (used
    too, without a name, in a session that has no units and one BinnedSpikeCounts). A unit x
    feature set is significant when its q-value (Benjamini-Hochberg within the unit's brain
    region) is below ``q_threshold``. The table goes to ``processing/mimic/<name>``; ``replace``
    replaces a result of that name. The inputs (feature sets' results, units or counts) are
    checked at the append: a result is never linked to an input replaced meanwhile.
    """
    config = config or EncodingConfig()
    _check_q_threshold(q_threshold)
    with opened(session) as session:
        path, nwbfile = session.path, session.nwbfile
        names = list(feature_sets) if feature_sets else available_feature_sets(nwbfile)
        if not names:
            raise InputError(f"{path}: no feature sets (run stac / simulate first)")
        # Each set's values in float32 as soon as it is read (half the memory of a long session's
        # features; the fits form their designs in float64): the float64 values of one set at a
        # time, not of them all.
        sets = []
        for n in names:
            feature_set = read_feature_set(nwbfile, n, path)
            sets.append(replace_fields(feature_set, values=feature_set.values.astype(np.float32)))
            del feature_set
        t_start = max(s.times[0] for s in sets)
        t_stop = min(s.times[-1] for s in sets)
        if not t_stop - t_start >= config.n_folds * config.chunk_duration:
            raise InputError(
                f"{path}: the feature sets overlap on {max(t_stop - t_start, 0):.1f} s, less than "
                f"{config.n_folds} folds x {config.chunk_duration} s chunks"
            )
        neural = read_neural_data(nwbfile, path, config.bin_size, t_start, t_stop, counts)
        # float64 once: the fits use these counts as they are (no second copy of all of them)
        neural = replace_fields(neural, counts=np.asarray(neural.counts, dtype=np.float64))
        if neural.counts.shape[0] == 0:
            raise InputError(f"{path}: the neural data do not overlap the features ({t_start:.2f}-{t_stop:.2f} s)")
        silent = [n for n, c in zip(neural.unit_names, neural.counts.sum(axis=0)) if c == 0]
        if silent:
            raise InputError(f"{path}: units without spikes in {t_start:.2f}-{t_stop:.2f} s: {', '.join(silent)}")
        # Each set on the bins, in float32, its values as read dropped at once.
        matrices = {}
        for i, feature_set in enumerate(sets):
            matrices[feature_set.name] = resample_to_bins(feature_set, neural.bin_centers, dtype=np.float32)
            sets[i] = replace_fields(feature_set, values=None)
        del feature_set  # the loop's name would keep the last set's values
        inputs = session.object_ids(neural.origin, *{id(s.result): s.result for s in sets}.values())
        report, close = _progress_bar(progress)
        try:
            result = fit_encoding_models(neural.counts, matrices, config, unit_names=neural.unit_names, progress=report)
        except ValueError as error:
            raise InputError(f"{path}: {error}") from None
        finally:
            close()
        regions = dict(zip(neural.unit_names, neural.brain_regions))
        best = result.significance(q_threshold, families=regions).rename(columns={"family": "brain_region"})

        with session.append(replace=[name] if replace else (), inputs=inputs) as s:
            s.check_new(name)
            # the working copy's objects, checked to be the ones read (never looked up again by name)
            origin = s.input("units" if neural.source == "units" else f"{RESULTS_MODULE}/{neural.source}")
            table = results_table(result, neural, best, q_threshold, name, origin)
            s.add(
                table,
                parameters={
                    **vars(config),
                    "feature_sets": names,
                    # where each set was read: a replace of any of them takes or refuses this result
                    "feature_sources": {f.name: f.source for f in sets},
                    "t_start": t_start,
                    "t_stop": t_stop,
                    "q_threshold": q_threshold,
                    "neural_data": neural.source,
                },
            )
    return EncodeResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        result=result,
        best=best,
        feature_sets=tuple(names),
        t_start=float(t_start),
        t_stop=float(t_stop),
        neural_data=neural.source,
    )


def results_table(result, neural, best, q_threshold, name, origin):
    """The EncodingResults table (one row per unit x feature set x lag) of a fit.

    ``origin`` is the neural data's object in the file being written: the Units table the
    ``unit`` column refers to, or the BinnedSpikeCounts the table links.
    """
    table = result.to_dataframe()
    key = best.set_index(["unit", "feature_set"])
    pair = list(zip(table["unit"], table["feature_set"]))
    q_values = key.loc[pair, "q_value"].to_numpy()
    significant = key.loc[pair, "significant"].to_numpy(dtype=bool)  # decided by the core
    region_of = dict(zip(neural.unit_names, neural.brain_regions))
    unit_row = dict(zip(neural.unit_names, neural.unit_index))
    rows = np.array([unit_row[u] for u in table["unit"]])
    columns = [
        VectorData(
            name="brain_region", description="Brain region of the unit.", data=[region_of[u] for u in table["unit"]]
        ),
        VectorData(name="feature_set", description="Feature set.", data=list(table["feature_set"])),
        VectorData(name="lag", description="Lag, s (negative: premotor).", data=table["lag"].to_numpy()),
        VectorData(name="cv_llr", description="CV log-likelihood ratio, bits/spike.", data=table["cv_llr"].to_numpy()),
        VectorData(name="pseudo_r2", description="CV deviance pseudo-R^2.", data=table["pseudo_r2"].to_numpy()),
        VectorData(name="p_value", description="Wilcoxon p over held-out chunks.", data=table["p_value"].to_numpy()),
        VectorData(
            name="q_value",
            description="BH q-value of the unit x feature set (best lag, Bonferroni over lags) within its region.",
            data=q_values,
        ),
        VectorData(name="significant", description=f"q_value < {q_threshold}.", data=significant),
        VectorData(
            name="converged",
            description="Whether the solver converged in every fold of this row's fit.",
            data=table["converged"].to_numpy(dtype=bool),
        ),
    ]
    links = {}
    if neural.source == "units":
        columns.insert(0, DynamicTableRegion(name="unit", description="The unit.", data=rows, table=origin))
    else:
        columns.insert(
            0, VectorData(name="count_column", description="Column of the counts.", data=rows.astype("int32"))
        )
        links["spike_counts"] = origin
    if result.coefficients is not None:
        # Mean over folds, intercept first, per unit x feature set x lag (ragged: sets differ in width).
        flat, index = [], []
        for s, lag, u in zip(table["feature_set"], table["lag"], table["unit"]):
            coefficients = result.coefficients[s][list(result.lags).index(lag), :, :, neural.unit_names.index(u)]
            flat.extend(coefficients.mean(axis=0))
            index.append(len(flat))
        data = VectorData(name="coefficients", description="Fold-mean coefficients, intercept first.", data=flat)
        columns += [data, VectorIndex(name="coefficients_index", data=index, target=data)]
    config = result.config
    return ndx_mimic.EncodingResults(
        name=name,
        description="Cross-validated Poisson GLM encoding models (mimic_nwb.encoding).",
        columns=columns,
        bin_size=config.bin_size,
        num_folds=config.n_folds,
        chunk_duration=config.chunk_duration,
        model="poisson_glm",
        regularization="none" if config.alpha == 0 else ("l2" if config.l1_wt == 0 else "elastic_net"),
        alpha=config.alpha,
        l1_ratio=config.l1_wt,
        pca_variance=config.pca_variance if config.pca_variance is not None else 1.0,
        **links,
    )
