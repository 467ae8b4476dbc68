"""Sorted units into the core Units table: spike times per unit from arrays, SpikeInterface or phy.

Readers (no files written) return :class:`SortedUnits`, spike times in seconds on the session
clock (the ephys clock: sample 0 of the recording is the session start):

- :func:`read_spike_times`: a dict ``{unit name: spike times (s)}`` or a ``.npz`` holding one
  array per unit (key = unit name); the sampling rate of the recording is given by the caller.
- :func:`read_spikeinterface`: a SpikeInterface sorting. Only these methods are used, so any
  object that has them works and spikeinterface itself is never imported for it:
  ``get_unit_ids()``, ``get_sampling_frequency()``,
  ``get_unit_spike_train(unit_id, segment_index=i)`` (spike *samples*, divided here by the
  sampling frequency), and where present ``get_num_segments()``, ``get_property_keys()`` and
  ``get_property(key)`` (per-unit values of ``electrode_group``, ``brain_region`` or
  ``brain_area``, ``cell_type``, ``quality`` or else ``KSLabel``).
- :func:`read_phy`: a phy / Kilosort output folder: ``spike_times.npy`` (samples),
  ``spike_clusters.npy`` (or ``spike_templates.npy`` before any curation), ``params.py``
  (``sample_rate``) and the cluster labels: the curator's (``cluster_group.tsv``, else the
  ``group`` column of ``cluster_info.tsv``; a cluster without one is 'unsorted', as in phy), or
  Kilosort's ``KSLabel`` (``cluster_KSLabel.tsv`` or ``cluster_info.tsv``) when the folder has
  no curator's label at all. Only clusters whose label is in ``keep`` (default 'good' and 'mua')
  become units; the label is the unit's ``quality``. The unit name is the
  cluster id; ``cluster_info.tsv``'s ``ch`` (phy's best channel, the recording channel) is the
  row of the unit's electrode in the session's electrodes table.

Per-unit columns can also come from a *unit table* (CSV, or TSV when named ``.tsv``): a column
``unit`` naming the units plus any of ``electrode_group``, ``brain_region``, ``cell_type``,
``quality``; its non-empty values override the source's. A unit's electrode group is an
electrode group of the session, named (``drive0_tetrode_3``) or found from the phy channel;
``brain_region`` defaults to that group's location. Missing ``cell_type`` and ``quality`` are
written 'unknown'.

:func:`check_spike_times` refuses NaN, negative, decreasing (equal is allowed: the resolution is
set) or out-of-session spike times: after ``session_end`` when the caller gives it, else after
the end of the session's keypoints when it has some (a recording that outlasts the video needs
``session_end``). Units without spikes are left out and counted in the summary (a sorter may
keep an emptied unit); no unit with spikes is an error. Arrays of integers, or of whole numbers
only, are refused as sample indices. :func:`import_units` appends ``/units`` (core Units with
``spike_times``, ``electrode_group`` (omitted when no unit has one), ``unit_name``,
``brain_region``, ``cell_type``, ``quality``; ``resolution`` = 1 / sampling rate); units already
in the session are an error unless replaced.
"""

import ast
import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InputError
from ..session import opened
from .labels import keypoints_time_range

UNIT_COLUMNS = ("electrode_group", "brain_region", "cell_type", "quality")
PHY_KEEP = ("good", "mua")
PHY_LABELS = ("good", "mua", "noise", "unsorted")
# SpikeInterface property names read for each column, first found wins.
SPIKEINTERFACE_PROPERTIES = {
    "electrode_group": ("electrode_group",),
    "brain_region": ("brain_region", "brain_area"),
    "cell_type": ("cell_type",),
    "quality": ("quality", "KSLabel"),
}
COLUMN_DESCRIPTIONS = {
    "unit_name": "Name of the unit in the spike sorting output (phy: the cluster id).",
    "brain_region": "Brain region of the unit (default: the location of its electrode group, e.g. DLS or MC).",
    "cell_type": "Putative cell type of the unit ('unknown' when not classified).",
    "quality": "Sorting quality of the unit (phy/Kilosort label: 'good', 'mua'; 'unknown' when not given).",
}
# Fewer spikes than this cannot tell seconds from whole-number sample indices.
MIN_SPIKES_FOR_SAMPLE_CHECK = 10


