"""Keypoints in memory, before they are written: types, skeletons, units and the checks every source passes.

:class:`Keypoints` (positions (N, K, 3) in metres, NaN where missing, and their clock) and
:class:`SkeletonSpec` are what every reader returns (:mod:`.keypoints`, :mod:`.sleap`,
:mod:`.anipose`); :func:`load_skeleton` reads a built-in or Label3D/DANNCE skeleton;
:func:`resolve_skeleton` names and orders a source's keypoints; :func:`check_positions` and
:func:`check_body_size` refuse what cannot be a body in metres. Numbers given by the caller are
checked here too (:func:`check_rate`, :func:`check_time`). :func:`stored_keypoints` reads a
session's PoseEstimation back into :class:`Keypoints` (metres, skeleton order, its clock).
"""

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

from ..data import data_path
from ..errors import InputError

BUILTIN_SKELETONS = {"rat23": "rat23_skeleton.mat", "mouse22": "mouse22_skeleton.mat"}
UNIT_SCALE = {
    "mm": 1e-3,
    "millimeters": 1e-3,
    "millimetres": 1e-3,
    "cm": 1e-2,
    "centimeters": 1e-2,
    "centimetres": 1e-2,
    "m": 1.0,
    "meters": 1.0,
    "metres": 1.0,
}
# Body size (median over frames of the largest distance between two keypoints) of any animal
# this pipeline handles, in meters: a fly is ~3 mm long, a rat ~0.5 m with tail and limbs.
PLAUSIBLE_BODY_SIZE = (0.002, 2.0)
# Timestamps within this fraction of a frame period of a regular grid are a regular clock.
REGULAR_CLOCK_TOLERANCE = 1e-6
# Fewest frames a clip may have: each PoseEstimationSeries is (frames, 3), and nwbinspector's
# check_data_orientation (CRITICAL) flags a series with more columns than rows. Later stages
# write wider series and state their own minimum with check_clip_length (STAC: 74 qpos for the rat).
MIN_FRAMES = 3
DANNCE_REFERENCE_FRAME = (
    "DANNCE world frame: the calibrated 3D frame of the camera rig (origin and axes as set by the "
    "arena calibration), positions in meters"
)


@dataclass
class SkeletonSpec:
    """Keypoint names and zero-based edges of a skeleton."""

    name: str
    nodes: list[str]
    edges: np.ndarray  # (E, 2) zero-based indices into nodes


@dataclass
class Keypoints:
    """3D keypoints ready to write: positions (N, K, 3) in meters, NaN where missing.

    ``frame_ids`` (N,) are the source's frame numbers (``frame_ids_name`` says which field),
    ``rate`` (Hz) and ``starting_time`` (s) a regular clock, or ``timestamps`` (N,) in seconds.
    """

    positions: np.ndarray
    skeleton: SkeletonSpec
    confidence: np.ndarray | None = None  # (N, K) in [0, 1]
    frame_ids: np.ndarray | None = None  # (N,) source frame numbers
    source_software: str = "DANNCE"
    layout: str = "DANNCE save_data .mat"
    reference_frame: str = DANNCE_REFERENCE_FRAME
    rate: float | None = None
    starting_time: float | None = None
    timestamps: np.ndarray | None = None
    confidence_definition: str = "DANNCE p_max: maximum of the keypoint's 3D probability map"
    frame_ids_name: str = "sampleID"
    named_by_source: bool = True  # False when the source file has no skeleton name of its own
    notes: list[str] = field(default_factory=list)

    def missing_per_keypoint(self):
        return np.isnan(self.positions).any(axis=2).sum(axis=0)

    def summary(self):
        n, k, _ = self.positions.shape
        missing = self.missing_per_keypoint()
        worst = ", ".join(f"{self.skeleton.nodes[i]} {missing[i]}" for i in np.argsort(-missing)[:3] if missing[i] > 0)
        timing = f"{self.rate:g} Hz" if self.rate else "per-frame timestamps"
        text = (
            f"{n} frames x {k} keypoints ({self.skeleton.name}, {timing}, layout: {self.layout}); "
            f"missing detections: {int(missing.sum())} of {n * k} ({100 * missing.sum() / (n * k):.2f} %)"
        )
        text += f", most in {worst}" if worst else ""
        return text + "".join(f"; {note}" for note in self.notes)

    def reordered(self, nodes):
        """The same keypoints with the keypoint axis in ``nodes`` order (a permutation)."""
        order = [self.skeleton.nodes.index(n) for n in nodes]
        self.positions = self.positions[:, order]
        if self.confidence is not None:
            self.confidence = self.confidence[:, order]
        return self


