"""3D keypoints into ndx-pose: DANNCE predictions and NWB files written by other tools.

Core: :func:`load_skeleton`, :func:`read_dannce`, :func:`read_nwb_pose` return arrays in SI
units; :func:`import_keypoints` appends them to a session as ``processing/behavior``
Skeletons + PoseEstimation. Missing detections (NaN) stay NaN and are counted, never filled.
"""

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import scipy.io

from ..data import data_path
from ..errors import InputError

BUILTIN_SKELETONS = {"rat23": "rat23_skeleton.mat", "mouse22": "mouse22_skeleton.mat"}
UNIT_SCALE = {"mm": 1e-3, "millimeters": 1e-3, "m": 1.0, "meters": 1.0, "cm": 1e-2, "centimeters": 1e-2}
# Body size (median over frames of the largest distance between two keypoints) of any animal
# this pipeline handles, in meters: a fly is ~3 mm long, a rat ~0.5 m with tail and limbs.
PLAUSIBLE_BODY_SIZE = (0.002, 2.0)
BEHAVIOR_MODULE = "behavior"
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
    """3D keypoints ready to write: positions (N, K, 3) in meters, NaN where missing."""

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
    notes: list[str] = field(default_factory=list)

    def missing_per_keypoint(self):
        return np.isnan(self.positions).any(axis=2).sum(axis=0)

    def summary(self):
        n, k, _ = self.positions.shape
        missing = self.missing_per_keypoint()
        worst = ", ".join(
            f"{self.skeleton.nodes[i]} {missing[i]}" for i in np.argsort(-missing)[:3] if missing[i] > 0
        )
        timing = f"{self.rate:g} Hz" if self.rate else "per-frame timestamps"
        text = (
            f"{n} frames x {k} keypoints ({self.skeleton.name}, {timing}, layout: {self.layout}); "
            f"missing detections: {int(missing.sum())} of {n * k} ({100 * missing.sum() / (n * k):.2f} %)"
        )
        return text + (f", most in {worst}" if worst else "")


def _loadmat(path):
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
    skeleton = str(skeleton)
    if skeleton in BUILTIN_SKELETONS:
        path, name = data_path(BUILTIN_SKELETONS[skeleton]), skeleton
    elif skeleton.endswith(".mat"):
        path, name = Path(skeleton), Path(skeleton).stem
    else:
        raise InputError(f"skeleton {skeleton!r}: unknown; use a .mat file or one of {', '.join(BUILTIN_SKELETONS)}")
    content = _loadmat(path)
    for key in ("joint_names", "joints_idx"):
        if key not in content:
            raise InputError(f"{path}: skeleton file has no '{key}'")
    nodes = _cell_strings(content["joint_names"])
    edges = np.asarray(content["joints_idx"], dtype=np.int64)
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise InputError(f"{path}: joints_idx must have shape (E, 2), got {edges.shape}")
    edges = edges - 1  # one-based in Label3D/DANNCE
    if edges.size and (edges.min() < 0 or edges.max() >= len(nodes)):
        raise InputError(f"{path}: joints_idx refers to keypoints outside 1..{len(nodes)}")
    if len(set(nodes)) != len(nodes) or not all(nodes):
        raise InputError(f"{path}: joint_names must be unique and non-empty")
    return SkeletonSpec(name=name, nodes=nodes, edges=edges)


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