@dataclass
class SortedUnits:
    """Sorted units ready to write: one spike-time array (s, session clock) per unit, and columns.

    ``columns`` maps each of ``UNIT_COLUMNS`` to one value per unit (None where unknown);
    ``peak_channel`` is the recording channel of each unit (phy), or None; ``skipped`` maps a
    reason (a phy label such as 'noise', or 'without spikes') to the names of the units left out.
    """

    names: list[str]
    spike_times: list[np.ndarray]
    sampling_rate: float
    layout: str
    columns: dict[str, list] = field(default_factory=dict)
    peak_channel: list[int | None] | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        for column in UNIT_COLUMNS:
            self.columns.setdefault(column, [None] * len(self.names))
        if self.peak_channel is None:
            self.peak_channel = [None] * len(self.names)

    def summary(self):
        count = sum(len(t) for t in self.spike_times)
        qualities = Counter(q or "unknown" for q in self.columns["quality"])
        regions = Counter(r or "unknown" for r in self.columns["brain_region"])
        text = (
            f"{len(self.names)} units, {count} spikes ({self.layout}, {self.sampling_rate:g} Hz); "
            f"quality {_counts(qualities)}; brain region {_counts(regions)}"
        )
        if self.skipped:
            text += "; left out: " + ", ".join(f"{len(names)} {reason}" for reason, names in self.skipped.items())
        return text

    def keep(self, indices):
        """Only the units at ``indices`` (in that order)."""
        self.names = [self.names[i] for i in indices]
        self.spike_times = [self.spike_times[i] for i in indices]
        self.columns = {key: [values[i] for i in indices] for key, values in self.columns.items()}
        self.peak_channel = [self.peak_channel[i] for i in indices]


def _counts(counter):
    return ", ".join(f"{key} {value}" for key, value in counter.most_common())