def real_array(values, what, dtype=np.float64):
    """``values`` as a real ``dtype`` array, or an InputError naming ``what`` (text, cells, complex)."""
    array = np.asarray(values)
    if array.dtype.kind == "c":
        raise InputError(f"{what}: complex values; keypoints and times must be real numbers")
    if array.dtype.kind not in "iuf":
        kind = {"U": "text", "S": "text", "O": "text or cells", "b": "true/false values"}.get(
            array.dtype.kind, str(array.dtype)
        )
        raise InputError(f"{what}: holds {kind}, not numbers")
    return array.astype(dtype)


def check_rate(rate, what="rate", error=InputError):
    """A sampling rate in Hz: finite and > 0 (None stays None); else ``error`` (a config raises ValueError)."""
    if rate is None:
        return None
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise error(f"{what}: {rate!r} is not a number of Hz") from None
    if not math.isfinite(rate) or rate <= 0:
        raise error(f"{what}: {rate} Hz must be finite and positive")
    return rate


def check_time(value, what="starting_time", error=InputError):
    """A time on the session clock in seconds: finite and >= 0 (not before session_start_time)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise error(f"{what}: {value!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise error(f"{what}: {value} s must be a finite number of seconds")
    if value < 0:
        raise error(f"{what}: {value} s is before session_start_time")
    return value


def loadmat(path):
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise InputError(f"{path}: MATLAB v7.3 (HDF5) .mat files are not supported; save with -v7") from None
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError... on corrupt files
        raise InputError(f"{path}: not a readable .mat file ({type(error).__name__}: {str(error)[:80]})") from None


def _cell_strings(values):
    """MATLAB cell array of strings → list of str."""
    flat = np.asarray(values, dtype=object).ravel()
    return [str(np.asarray(v).ravel()[0]) if np.asarray(v).size else "" for v in flat]


def load_skeleton(skeleton):
    """A built-in skeleton name ('rat23', 'mouse22') or a Label3D/DANNCE skeleton .mat path."""
    if skeleton is None:
        raise InputError("skeleton: give a skeleton .mat or a built-in name (rat23, mouse22)")
    if isinstance(skeleton, SkeletonSpec):
        return skeleton
    skeleton = str(skeleton)
    if skeleton in BUILTIN_SKELETONS:
        path, name = data_path(BUILTIN_SKELETONS[skeleton]), skeleton
    elif skeleton.endswith(".mat"):
        path, name = Path(skeleton), Path(skeleton).stem
    else:
        raise InputError(f"skeleton {skeleton!r}: unknown; use a .mat file or one of {', '.join(BUILTIN_SKELETONS)}")
    content = loadmat(path)
    for key in ("joint_names", "joints_idx"):
        if key not in content:
            raise InputError(f"{path}: skeleton file has no '{key}'")
    nodes = _cell_strings(content["joint_names"])
    edges = real_array(content["joints_idx"], f"{path}: joints_idx", np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise InputError(f"{path}: joints_idx must have shape (E, 2), got {edges.shape}")
    edges = edges - 1  # one-based in Label3D/DANNCE
    if edges.size and (edges.min() < 0 or edges.max() >= len(nodes)):
        raise InputError(f"{path}: joints_idx refers to keypoints outside 1..{len(nodes)}")
    if len(set(nodes)) != len(nodes) or not all(nodes):
        raise InputError(f"{path}: joint_names must be unique and non-empty")
    return SkeletonSpec(name=name, nodes=nodes, edges=edges)


def parse_keypoint_names(names, what="keypoint names"):
    """Keypoint names from a list, a comma-separated string or a text file (one name per line)."""
    if isinstance(names, (str, Path)):
        path = Path(names)
        if path.suffix in (".txt", ".csv") or path.is_file():
            if not path.is_file():
                raise InputError(f"{path}: no such keypoint-names file")
            names = [line.strip() for line in path.read_text().replace(",", "\n").splitlines()]
        else:
            names = str(names).split(",")
        names = [n.strip() for n in names if n.strip()]
    names = [str(n) for n in names]
    if not names:
        raise InputError(f"{what}: no names given")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"{what}: repeated names {duplicates}")
    return names


def builtin_skeleton_with(names):
    """The built-in skeleton whose keypoint names are exactly ``names`` (any order), else None."""
    for builtin in BUILTIN_SKELETONS:
        skeleton = load_skeleton(builtin)
        if sorted(skeleton.nodes) == sorted(names):
            return skeleton
    return None


def skeleton_for_names(names, fallback_name):
    """A built-in skeleton with exactly these keypoints, else one without edges named ``fallback_name``."""
    return builtin_skeleton_with(names) or SkeletonSpec(
        name=fallback_name, nodes=list(names), edges=np.zeros((0, 2), dtype=np.int64)
    )


def resolve_skeleton(keypoints, skeleton=None, keypoint_names=None, source="keypoints"):
    """Name and order the keypoints: by the given skeleton, or by a built-in one with the same names.

    ``skeleton`` (a built-in name, a .mat path or a SkeletonSpec) or ``keypoint_names`` must
    name exactly the source's keypoints (in any order; the keypoints are put in its order). With
    neither, a source skeleton without a known name whose names are exactly a built-in
    skeleton's becomes that skeleton.
    """
    have = list(keypoints.skeleton.nodes)
    if skeleton is not None or keypoint_names is not None:
        if skeleton is not None:
            spec = load_skeleton(skeleton)
        else:
            names = parse_keypoint_names(keypoint_names)
            spec = skeleton_for_names(names, keypoints.skeleton.name)
            if spec.name in BUILTIN_SKELETONS:
                spec = SkeletonSpec(spec.name, names, _edges_in(spec, names))
        if sorted(spec.nodes) != sorted(have):
            extra, missing = sorted(set(spec.nodes) - set(have)), sorted(set(have) - set(spec.nodes))
            raise InputError(
                f"{source}: skeleton {spec.name} does not name the file's keypoints "
                f"(not in the file: {extra or 'none'}; not in the skeleton: {missing or 'none'})"
            )
        keypoints.reordered(spec.nodes)
        keypoints.skeleton = spec
        return keypoints
    if keypoints.skeleton.name in BUILTIN_SKELETONS and keypoints.named_by_source:
        return keypoints
    builtin = builtin_skeleton_with(have)
    if builtin is not None:
        keypoints.reordered(builtin.nodes)
        keypoints.notes.append(
            f"skeleton {keypoints.skeleton.name!r} has exactly {builtin.name}'s keypoints: stored as {builtin.name}"
        )
        keypoints.skeleton = builtin
    return keypoints


def _edges_in(spec, names):
    """``spec``'s edges re-indexed into ``names`` (a permutation of its nodes)."""
    index = {n: names.index(n) for n in spec.nodes}
    return np.array([[index[spec.nodes[a]], index[spec.nodes[b]]] for a, b in spec.edges], dtype=np.int64).reshape(
        -1, 2
    )