def read_dannce(path, skeleton, units="mm", animal=None):
    """Read a DANNCE ``save_data_*.mat``: ``pred`` (N, 3, K) or (N, A, 3, K) → (N, K, 3) meters.

    ``p_max`` becomes the confidence, ``sampleID`` the frame ids. ``animal`` picks one animal of
    multi-animal predictions.
    """
    path = Path(path)
    content = _loadmat(path)
    if "pred" not in content:
        raise InputError(f"{path}: no 'pred' array (not a DANNCE prediction file)")
    pred = np.asarray(content["pred"], dtype=np.float64)
    p_max = content.get("p_max")
    if pred.ndim == 4:
        num_animals = pred.shape[1]
        if animal is None:
            raise InputError(f"{path}: pred holds {num_animals} animals (N, A, 3, K); choose one with animal/--animal")
        if not 0 <= animal < num_animals:
            raise InputError(f"{path}: animal {animal} is out of range 0..{num_animals - 1}")
        pred = pred[:, animal]
        if p_max is not None and np.ndim(p_max) == 3:
            p_max = p_max[:, animal]
    elif animal not in (None, 0):
        raise InputError(f"{path}: pred holds one animal; animal {animal} does not exist")
    if pred.ndim != 3 or pred.shape[1] != 3:
        raise InputError(f"{path}: pred must have shape (N, 3, K) or (N, A, 3, K), got {pred.shape}")
    num_frames, _, num_keypoints = pred.shape
    if num_frames == 0:
        raise InputError(f"{path}: pred has no frames")
    if num_keypoints != len(skeleton.nodes):
        raise InputError(
            f"{path}: pred has {num_keypoints} keypoints but skeleton {skeleton.name} has {len(skeleton.nodes)}"
        )
    if units not in UNIT_SCALE:
        raise InputError(f"units {units!r}: use one of {', '.join(UNIT_SCALE)}")
    positions = np.transpose(pred, (0, 2, 1)) * UNIT_SCALE[units]
    if np.isinf(positions).any():
        raise InputError(f"{path}: pred contains infinite values")
    check_body_size(positions, path, units)
    confidence = None
    if p_max is not None:
        confidence = np.asarray(p_max, dtype=np.float64)
        if confidence.shape != (num_frames, num_keypoints):
            raise InputError(f"{path}: p_max has shape {confidence.shape}, expected {(num_frames, num_keypoints)}")
    frame_ids = None
    if "sampleID" in content:
        frame_ids = np.asarray(content["sampleID"]).ravel()
        if frame_ids.size != num_frames:
            raise InputError(f"{path}: sampleID has {frame_ids.size} entries but pred has {num_frames} frames")
    return Keypoints(positions=positions, skeleton=skeleton, confidence=confidence, frame_ids=frame_ids)


def _attr(obj, name, default=None):
    value = obj.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _strings(dataset):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[:]]


def read_nwb_pose(path, name=None):
    """Read 3D keypoints from an NWB file written by another tool with ndx-pose (any version).

    Works on the current layout (Skeleton linked from PoseEstimation) and on ndx-pose 0.1.x
    (``nodes``/``edges`` inside PoseEstimation, which current ndx-pose refuses), reading HDF5
    directly. Returns Keypoints with ``layout`` naming what was found.
    """
    path = Path(path)
    found = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda key, obj: found.append(key) if _attr(obj, "neurodata_type") == "PoseEstimation" else None)
            if not found:
                raise InputError(f"{path}: no ndx-pose PoseEstimation in this NWB file")
            if name is not None:
                matches = [key for key in found if key.split("/")[-1] == name]
                if not matches:
                    raise InputError(f"{path}: no PoseEstimation named {name!r} (found {', '.join(found)})")
                found = matches
            if len(found) > 1:
                raise InputError(f"{path}: several PoseEstimation groups ({', '.join(found)}); choose one by name")
            return _read_pose_group(path, f[found[0]])
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def _read_pose_group(path, group):
    series = {key: obj for key, obj in group.items() if _attr(obj, "neurodata_type") == "PoseEstimationSeries"}
    # ndx-pose >= 0.2 links its Skeleton under the skeleton's own name.
    skeleton = next((obj for obj in group.values() if _attr(obj, "neurodata_type") == "Skeleton"), None)
    if "nodes" in group:
        layout = "ndx-pose 0.1.x (nodes and edges inside PoseEstimation)"
        holder, skeleton_name = group, Path(group.name).name
    elif skeleton is not None:
        layout = "ndx-pose >= 0.2 (linked Skeleton)"
        holder, skeleton_name = skeleton, Path(skeleton.name).name
    else:
        raise InputError(f"{path}: PoseEstimation '{group.name}' has no skeleton (neither nodes nor a Skeleton link)")
    nodes = _strings(holder["nodes"])
    edges = holder["edges"][:] if "edges" in holder and holder["edges"].size else np.zeros((0, 2))
    missing = [n for n in nodes if n not in series]
    if missing:
        raise InputError(f"{path}: PoseEstimation '{group.name}' lacks series for keypoints {missing}")
    first = series[nodes[0]]
    positions, confidence = [], []
    for node in nodes:
        data = series[node]["data"]
        if data.ndim != 2 or data.shape[1] != 3:
            raise InputError(f"{path}: series '{node}' has shape {data.shape}; only 3D keypoints (N, 3) are imported")
        unit = _attr(data, "unit", "meters")
        if unit not in UNIT_SCALE:
            raise InputError(f"{path}: series '{node}' is in {unit!r}; only length units (m, mm, cm) are imported")
        scale = UNIT_SCALE[unit] * float(_attr(data, "conversion", 1.0))
        positions.append(data[:] * scale)
        confidence.append(series[node]["confidence"][:] if "confidence" in series[node] else None)
    positions = np.stack(positions, axis=1).astype(np.float64)
    if positions.shape[0] == 0:
        raise InputError(f"{path}: PoseEstimation '{group.name}' has no frames")
    check_body_size(positions, path, _attr(first["data"], "unit", "meters"))
    keypoints = Keypoints(
        positions=positions,
        skeleton=SkeletonSpec(name=skeleton_name, nodes=nodes, edges=np.asarray(edges, dtype=np.int64)),
        confidence=np.stack(confidence, axis=1) if all(c is not None for c in confidence) else None,
        source_software=_scalar_text(group, "source_software") or "unknown",
        layout=layout,
        reference_frame=_attr(first, "reference_frame", None) or _scalar_text(first, "reference_frame") or "unknown",
        confidence_definition=_attr(first.get("confidence", first), "definition", None) or "as in the source file",
    )
    if "timestamps" in first:
        keypoints.timestamps = first["timestamps"][:]
    elif "starting_time" in first:
        keypoints.starting_time = float(first["starting_time"][()])
        keypoints.rate = float(_attr(first["starting_time"], "rate"))
    return keypoints