def _text(value):
    """A per-unit column value as text, None where missing (None, NaN, empty)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    value = str(value).strip()
    return value or None


def _check_rate(rate, what):
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {rate!r} is not a sampling rate in Hz") from None
    if not (np.isfinite(rate) and rate > 0):
        raise InputError(f"{what}: {rate} Hz must be a positive number")
    return rate


# ----------------------------------------------------------------------------------------------
# Readers


def read_spike_times(spike_times, sampling_rate, source=None):
    """Units from a dict ``{name: spike times in s}`` or a ``.npz`` path (one array per unit).

    ``sampling_rate`` (Hz) is the recording's; the Units resolution is its inverse.
    """
    if isinstance(spike_times, (str, Path)):
        path = Path(spike_times)
        source = source or str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such file")
        try:
            content = np.load(path, allow_pickle=False)
            if isinstance(content, np.ndarray):
                raise InputError(f"{path}: a single array; expected a .npz with one array per unit")
            with content:
                arrays = {name: content[name] for name in content.files}
        except (ValueError, OSError) as error:
            raise InputError(f"{path}: not a readable .npz of numeric arrays ({str(error)[:80]})") from None
        layout = ".npz, one array per unit"
    elif isinstance(spike_times, dict):
        source = source or "spike_times"
        arrays, layout = dict(spike_times), "arrays"
    else:
        raise InputError(f"spike_times: expected a dict of arrays or a .npz path, got {type(spike_times).__name__}")
    if not arrays:
        raise InputError(f"{source}: no units")
    if sampling_rate is None:
        raise InputError(f"{source}: give the sampling rate of the recording (sampling_rate / --sampling-rate, Hz)")
    sampling_rate = _check_rate(sampling_rate, "sampling_rate")
    names, times = [], []
    for name, values in arrays.items():
        values = np.asarray(values)
        if values.ndim > 1 and sum(d != 1 for d in values.shape) <= 1:
            values = values.ravel()  # (n, 1) or (1, n)
        if values.ndim != 1:
            raise InputError(f"{source}: unit {name!r}: spike times must be 1-D, got shape {values.shape}")
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.complexfloating):
            raise InputError(f"{source}: unit {name!r}: spike times must be numbers, got {values.dtype}")
        if np.issubdtype(values.dtype, np.integer) and values.size:
            raise InputError(
                f"{source}: unit {name!r}: integer spike times look like sample indices; give seconds "
                "(divide by the sampling rate)"
            )
        names.append(str(name))
        times.append(values.astype(np.float64))
    everything = np.concatenate(times)
    finite = everything[np.isfinite(everything)]
    if finite.size >= MIN_SPIKES_FOR_SAMPLE_CHECK and np.all(finite == np.floor(finite)):
        raise InputError(
            f"{source}: every spike time is a whole number: sample indices rather than seconds? "
            "(divide by the sampling rate)"
        )
    return SortedUnits(names=names, spike_times=times, sampling_rate=sampling_rate, layout=layout)


def read_spikeinterface(sorting, segment_index=0, source=None):
    """Units of one segment of a SpikeInterface sorting (duck-typed: see the module docstring)."""
    source = source or f"SpikeInterface sorting {type(sorting).__name__}"
    for method in ("get_unit_ids", "get_unit_spike_train", "get_sampling_frequency"):
        if not callable(getattr(sorting, method, None)):
            raise InputError(f"{source}: not a SpikeInterface sorting (no {method}())")
    rate = _check_rate(sorting.get_sampling_frequency(), f"{source}: sampling frequency")
    num_segments = sorting.get_num_segments() if callable(getattr(sorting, "get_num_segments", None)) else 1
    if not 0 <= segment_index < num_segments:
        raise InputError(f"{source}: segment_index {segment_index} is not one of its {num_segments} segment(s)")
    unit_ids = list(sorting.get_unit_ids())
    if not unit_ids:
        raise InputError(f"{source}: no units")
    times = []
    for unit_id in unit_ids:
        samples = np.asarray(sorting.get_unit_spike_train(unit_id, segment_index=segment_index))
        times.append(samples.astype(np.float64).ravel() / rate)
    keys = set(sorting.get_property_keys()) if callable(getattr(sorting, "get_property_keys", None)) else set()
    columns = {}
    for column, candidates in SPIKEINTERFACE_PROPERTIES.items():
        key = next((k for k in candidates if k in keys), None)
        if key is not None:
            values = list(sorting.get_property(key))
            if len(values) != len(unit_ids):
                raise InputError(f"{source}: property {key!r} has {len(values)} values for {len(unit_ids)} units")
            columns[column] = [_text(v) for v in values]
    layout = "SpikeInterface sorting" + (f", segment {segment_index}" if num_segments > 1 else "")
    return SortedUnits(
        names=[str(u) for u in unit_ids], spike_times=times, sampling_rate=rate, layout=layout, columns=columns
    )


def read_phy_sample_rate(folder):
    """``sample_rate`` of a phy ``params.py``, read as a literal (the file is never executed)."""
    path = Path(folder) / "params.py"
    if not path.is_file():
        raise InputError(f"{folder}: phy folder has no params.py (needed for sample_rate)")
    try:
        tree = ast.parse(path.read_text())
    except (SyntaxError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: not a readable params.py ({type(error).__name__})") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "sample_rate" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise InputError(f"{path}: sample_rate is not a number") from None
            return _check_rate(value, f"{path}: sample_rate")
    raise InputError(f"{path}: no sample_rate")


def _read_tsv(path):
    """Rows of a tab-separated phy table as dicts of stripped strings."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of a name
            rows = list(csv.DictReader(f, delimiter="\t"))
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable tab-separated phy table ({error})") from None
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]


def _phy_column(folder, filename, column, cast=str):
    """``{cluster id: value}`` of ``column`` in a phy table; {} when the file or column is absent."""
    path = Path(folder) / filename
    if not path.is_file():
        return {}
    rows = _read_tsv(path)
    if not rows:
        return {}
    id_column = "cluster_id" if "cluster_id" in rows[0] else "id" if "id" in rows[0] else None
    if id_column is None:
        raise InputError(f"{path}: no cluster_id column")
    if column not in rows[0]:
        return {}
    values = {}
    for number, row in enumerate(rows, start=2):
        if not row[column]:
            continue
        try:
            values[int(row[id_column])] = cast(row[column])
        except ValueError:
            raise InputError(
                f"{path}: line {number}: {id_column} {row[id_column]!r} or {column} {row[column]!r} is not valid"
            ) from None
    return values


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy ({str(error)[:80]})") from None


