"""Behaviour labels into ``intervals/behavior_labels``: bouts from a table or from per-frame labels.

Readers (no files written) return :class:`Bouts`, times in seconds on the session clock:

- :func:`read_bouts_table`: a CSV (TSV when named ``.tsv``) with columns ``start`` and ``stop``
  (or ``start_time`` and ``stop_time``), ``label`` and optionally ``cluster_id``; one bout a row.
- :func:`bouts_from_frames`: one label per video frame (and optionally one behaviour-cluster id
  per frame) run-length encoded into bouts: a bout runs while neither the label nor the cluster
  id changes, from its first frame's time to the next frame's time (the last frame lasts one
  frame period). Frames labelled '' are unlabelled and belong to no bout. Per-frame labels come
  as an array, a ``.npy`` of labels, or a ``.npz`` with ``labels`` and optionally ``cluster_ids``
  and ``timestamps``; frame times come from ``rate`` (+ ``starting_time``), ``timestamps``, or
  else the session's keypoints (when it has one PoseEstimation with as many frames).

:func:`check_bouts` refuses bouts whose stop is not after their start, unsorted or overlapping
bouts, and bouts outside the session: after ``session_end`` when the caller gives it, else
outside the time range of the session's keypoints when it has some. :func:`import_labels`
writes a TimeIntervals with columns ``label`` and (when the source has cluster ids) ``cluster_id``.
"""

import csv
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ndx_pose import PoseEstimation

from .. import __version__
from ..errors import InputError
from ..session import find_results, opened

TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".txt")
FRAME_SUFFIXES = (".npy", ".npz")
# Round-off allowed when comparing bout times with the session's range (s).
TIME_TOLERANCE = 1e-6


@dataclass
class Bouts:
    """Behaviour bouts: ``start``/``stop`` (B,) seconds, ``label`` (B,) text, ``cluster_id`` (B,) or None."""

    start: np.ndarray
    stop: np.ndarray
    label: list[str]
    cluster_id: np.ndarray | None
    layout: str

    def summary(self):
        durations = Counter()
        for label, start, stop in zip(self.label, self.start, self.stop):
            durations[label] += stop - start
        total = sum(durations.values())
        shares = ", ".join(f"{label} {100 * d / total:.0f} %" for label, d in durations.most_common(4))
        return (
            f"{len(self.label)} bouts of {len(durations)} labels ({self.layout}), "
            f"{self.start[0]:g}-{self.stop[-1]:g} s; time in {shares}"
        )


# ----------------------------------------------------------------------------------------------
# Session clock


def _pose_estimations(nwbfile):
    """Every ndx-pose PoseEstimation of the session, in any processing module."""
    return [pose for module in nwbfile.processing for pose in find_results(nwbfile, PoseEstimation, module).values()]


def _frame_times_and_period(pose):
    series = next(iter(pose.pose_estimation_series.values()))
    times = np.asarray(series.get_timestamps(), dtype=np.float64)
    if series.rate is not None:
        period = 1.0 / series.rate
    else:
        period = float(np.median(np.diff(times))) if times.size > 1 else 0.0
    return times, period


def keypoints_frame_times(nwbfile):
    """``(times (N,), period)`` of the session's only PoseEstimation, else None."""
    poses = _pose_estimations(nwbfile)
    return _frame_times_and_period(poses[0]) if len(poses) == 1 else None


def keypoints_time_range(nwbfile):
    """``(start, end)`` in s covered by the session's keypoints (first frame to last frame + one period), or None."""
    spans = []
    for pose in _pose_estimations(nwbfile):
        times, period = _frame_times_and_period(pose)
        if times.size:
            spans.append((times[0], times[-1] + period))
    if not spans:
        return None
    return min(s for s, _ in spans), max(e for _, e in spans)


# ----------------------------------------------------------------------------------------------
# Readers


def _number(value, what):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {value!r} is not a number") from None
    if not np.isfinite(number):
        raise InputError(f"{what}: {value!r} is not a finite number")
    return number