def _scalar_text(group, key):
    if key in group and isinstance(group[key], h5py.Dataset):
        value = group[key][()]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def set_timing(keypoints, rate=None, timestamps=None, starting_time=0.0, source="keypoints"):
    """Place the frames on the session clock: a regular ``rate`` (Hz) or per-frame ``timestamps`` (s)."""
    num_frames = keypoints.positions.shape[0]
    if rate is not None and timestamps is not None:
        raise InputError(f"{source}: give a frame rate or timestamps, not both")
    if timestamps is not None:
        timestamps = _load_timestamps(timestamps)
        if timestamps.shape != (num_frames,):
            raise InputError(f"timestamps: {timestamps.size} values for {num_frames} frames")
        if not np.all(np.isfinite(timestamps)):
            raise InputError("timestamps: contain NaN or infinite values")
        if np.any(np.diff(timestamps) <= 0):
            first = int(np.argmax(np.diff(timestamps) <= 0))
            raise InputError(f"timestamps: not strictly increasing (frame {first + 1} is not after frame {first})")
        if timestamps[0] < 0:
            raise InputError("timestamps: negative times (before session_start_time)")
        keypoints.timestamps, keypoints.rate, keypoints.starting_time = timestamps, None, None
    elif rate is not None:
        if not rate > 0:
            raise InputError(f"rate: {rate} Hz must be positive")
        if starting_time < 0:
            raise InputError(f"starting_time: {starting_time} s is before session_start_time")
        keypoints.rate, keypoints.starting_time, keypoints.timestamps = float(rate), float(starting_time), None
    elif keypoints.rate is None and keypoints.timestamps is None:
        raise InputError(f"{source}: give the frame rate (--rate) or per-frame timestamps (--timestamps)")
    return keypoints


def _load_timestamps(timestamps):
    if isinstance(timestamps, (str, Path)):
        path = Path(timestamps)
        if not path.exists():
            raise InputError(f"{path}: no such timestamps file")
        try:
            return np.load(path).astype(np.float64).ravel() if path.suffix == ".npy" else np.loadtxt(path).ravel()
        except ValueError as error:
            raise InputError(f"{path}: not a list of numbers ({error})") from None
    return np.asarray(timestamps, dtype=np.float64).ravel()


def skeleton_to_nwb(spec, subject=None):
    from ndx_pose import Skeleton

    return Skeleton(name=spec.name, nodes=spec.nodes, edges=spec.edges.astype("uint8"), subject=subject)