def read_phy(folder, keep=PHY_KEEP):
    """Units of a phy / Kilosort output folder: the clusters whose label is in ``keep``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such phy folder")
    keep = tuple(keep)
    unknown = [label for label in keep if label not in PHY_LABELS]
    if unknown or not keep:
        raise InputError(f"keep {', '.join(unknown) or '(empty)'}: phy labels are {', '.join(PHY_LABELS)}")
    if not (folder / "spike_times.npy").is_file():
        raise InputError(f"{folder}: phy folder has no spike_times.npy")
    rate = read_phy_sample_rate(folder)
    samples = _load_npy(folder / "spike_times.npy")
    clusters_file = folder / "spike_clusters.npy"
    if not clusters_file.is_file():
        clusters_file = folder / "spike_templates.npy"  # uncurated Kilosort output: templates are clusters
        if not clusters_file.is_file():
            raise InputError(f"{folder}: phy folder has neither spike_clusters.npy nor spike_templates.npy")
    clusters = _load_npy(clusters_file)
    if samples.ndim > 1 and samples.size == samples.shape[0]:
        samples = samples.ravel()
    if clusters.ndim > 1 and clusters.size == clusters.shape[0]:
        clusters = clusters.ravel()
    if samples.ndim != 1 or clusters.ndim != 1:
        raise InputError(f"{folder}: spike_times.npy and {clusters_file.name} must be 1-D arrays")
    if samples.shape != clusters.shape:
        raise InputError(
            f"{folder}: {clusters_file.name} has {clusters.size} entries but spike_times.npy has {samples.size}"
        )
    if not np.issubdtype(clusters.dtype, np.integer):
        raise InputError(f"{folder}: {clusters_file.name} must hold integer cluster ids, got {clusters.dtype}")
    if not np.issubdtype(samples.dtype, np.number):
        raise InputError(f"{folder}: spike_times.npy must hold sample numbers, got {samples.dtype}")
    # A curator's labels, where any exist, are the labels (unlabelled clusters are 'unsorted', as
    # in phy); Kilosort's automatic KSLabel is used only for an uncurated folder.
    labels = _phy_column(folder, "cluster_info.tsv", "group")
    labels.update(_phy_column(folder, "cluster_group.tsv", "group"))
    source = "phy labels"
    if not labels:
        labels = _phy_column(folder, "cluster_KSLabel.tsv", "KSLabel")
        labels.update(_phy_column(folder, "cluster_info.tsv", "KSLabel"))
        source = "Kilosort KSLabel"
    channels = _phy_column(folder, "cluster_info.tsv", "ch", cast=int)

    # A stable sort keeps each cluster's spikes in file order, so the order check still sees them.
    order = np.argsort(clusters, kind="stable")
    ids, starts = np.unique(clusters[order], return_index=True)
    per_cluster = np.split(samples[order].astype(np.float64) / rate, starts[1:])
    names, times, quality, peak, skipped = [], [], [], [], {}
    for cluster_id, spikes in zip(ids.tolist(), per_cluster):
        label = labels.get(cluster_id, "unsorted")
        if label not in keep:
            skipped.setdefault(label, []).append(str(cluster_id))
            continue
        names.append(str(cluster_id))
        times.append(spikes)
        quality.append(label)
        peak.append(channels.get(cluster_id))
    if not names:
        found = ", ".join(f"{len(v)} {k}" for k, v in skipped.items())
        raise InputError(f"{folder}: no cluster labelled {' or '.join(keep)} (found {found or 'no clusters'})")
    return SortedUnits(
        names=names,
        spike_times=times,
        sampling_rate=rate,
        layout=f"phy folder, kept {'+'.join(keep)} by {source}",
        columns={"quality": quality},
        peak_channel=peak,
        skipped=skipped,
    )


def read_unit_table(table, source=None):
    """``{unit name: {column: value}}`` from a CSV/TSV path or a mapping of that shape."""
    if isinstance(table, dict):
        source, rows = source or "unit_table", [{"unit": name, **values} for name, values in table.items()]
    else:
        path = Path(table)
        source = source or str(path)
        if not path.is_file():
            raise InputError(f"{path}: no such unit table")
        try:
            # utf-8-sig: spreadsheet programs save CSV with a byte-order mark, which would otherwise
            # become part of the first column's name ("\ufeffunit").
            with open(path, newline="", encoding="utf-8-sig") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if path.suffix in (".tsv", ".tab") else ","))
        except (UnicodeDecodeError, csv.Error) as error:
            raise InputError(f"{path}: not a readable CSV/TSV table ({error})") from None
        if not rows:
            raise InputError(f"{path}: unit table is empty")
    columns = set().union(*(row.keys() for row in rows))
    if "unit" not in columns:
        raise InputError(f"{source}: unit table has no 'unit' column")
    unknown = sorted(str(c) for c in columns - {"unit", *UNIT_COLUMNS})
    if unknown:
        known = ", ".join(("unit", *UNIT_COLUMNS))
        raise InputError(f"{source}: unknown unit table column(s) {', '.join(unknown)} (known: {known})")
    values = {}
    for row in rows:
        name = _text(row.get("unit"))
        if name is None:
            raise InputError(f"{source}: a row has no unit name")
        if name in values:
            raise InputError(f"{source}: unit {name!r} appears twice")
        values[name] = {k: _text(v) for k, v in row.items() if k != "unit" and _text(v) is not None}
    return values


def apply_unit_table(units, table, source="unit_table"):
    """Override the units' columns with the non-empty values of a unit table (see read_unit_table)."""
    strangers = sorted(set(table) - set(units.names))
    if strangers:
        raise InputError(f"{source}: unit(s) {', '.join(strangers[:5])} are not in the sorting")
    for index, name in enumerate(units.names):
        for column, value in table.get(name, {}).items():
            units.columns[column][index] = value
    return units