def read_bouts_table(path):
    """Bouts of a CSV/TSV table (columns start/stop or start_time/stop_time, label[, cluster_id])."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labels file")
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the first column's name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, delimiter="\t" if path.suffix in (".tsv", ".tab") else ",")
            rows = list(reader)
            header = [name.strip() for name in reader.fieldnames or []]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV/TSV table ({error})") from None
    if not header:
        raise InputError(f"{path}: empty file (expected a header start,stop,label[,cluster_id] and one bout a row)")
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in rows]
    start_column = next((c for c in ("start_time", "start") if c in header), None)
    stop_column = next((c for c in ("stop_time", "stop") if c in header), None)
    found = {"start (or start_time)": start_column, "stop (or stop_time)": stop_column, "label": "label" in header}
    missing = [name for name, present in found.items() if not present]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(header)})")
    if not rows:
        raise InputError(f"{path}: no bouts (only a header)")
    start, stop, label, cluster = [], [], [], []
    has_clusters = "cluster_id" in header and any(row.get("cluster_id") for row in rows)
    for line, row in enumerate(rows, start=2):
        start.append(_number(row.get(start_column), f"{path}: line {line}: {start_column}"))
        stop.append(_number(row.get(stop_column), f"{path}: line {line}: {stop_column}"))
        if not row.get("label"):
            raise InputError(f"{path}: line {line}: empty label")
        label.append(row["label"])
        if has_clusters:
            try:
                cluster.append(int(row.get("cluster_id") or ""))
            except ValueError:
                value = row.get("cluster_id")
                raise InputError(f"{path}: line {line}: cluster_id {value!r} is not an integer") from None
    return Bouts(
        start=np.asarray(start),
        stop=np.asarray(stop),
        label=label,
        cluster_id=np.asarray(cluster, dtype=np.int64) if has_clusters else None,
        layout=f"table {path.name}",
    )


def read_frame_labels(path):
    """``(labels (N,), cluster_ids (N,) or None, timestamps (N,) or None)`` of a ``.npy`` or ``.npz``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such labels file")
    try:
        content = np.load(path, allow_pickle=False)
        if isinstance(content, np.ndarray):
            return content, None, None
        with content:
            if "labels" not in content.files:
                raise InputError(f"{path}: no 'labels' array (found: {', '.join(content.files) or 'none'})")
            optional = [content[key] if key in content.files else None for key in ("cluster_ids", "timestamps")]
            return content["labels"], *optional
    except ValueError as error:
        raise InputError(f"{path}: not readable without pickle; save labels as strings ({str(error)[:60]})") from None
    except OSError as error:
        raise InputError(f"{path}: not a readable .npy/.npz ({str(error)[:80]})") from None


def frame_times(num_frames, rate=None, timestamps=None, starting_time=0.0, source="labels"):
    """``(times (N,), period)`` of N frames from a regular ``rate`` (Hz) or per-frame ``timestamps`` (s)."""
    if rate is not None and timestamps is not None:
        raise InputError(f"{source}: give a frame rate or timestamps, not both")
    if timestamps is not None:
        times = np.asarray(timestamps, dtype=np.float64).ravel()
        if times.size != num_frames:
            raise InputError(f"{source}: {num_frames} frame labels but {times.size} timestamps")
        if not np.all(np.isfinite(times)):
            raise InputError(f"{source}: timestamps contain NaN or infinite values")
        if np.any(np.diff(times) <= 0):
            first = int(np.argmax(np.diff(times) <= 0))
            raise InputError(
                f"{source}: timestamps not strictly increasing (frame {first + 1} is not after frame {first})"
            )
        period = float(np.median(np.diff(times))) if times.size > 1 else 0.0
        return times, period
    if rate is None:
        raise InputError(f"{source}: give the frame rate (--rate) or per-frame timestamps (--timestamps)")
    rate = _number(rate, "rate")
    if rate <= 0:
        raise InputError(f"rate: {rate} Hz must be positive")
    starting_time = _number(starting_time, "starting_time")
    return starting_time + np.arange(num_frames) / rate, 1.0 / rate