def behavior_skeleton(session_append, spec, source):
    """``(processing/behavior module, Skeleton)`` of an append: the session's skeleton of that name
    (which must have the same keypoints) or a new one added to its Skeletons."""
    from ndx_pose import Skeletons

    module = session_append.module(BEHAVIOR_MODULE, "Behaviour: 3D keypoints (ndx-pose) and derived data")
    if "Skeletons" not in module.data_interfaces:
        module.add(Skeletons(name="Skeletons"))
    skeletons = module["Skeletons"]
    skeleton = skeletons.skeletons.get(spec.name)
    if skeleton is None:
        skeleton = skeleton_to_nwb(spec, subject=session_append.nwbfile.subject)
        skeletons.add_skeletons(skeleton)
    elif [str(n) for n in skeleton.nodes[:]] != list(spec.nodes):
        raise InputError(f"{source}: skeleton {skeleton.name!r} already in the session has other keypoints")
    return module, skeleton


def keypoints_to_nwb(keypoints, skeleton, name="PoseEstimation", source_video=None, description=None):
    """ndx-pose PoseEstimation of ``keypoints`` on ``skeleton`` (timestamps shared by link when irregular)."""
    from ndx_pose import PoseEstimation, PoseEstimationSeries
    series = []
    timing = (
        dict(timestamps=keypoints.timestamps)
        if keypoints.timestamps is not None
        else dict(rate=keypoints.rate, starting_time=keypoints.starting_time)
    )
    for k, node in enumerate(keypoints.skeleton.nodes):
        confidence = {}
        if keypoints.confidence is not None:
            confidence = dict(confidence=keypoints.confidence[:, k], confidence_definition=keypoints.confidence_definition)
        one = PoseEstimationSeries(
            name=node,
            description=f"3D position of {node}; NaN where the keypoint was not detected.",
            data=keypoints.positions[:, k],
            unit="meters",
            reference_frame=keypoints.reference_frame,
            **timing,
            **confidence,
        )
        series.append(one)
        if keypoints.timestamps is not None and len(series) == 1:
            timing = dict(timestamps=one)  # irregular clock: link, don't copy
    pose = PoseEstimation(
        name=name,
        pose_estimation_series=series,
        description=description or f"3D keypoints from {keypoints.source_software} ({keypoints.layout})",
        source_software=keypoints.source_software,
        skeleton=skeleton,
        source_video=source_video,
    )
    return pose


def import_keypoints(
    session,
    source,
    skeleton=None,
    rate=None,
    timestamps=None,
    starting_time=0.0,
    animal=None,
    units="mm",
    reference_frame=None,
    videos=None,
    name="PoseEstimation",
    replace=False,
):
    """Append keypoints from ``source`` (DANNCE .mat or NWB with ndx-pose) to a session; return a summary line."""
    from pynwb.image import ImageSeries

    from ..session import append

    source = Path(source)
    if source.suffix == ".nwb" or (source.exists() and h5py.is_hdf5(source) and source.suffix != ".mat"):
        keypoints = read_nwb_pose(source)
        if skeleton is not None:
            raise InputError(f"{source}: the NWB file brings its own skeleton; do not pass one")
    else:
        keypoints = read_dannce(source, load_skeleton(skeleton), units=units, animal=animal)
    set_timing(keypoints, rate=rate, timestamps=timestamps, starting_time=starting_time, source=str(source))
    if reference_frame:
        keypoints.reference_frame = reference_frame
    replace_names = [f"behavior/{name}"] if replace else ()
    with append(session, replace=replace_names) as s:
        s.check_new(name, BEHAVIOR_MODULE)
        module, skeleton = behavior_skeleton(s, keypoints.skeleton, source)
        timing = (
            dict(rate=keypoints.rate, starting_time=keypoints.starting_time)
            if keypoints.rate
            else dict(timestamps=keypoints.timestamps)
        )
        video_series = [
            ImageSeries(
                name=f"video_{Path(video).stem}",
                description=f"source video of {name}",
                external_file=[str(video)],
                format="external",
                starting_frame=[0],
                num_samples=len(keypoints.positions) if keypoints.rate else None,
                **timing,
            )
            for video in videos or []
        ]
        for video in video_series:
            s.nwbfile.add_acquisition(video)
        # ndx-pose links one source video; a multi-camera rig keeps all of them in acquisition.
        pose = keypoints_to_nwb(
            keypoints, skeleton, name=name, source_video=video_series[0] if len(video_series) == 1 else None
        )
        module.add(pose)
    return f"{session}: processing/behavior/{name}: {keypoints.summary()}"