# ----------------------------------------------------------------------------------------------
# Checks


def check_spike_times(units, source, end=None, end_name=None):
    """Refuse bad spike times (one line naming the unit); leave out units without spikes.

    Times must be finite, >= 0 (the session start), strictly increasing within a unit (no
    duplicates) and, when ``end`` (s) is given, not after it (``end_name`` says in errors what
    that end is).
    """
    empty = [i for i, t in enumerate(units.spike_times) if t.size == 0]
    if empty:
        units.skipped.setdefault("without spikes", []).extend(units.names[i] for i in empty)
        units.keep([i for i in range(len(units.names)) if i not in set(empty)])
    if not units.names:
        raise InputError(f"{source}: no unit has spikes")
    for name, times in zip(units.names, units.spike_times):
        if not np.all(np.isfinite(times)):
            raise InputError(f"{source}: unit {name!r}: spike times contain NaN or infinite values")
        if times[0] < 0:
            raise InputError(f"{source}: unit {name!r}: negative spike time {times[0]:g} s (before the session start)")
        steps = np.diff(times)
        if np.any(steps < 0):
            i = int(np.argmax(steps < 0)) + 1
            raise InputError(
                f"{source}: unit {name!r}: spike times not sorted "
                f"(spike {i} at {times[i]:g} s comes after {times[i - 1]:g} s)"
            )
        # A unit fires at most once at a time: a repeated time is a sorter or export error
        # (e.g. a spike counted twice after merging clusters), and would double-count in rates.
        repeated = int(np.sum(steps == 0))
        if repeated:
            first = times[1:][steps == 0][0]
            raise InputError(
                f"{source}: unit {name!r}: {repeated} duplicate spike time(s) (first at {first:g} s); "
                "remove the duplicates before importing"
            )
        if end is not None and times[-1] > end:
            what = end_name or f"the session end, {end:g} s"
            raise InputError(f"{source}: unit {name!r}: spike at {times[-1]:g} s is after {what}")
    return units


# ----------------------------------------------------------------------------------------------
# NWB adapter


def read_units(source, sampling_rate=None, keep=None, segment_index=0):
    """SortedUnits from any supported source (dict, .npz, phy folder, SpikeInterface sorting)."""
    path = Path(source) if isinstance(source, (str, Path)) else None
    is_phy = path is not None and path.is_dir() and any((path / f).exists() for f in ("spike_times.npy", "params.py"))
    if keep is not None and not is_phy:
        raise InputError("keep: selects the labels of phy clusters; filter other sources before importing")
    if sampling_rate is not None and (is_phy or callable(getattr(source, "get_unit_ids", None))):
        raise InputError(f"{path or 'sorting'}: brings its own sampling rate (phy: params.py); do not pass one")
    if is_phy:
        return read_phy(path, keep=PHY_KEEP if keep is None else keep)
    if callable(getattr(source, "get_unit_ids", None)):
        return read_spikeinterface(source, segment_index=segment_index)
    if isinstance(source, dict):
        return read_spike_times(source, sampling_rate)
    if path is None:
        kind = type(source).__name__
        raise InputError(f"source: expected a path, a dict of arrays or a SpikeInterface sorting, got {kind}")
    if path.is_dir():
        return read_spikeinterface(load_spikeinterface_folder(path), segment_index=segment_index, source=str(path))
    if path.suffix == ".npz":
        return read_spike_times(path, sampling_rate)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    raise InputError(f"{path}: unknown spike source; give a .npz, a phy folder or a SpikeInterface sorting folder")