def bouts_from_frames(labels, times, period, cluster_ids=None, source="labels"):
    """Run-length encode per-frame ``labels`` (N,) at frame ``times`` (N,) into Bouts ('' = unlabelled)."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"{source}: labels must be 1-D (one per frame), got shape {labels.shape}")
    if labels.size == 0:
        raise InputError(f"{source}: no frame labels")
    if labels.dtype.kind == "f":
        raise InputError(f"{source}: labels are floating-point numbers; give text labels (and cluster ids as integers)")
    labels = labels.astype(str)
    times = np.asarray(times, dtype=np.float64)
    if times.shape != labels.shape:
        raise InputError(f"{source}: {labels.size} frame labels but {times.size} frame times")
    keys = labels
    if cluster_ids is not None:
        cluster_ids = np.asarray(cluster_ids).ravel()
        if cluster_ids.size != labels.size:
            raise InputError(f"{source}: {labels.size} frame labels but {cluster_ids.size} cluster ids")
        if not np.issubdtype(cluster_ids.dtype, np.integer):
            raise InputError(f"{source}: cluster ids must be integers, got {cluster_ids.dtype}")
        keys = np.char.add(np.char.add(labels, "\x00"), cluster_ids.astype(str))
    changes = np.flatnonzero(keys[1:] != keys[:-1]) + 1
    first = np.concatenate([[0], changes])
    after = np.concatenate([changes, [labels.size]])
    end_times = np.append(times[1:], times[-1] + period)  # a frame lasts until the next one
    labelled = labels[first] != ""
    if not labelled.any():
        raise InputError(f"{source}: every frame is unlabelled ('')")
    first, after = first[labelled], after[labelled]
    return Bouts(
        start=times[first],
        stop=end_times[after - 1],
        label=labels[first].tolist(),
        cluster_id=cluster_ids[first].astype(np.int64) if cluster_ids is not None else None,
        layout=f"{labels.size} per-frame labels",
    )


def check_bouts(bouts, source, start=0.0, end=None):
    """Refuse bouts that do not end after they start, are unsorted, overlap or leave [start, end] (s)."""
    for i, (a, b) in enumerate(zip(bouts.start, bouts.stop), start=1):
        if not b > a:
            raise InputError(f"{source}: bout {i} ({bouts.label[i - 1]}, {a:g}-{b:g} s): stop is not after start")
    for i in range(1, len(bouts.start)):
        if bouts.start[i] < bouts.start[i - 1]:
            raise InputError(
                f"{source}: bouts not sorted by start "
                f"(bout {i + 1} at {bouts.start[i]:g} s comes after {bouts.start[i - 1]:g} s)"
            )
        if bouts.start[i] < bouts.stop[i - 1]:
            raise InputError(
                f"{source}: bouts {i} and {i + 1} overlap ({bouts.label[i - 1]} until {bouts.stop[i - 1]:g} s, "
                f"{bouts.label[i]} from {bouts.start[i]:g} s)"
            )
    if bouts.start[0] < start - TIME_TOLERANCE:
        raise InputError(
            f"{source}: bout 1 starts at {bouts.start[0]:g} s, before the session range starting {start:g} s"
        )
    if end is not None and bouts.stop[-1] > end + TIME_TOLERANCE:
        raise InputError(
            f"{source}: bout {len(bouts.start)} ends at {bouts.stop[-1]:g} s, after the session range ending {end:g} s"
        )
    return bouts


# ----------------------------------------------------------------------------------------------
# NWB adapter


def bouts_to_nwb(bouts, name="behavior_labels", description=None):
    """A TimeIntervals of the bouts with columns ``label`` and (when known) ``cluster_id``."""
    from pynwb.epoch import TimeIntervals

    table = TimeIntervals(name=name, description=description or f"Behaviour bouts ({bouts.layout}).")
    table.add_column(name="label", description="Behaviour label of the bout (e.g. Walk, Rear, FaceGroom).")
    if bouts.cluster_id is not None:
        table.add_column(name="cluster_id", description="Behaviour cluster (behavioural embedding) of the bout.")
    for i, label in enumerate(bouts.label):
        row = dict(start_time=float(bouts.start[i]), stop_time=float(bouts.stop[i]), label=label)
        if bouts.cluster_id is not None:
            row["cluster_id"] = int(bouts.cluster_id[i])
        table.add_interval(**row)
    return table


def _config_number(value, what, positive=False):
    """``value`` as a finite float (positive when asked); ValueError naming ``what`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not np.isfinite(number):
        raise ValueError(f"{what}: {value!r} is not a finite number")
    if positive and number <= 0:
        raise ValueError(f"{what}: {number:g} must be positive")
    return number


@dataclass(frozen=True)
class LabelImportConfig:
    """How to place per-frame labels on the session clock, and the session's end (see :func:`import_labels`).

    For per-frame labels only: ``rate`` (Hz, from ``starting_time`` s) or ``timestamps`` ((N,)
    seconds, or a .npy / text file of them), and ``cluster_ids`` (one behaviour-cluster id per
    frame); without a clock the frames are the session's keypoints' frames. ``session_end`` (s):
    bouts must lie in [0, session_end] (default: within the keypoints' time range, when the
    session has keypoints).
    """

    rate: float | None = None
    timestamps: object = field(default=None, compare=False)
    starting_time: float = 0.0
    cluster_ids: object = field(default=None, compare=False)
    session_end: float | None = None

    def __post_init__(self):
        if self.rate is not None:
            object.__setattr__(self, "rate", _config_number(self.rate, "rate", positive=True))
        if self.rate is not None and self.timestamps is not None:
            raise ValueError("rate and timestamps: give a frame rate or timestamps, not both")
        object.__setattr__(self, "starting_time", _config_number(self.starting_time or 0.0, "starting_time"))
        if self.session_end is not None:
            object.__setattr__(self, "session_end", _config_number(self.session_end, "session_end", positive=True))


@dataclass(frozen=True, eq=False)
class LabelImportResult:
    """What :func:`import_labels` appended: ``name`` is ``intervals/<name>`` (a TimeIntervals) and
    ``bouts`` the bouts as written (start/stop s on the session clock, labels, cluster ids)."""

    path: Path
    name: str
    bouts: Bouts

    def summary(self):
        """One line: where the bouts went, how many, of how many labels, the time in each."""
        return f"{self.path}: {self.name}: {self.bouts.summary()}"


def import_labels(
    session, source, config: LabelImportConfig | None = None, *, name="behavior_labels", replace=False
) -> LabelImportResult:
    """Append behaviour bouts to a session as ``intervals/<name>``.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path. ``source``: a CSV/TSV of bouts, a ``.npy``/``.npz`` of per-frame labels, or a
    per-frame label array; ``config`` places per-frame labels on the session clock and gives the
    session's end (:class:`LabelImportConfig`). Frames without a rate or timestamps are the
    session's keypoints' frames (its one PoseEstimation with as many frames). ``replace``
    replaces a table of the same name. Returns a :class:`LabelImportResult`.
    """
    config = config or LabelImportConfig()
    cluster_ids, timestamps = config.cluster_ids, config.timestamps
    per_frame, frame_timestamps = None, None
    if isinstance(source, (str, Path)):
        path, source_name = Path(source), str(source)
        if path.suffix in FRAME_SUFFIXES:
            per_frame, file_clusters, frame_timestamps = read_frame_labels(path)
            cluster_ids = file_clusters if cluster_ids is None else cluster_ids
        elif path.suffix in TABLE_SUFFIXES or not path.exists():
            bouts = read_bouts_table(path)
        else:
            raise InputError(f"{path}: unknown labels format; give a CSV/TSV of bouts or .npy/.npz per-frame labels")
    else:
        per_frame, source_name = source, "labels"
    if per_frame is None and (config.rate is not None or timestamps is not None or cluster_ids is not None):
        raise InputError(f"{source_name}: rate, timestamps and cluster ids are for per-frame labels, not for bouts")
    if timestamps is not None:
        if frame_timestamps is not None:
            raise InputError(f"{source_name}: has its own timestamps; do not pass others")
        frame_timestamps = _load_timestamps(timestamps)

    # Everything that needs no session is checked before the session is copied.
    if per_frame is not None and (config.rate is not None or frame_timestamps is not None):
        clock_name = str(timestamps) if isinstance(timestamps, (str, Path)) else source_name
        times, period = frame_times(
            np.asarray(per_frame).size, config.rate, frame_timestamps, config.starting_time, clock_name
        )
        bouts = bouts_from_frames(per_frame, times, period, cluster_ids=cluster_ids, source=source_name)
        per_frame = None
    if per_frame is None:
        check_bouts(bouts, source_name, start=0.0, end=config.session_end)

    replace_names = [f"intervals/{name}"] if replace else ()
    with opened(session) as session, session.append(replace=replace_names) as s:
        s.check_new(name, module="intervals")
        # The keypoints' clock and range are read in the working copy, under the lock.
        if per_frame is not None:
            num_frames = np.asarray(per_frame).size
            clock = keypoints_frame_times(s.nwbfile)
            if clock is None or clock[0].size != num_frames:
                raise InputError(
                    f"{source_name}: give the frame rate (--rate) or timestamps (--timestamps): the session has no "
                    f"single PoseEstimation with {num_frames} frames to take them from"
                )
            bouts = bouts_from_frames(per_frame, *clock, cluster_ids=cluster_ids, source=source_name)
        end = config.session_end
        span = (0.0, end) if end is not None else keypoints_time_range(s.nwbfile) or (0.0, None)
        check_bouts(bouts, source_name, start=span[0], end=span[1])
        description = f"Behaviour bouts ({bouts.layout}), imported by mimic_nwb {__version__}; times in seconds."
        s.nwbfile.add_time_intervals(bouts_to_nwb(bouts, name=name, description=description))
        path = session.path
    return LabelImportResult(path=path, name=f"intervals/{name}", bouts=bouts)


def _load_timestamps(timestamps):
    if isinstance(timestamps, (str, Path)):
        path = Path(timestamps)
        if not path.is_file():
            raise InputError(f"{path}: no such timestamps file")
        try:
            return np.load(path).astype(np.float64).ravel() if path.suffix == ".npy" else np.loadtxt(path).ravel()
        except ValueError as error:
            raise InputError(f"{path}: not a list of numbers ({str(error)[:60]})") from None
    return np.asarray(timestamps, dtype=np.float64).ravel()