def check_body_size(positions_m, source, declared):
    """Refuse positions whose body size is implausible in meters (e.g. millimetres declared as metres)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames without keypoints give NaN spans
        spans = np.nanmax(positions_m, axis=1) - np.nanmin(positions_m, axis=1)  # (N, 3)
        size = np.nanmedian(np.linalg.norm(spans, axis=1))
    low, high = PLAUSIBLE_BODY_SIZE
    if not np.isfinite(size):
        raise InputError(f"{source}: no frame has two observed keypoints")
    if size > high:
        raise InputError(
            f"{source}: body size {size:.3g} m is implausible with units '{declared}' (millimetres declared as metres?)"
        )
    if size < low:
        raise InputError(
            f"{source}: body size {size:.3g} m is implausible with units '{declared}' (metres declared as millimetres?)"
        )
    return size


def unit_scale(units, what="units"):
    """Metres per ``units`` (mm, cm, m and their spelled-out names)."""
    if units not in UNIT_SCALE:
        raise InputError(f"{what} {units!r}: use one of mm, cm, m")
    return UNIT_SCALE[units]


def check_positions(positions, source, units):
    """Shared checks of positions (N, K, 3) in metres: enough frames, no infinities, plausible size."""
    if positions.shape[0] < MIN_FRAMES:
        raise InputError(
            f"{source}: {positions.shape[0]} frame(s); a clip needs at least {MIN_FRAMES} frames "
            "(nwbinspector's data orientation check on the (frames, 3) keypoint series)"
        )
    if np.isinf(positions).any():
        raise InputError(f"{source}: positions contain infinite values")
    check_body_size(positions, source, units)


def check_clip_length(num_frames, widest, stage, source):
    """Refuse a clip too short for a stage: ``widest`` is the most columns of any (frames, columns)
    series the stage writes (STAC: max(qpos, keypoints), 74 for the rat), since nwbinspector's
    check_data_orientation (CRITICAL) flags a series with more columns than rows."""
    if num_frames < widest:
        raise InputError(
            f"{source}: {num_frames} frames; {stage} needs at least {widest} "
            f"(it writes series {widest} columns wide, and a series needs as many rows as columns)"
        )


def stored_keypoints(pose, where) -> Keypoints:
    """The keypoints of a session's ndx-pose PoseEstimation, read back as :class:`Keypoints`.

    The one reader of stored keypoints for the stages that use them (STAC, the stac-mjx import):
    positions (T, K, 3) in metres (each series' data * conversion + offset, as float64, NaN where
    missing), keypoints in the Skeleton's node order (else the series' order), the first series'
    clock (``rate`` and ``starting_time``, else ``timestamps`` in seconds), and the confidence
    (T, K) when every series has one. ``where`` names the session in errors. Refuses (InputError)
    a PoseEstimation without series, a skeleton node without a series, keypoints that are not 3D
    and units other than metres.
    """
    series = pose.pose_estimation_series
    location = f"{where}: processing/behavior/{pose.name}"
    if not series:
        raise InputError(f"{location} has no keypoint series")
    skeleton = pose.skeleton
    names = [str(n) for n in skeleton.nodes[:]] if skeleton is not None else [str(n) for n in series]
    missing = [n for n in names if n not in series]
    if missing:
        raise InputError(f"{location}: skeleton nodes {missing} have no keypoint series")
    ordered = [series[n] for n in names]
    units = sorted({s.unit for s in ordered})
    if units != ["meters"]:
        raise InputError(f"{location}: the keypoints are in {units}, not meters (re-import them)")
    shapes = {np.shape(s.data) for s in ordered}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != 3:
        raise InputError(f"{location}: the keypoint series have shapes {sorted(shapes)}, not (frames, 3): not 3D")
    positions = np.stack(
        [np.asarray(s.data[:], dtype=np.float64) * s.conversion + (getattr(s, "offset", 0.0) or 0.0) for s in ordered],
        axis=1,
    )
    confidences = [s.confidence for s in ordered]
    confidence = None
    if all(c is not None and np.shape(c) == positions.shape[:1] for c in confidences):
        confidence = np.stack([np.asarray(c[:], dtype=np.float64) for c in confidences], axis=1)
    first = ordered[0]
    edges = np.zeros((0, 2), dtype=np.int64)
    if skeleton is not None and skeleton.edges is not None:
        edges = np.asarray(skeleton.edges[:], dtype=np.int64).reshape(-1, 2)
    clock = (
        dict(rate=float(first.rate), starting_time=float(first.starting_time or 0.0))
        if first.rate is not None
        else dict(timestamps=np.asarray(first.timestamps[:], dtype=np.float64))
    )
    return Keypoints(
        positions=positions,
        skeleton=SkeletonSpec(
            name=skeleton.name if skeleton is not None else pose.name,
            nodes=names,
            edges=edges,
        ),
        confidence=confidence,
        source_software=str(pose.source_software or "unknown"),
        layout=f"NWB PoseEstimation processing/behavior/{pose.name}",
        reference_frame=str(first.reference_frame),
        confidence_definition=str(first.confidence_definition or ""),
        **clock,
    )