def load_spikeinterface_folder(path):
    """A sorting saved by SpikeInterface (``sorting.save(folder=...)``); needs spikeinterface."""
    try:
        import spikeinterface
    except ImportError:
        raise InputError(
            f"{path}: not a phy folder (no spike_times.npy); reading it as a saved SpikeInterface sorting "
            "needs spikeinterface (pip install spikeinterface)"
        ) from None
    load = getattr(spikeinterface, "load", None) or spikeinterface.load_extractor  # 0.102+ / older
    try:
        return load(path)
    except Exception as error:  # spikeinterface raises many kinds on a folder it cannot read
        problem = f"{type(error).__name__}: {str(error).splitlines()[0][:80] if str(error) else ''}"
        raise InputError(f"{path}: not a readable SpikeInterface sorting ({problem})") from None


def _assign_electrode_groups(units, nwbfile, source):
    """Electrode group objects per unit (from names or phy channels) and default brain regions."""
    groups = nwbfile.electrode_groups
    electrodes = nwbfile.electrodes
    resolved = []
    for index, name in enumerate(units.names):
        group_name = units.columns["electrode_group"][index]
        channel = units.peak_channel[index]
        if group_name is not None:
            if group_name not in groups:
                known = ", ".join(list(groups)[:4]) + (", ..." if len(groups) > 4 else "")
                have = f"groups: {known}" if groups else "no electrode groups; create the session with its drives"
                raise InputError(
                    f"{source}: unit {name!r}: electrode group {group_name!r} is not in the session ({have})"
                )
            group = groups[group_name]
        elif channel is not None:
            count = 0 if electrodes is None else len(electrodes)
            if not 0 <= channel < count:
                raise InputError(
                    f"{source}: unit {name!r}: channel {channel} is not an electrode of the session "
                    f"({count} electrodes)"
                )
            group = electrodes["group"][channel]
        else:
            group = None
        resolved.append(group)
        if group is not None and units.columns["brain_region"][index] is None:
            units.columns["brain_region"][index] = group.location
    without_group = [n for n, g in zip(units.names, resolved) if g is None]
    if without_group and len(without_group) < len(units.names):
        listed = ", ".join(without_group[:5])
        raise InputError(f"{source}: unit(s) {listed} have no electrode group (give one for every unit or none)")
    without_region = [n for n, r in zip(units.names, units.columns["brain_region"]) if r is None]
    if without_region:
        raise InputError(
            f"{source}: unit(s) {', '.join(without_region[:5])} have neither brain_region nor electrode_group "
            "(give them in a unit table)"
        )
    return resolved if not without_group else None


def units_to_nwb(units, groups=None, description=None):
    """A core Units table of ``units``; ``groups`` is one ElectrodeGroup per unit, or None."""
    from pynwb.misc import Units

    table = Units(
        name="units",
        description=description or f"Sorted units ({units.layout}); spike times in seconds on the session clock.",
        resolution=1.0 / units.sampling_rate,
    )
    table.add_column(name="unit_name", description=COLUMN_DESCRIPTIONS["unit_name"])
    for column in ("brain_region", "cell_type", "quality"):
        table.add_column(name=column, description=COLUMN_DESCRIPTIONS[column])
    for index, name in enumerate(units.names):
        row = dict(
            spike_times=units.spike_times[index],
            unit_name=name,
            brain_region=units.columns["brain_region"][index],
            cell_type=units.columns["cell_type"][index] or "unknown",
            quality=units.columns["quality"][index] or "unknown",
        )
        if groups is not None:
            row["electrode_group"] = groups[index]
        table.add_unit(**row)
    return table


@dataclass(frozen=True)
class UnitImportConfig:
    """How to read a spike source (see :func:`import_units`).

    ``sampling_rate`` (Hz) is the recording's, needed for spike-time arrays only (phy and
    SpikeInterface bring their own); ``unit_table`` a CSV/TSV path or a mapping ``{unit: {column:
    value}}`` of per-unit columns; ``keep`` the phy labels to import (default 'good', 'mua');
    ``segment_index`` the segment of a multi-segment SpikeInterface sorting; ``session_end`` (s)
    the end of the recording: no spike may come after it (default: the end of the session's
    keypoints, when it has some).
    """

    sampling_rate: float | None = None
    unit_table: object = field(default=None, compare=False)
    keep: tuple[str, ...] | None = None
    segment_index: int = 0
    session_end: float | None = None

    def __post_init__(self):
        # Numbers and labels are checked at the door, before any file is read.
        if self.sampling_rate is not None:
            try:
                rate = float(self.sampling_rate)
            except (TypeError, ValueError):
                raise ValueError(f"sampling_rate: {self.sampling_rate!r} is not a sampling rate in Hz") from None
            if not (np.isfinite(rate) and rate > 0):
                raise ValueError(f"sampling_rate: {rate} Hz must be a positive number")
            object.__setattr__(self, "sampling_rate", rate)
        if self.keep is not None:
            keep = (self.keep,) if isinstance(self.keep, str) else tuple(self.keep)
            unknown = [label for label in keep if label not in PHY_LABELS]
            if unknown or not keep:
                raise ValueError(f"keep {', '.join(unknown) or '(empty)'}: phy labels are {', '.join(PHY_LABELS)}")
            object.__setattr__(self, "keep", keep)
        index = self.segment_index
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
            raise ValueError(f"segment_index: {index!r} must be an integer >= 0")
        if self.session_end is not None:
            try:
                end = float(self.session_end)
            except (TypeError, ValueError):
                raise ValueError(f"session_end: {self.session_end!r} is not a number of seconds") from None
            if not (np.isfinite(end) and end > 0):
                raise ValueError(f"session_end: {self.session_end!r} must be a finite positive number of seconds")
            object.__setattr__(self, "session_end", end)


@dataclass(frozen=True, eq=False)
class UnitImportResult:
    """What :func:`import_units` appended: ``name`` is ``"units"`` (the core Units table) and
    ``units`` the units as written (spike times in s on the session clock, per-unit columns, and
    the units left out, by reason)."""

    path: Path
    name: str
    units: SortedUnits

    def summary(self):
        """One line: units, spikes, source, qualities, brain regions, units left out."""
        return f"{self.path}: {self.name}: {self.units.summary()}"


def import_units(session, source, config: UnitImportConfig | None = None, *, replace=False) -> UnitImportResult:
    """Append sorted units to a session as ``/units``.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path. ``source``: a dict ``{unit: spike times (s)}``, a ``.npz`` (one array per unit), a phy
    folder, a SpikeInterface sorting (or a folder it saved); ``config`` says how to read it
    (:class:`UnitImportConfig`). Spike times must not be after ``config.session_end`` (s);
    without it, not after the end of the session's keypoints when it has some (a recording
    longer than the video needs ``session_end``). The Units table has no name to choose (an NWB
    file has one); ``replace`` replaces units already in the session. Returns a
    :class:`UnitImportResult`.
    """
    config = config or UnitImportConfig()
    units = read_units(source, sampling_rate=config.sampling_rate, keep=config.keep, segment_index=config.segment_index)
    source_name = str(source) if isinstance(source, (str, Path)) else units.layout
    if config.unit_table is not None:
        table_name = "unit_table" if isinstance(config.unit_table, dict) else str(config.unit_table)
        apply_unit_table(units, read_unit_table(config.unit_table), source=table_name)
    check_spike_times(units, source_name, end=config.session_end)  # before the session is copied
    with opened(session) as session, session.append(replace=["units"] if replace else ()) as s:
        s.check_new("units", module=None)
        # Read in the working copy, under the lock: the keypoints the check uses are the file's.
        if config.session_end is None and (span := keypoints_time_range(s.nwbfile)) is not None:
            end_name = f"the end of the keypoints, {span[1]:g} s (a longer recording needs session_end / --session-end)"
            check_spike_times(units, source_name, end=span[1], end_name=end_name)
        groups = _assign_electrode_groups(units, s.nwbfile, source_name)
        origin = f" from {Path(source_name).name}" if isinstance(source, (str, Path)) else ""
        description = (
            f"Sorted units ({units.layout}{origin}), imported by mimic_nwb {__version__}; "
            "spike times in seconds on the session clock."
        )
        s.nwbfile.units = units_to_nwb(units, groups, description=description)
        path = session.path
    return UnitImportResult(path=path, name="units", units=units)
