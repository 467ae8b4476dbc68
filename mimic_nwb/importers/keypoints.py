"""3D keypoints into ndx-pose: DANNCE, SLEAP (3D), Anipose and NWB files written by other tools.

Core: :func:`read_dannce`, :func:`read_nwb_pose` (and the readers in :mod:`.sleap` and
:mod:`.anipose`) return :class:`~.keypoint_data.Keypoints` in SI units (the types, skeletons and
checks they share are in :mod:`.keypoint_data`); :func:`read_source` picks the reader by the
file's content; :func:`set_timing` places the frames on the session clock;
:func:`import_keypoints` appends them to a session as ``processing/behavior`` Skeletons +
PoseEstimation. Missing detections (NaN) stay NaN and are counted, never filled.

Rules shared by every source:

- ``units`` states the unit of the values as stored in the source and overrides whatever unit
  the source declares (an ndx-pose series declared ``pixels`` that holds millimetres imports with
  ``units="mm"``); the body-size sanity check applies to the result either way.
- A skeleton without a known name whose keypoint names are exactly those of a built-in skeleton
  (``rat23``, ``mouse22``) is stored as that skeleton (keypoints in its order), so that STAC finds
  its site map.
- Timestamps regular within :data:`REGULAR_CLOCK_TOLERANCE` of the frame period are stored as a
  rate and a starting time (NWB best practice; nwbinspector's ``check_regular_timestamps``).
- Frame numbers of the source (DANNCE ``sampleID``, Anipose ``fnum``, the triangulated SLEAP
  ``frames`` range) place the frames when a rate is given: ``rate`` is then the *camera* rate and
  frame ``i`` is at ``starting_time + (frame_id[i] - frame_id[0]) / rate``. They are stored in
  ``processing/behavior/<name>_frame_ids``.
- A clip needs at least :data:`MIN_FRAMES` frames (see there).
"""

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
from pynwb import TimeSeries
from pynwb.image import ImageSeries

from ..errors import InputError
from ..session import KEYPOINTS_MODULE, opened
from .anipose import read_anipose_csv
from .keypoint_data import (
    REGULAR_CLOCK_TOLERANCE,
    UNIT_SCALE,
    Keypoints,
    SkeletonSpec,
    check_positions,
    check_rate,
    check_time,
    load_skeleton,
    loadmat,
    parse_keypoint_names,
    real_array,
    resolve_skeleton,
    unit_scale,
)
from .sleap import read_sleap_h5

BEHAVIOR_MODULE = KEYPOINTS_MODULE  # processing/behavior: Skeletons and PoseEstimation (ndx-pose)


def read_dannce(path, skeleton=None, units=None, animal=None, keypoint_names=None):
    """Read a DANNCE ``save_data_*.mat``: ``pred`` (N, 3, K) or (N, A, 3, K) → (N, K, 3) meters.

    ``units`` is the unit of ``pred`` (default mm). ``p_max`` becomes the confidence,
    ``sampleID`` the frame ids. ``animal`` picks one animal of multi-animal predictions; the
    keypoints are named by ``skeleton`` or ``keypoint_names``.
    """
    path = Path(path)
    units = units or "mm"
    scale = unit_scale(units)
    if skeleton is None and keypoint_names is None:
        load_skeleton(None)  # the error that asks for one
    content = loadmat(path)
    if "pred" not in content:
        raise InputError(f"{path}: no 'pred' array (not a DANNCE prediction file)")
    pred = real_array(content["pred"], f"{path}: pred")
    p_max = content.get("p_max")
    if pred.ndim == 4:
        num_animals = pred.shape[1]
        if animal is None:
            raise InputError(f"{path}: pred holds {num_animals} animals (N, A, 3, K); choose one with animal/--animal")
        if not 0 <= animal < num_animals:
            raise InputError(f"{path}: animal {animal} is out of range 0..{num_animals - 1}")
        pred = pred[:, animal]
        if p_max is not None and np.ndim(p_max) == 3:
            p_max = np.asarray(p_max)[:, animal]
    elif animal not in (None, 0):
        raise InputError(f"{path}: pred holds one animal; animal {animal} does not exist")
    if pred.ndim != 3 or pred.shape[1] != 3:
        raise InputError(f"{path}: pred must have shape (N, 3, K) or (N, A, 3, K), got {pred.shape}")
    num_frames, _, num_keypoints = pred.shape
    if num_frames == 0:
        raise InputError(f"{path}: pred has no frames")
    spec = load_skeleton(skeleton) if skeleton is not None else None
    names = spec.nodes if spec is not None else parse_keypoint_names(keypoint_names)
    if num_keypoints != len(names):
        label = f"skeleton {spec.name}" if spec is not None else "--keypoint-names"
        raise InputError(f"{path}: pred has {num_keypoints} keypoints but {label} has {len(names)}")
    positions = np.transpose(pred, (0, 2, 1)) * scale
    check_positions(positions, path, units)
    confidence = None
    if p_max is not None:
        confidence = real_array(p_max, f"{path}: p_max")
        if confidence.shape != (num_frames, num_keypoints):
            raise InputError(f"{path}: p_max has shape {confidence.shape}, expected {(num_frames, num_keypoints)}")
    frame_ids = None
    if "sampleID" in content:
        frame_ids = real_array(content["sampleID"], f"{path}: sampleID").ravel()
        if frame_ids.size != num_frames:
            raise InputError(f"{path}: sampleID has {frame_ids.size} entries but pred has {num_frames} frames")
    keypoints = Keypoints(
        positions=positions,
        skeleton=spec or SkeletonSpec(path.stem, names, np.zeros((0, 2), dtype=np.int64)),
        confidence=confidence,
        frame_ids=frame_ids,
        named_by_source=spec is not None,
    )
    return resolve_skeleton(keypoints, source=path) if spec is None else keypoints


def _attr(obj, name, default=None):
    value = obj.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _strings(dataset):
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dataset[:]]


def read_nwb_pose(path, name=None, units=None):
    """Read 3D keypoints from an NWB file written by another tool with ndx-pose (any version).

    Works on the current layout (Skeleton linked from PoseEstimation) and on ndx-pose 0.1.x
    (``nodes``/``edges`` inside PoseEstimation, which current ndx-pose refuses), reading HDF5
    directly. ``units``, when given, is the unit of the stored values (times ``conversion``,
    plus ``offset``) and overrides the series' declared unit. Returns Keypoints with
    ``layout`` naming what was found.
    """
    path = Path(path)
    found = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(
                lambda key, obj: found.append(key) if _attr(obj, "neurodata_type") == "PoseEstimation" else None
            )
            if not found:
                raise InputError(f"{path}: no ndx-pose PoseEstimation in this NWB file")
            if name is not None:
                matches = [key for key in found if key.split("/")[-1] == name]
                if not matches:
                    raise InputError(f"{path}: no PoseEstimation named {name!r} (found {', '.join(found)})")
                found = matches
            if len(found) > 1:
                raise InputError(f"{path}: several PoseEstimation groups ({', '.join(found)}); choose one by name")
            return _read_pose_group(path, f[found[0]], units)
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def _read_pose_group(path, group, units=None):
    series = {key: obj for key, obj in group.items() if _attr(obj, "neurodata_type") == "PoseEstimationSeries"}
    # ndx-pose >= 0.2 links its Skeleton under the skeleton's own name.
    skeleton = next((obj for obj in group.values() if _attr(obj, "neurodata_type") == "Skeleton"), None)
    if "nodes" in group:
        layout = "ndx-pose 0.1.x (nodes and edges inside PoseEstimation)"
        # 0.1.x skeletons have no name of their own: the group's name stands in
        holder, skeleton_name, named = group, Path(group.name).name, False
    elif skeleton is not None:
        layout = "ndx-pose >= 0.2 (linked Skeleton)"
        holder, skeleton_name, named = skeleton, Path(skeleton.name).name, True
    else:
        raise InputError(f"{path}: PoseEstimation '{group.name}' has no skeleton (neither nodes nor a Skeleton link)")
    nodes = _strings(holder["nodes"])
    edges = holder["edges"][:] if "edges" in holder and holder["edges"].size else np.zeros((0, 2))
    missing = [n for n in nodes if n not in series]
    if missing:
        raise InputError(f"{path}: PoseEstimation '{group.name}' lacks series for keypoints {missing}")
    first = series[nodes[0]]
    declared_units = {_attr(series[node]["data"], "unit", "meters") for node in nodes}
    if units is None and len(declared_units) > 1:
        raise InputError(f"{path}: its keypoint series declare different units {sorted(declared_units)}; give --units")
    positions, confidence = [], []
    for node in nodes:
        data = series[node]["data"]
        where = f"{path}: series '{node}'"
        if data.ndim != 2 or data.shape[1] != 3:
            raise InputError(f"{where} has shape {data.shape}; only 3D keypoints (N, 3) are imported")
        unit = _attr(data, "unit", "meters")
        if units is None and unit not in UNIT_SCALE:
            raise InputError(
                f"{where} is in {unit!r}; only length units (m, mm, cm) are imported "
                "(give --units if the values are lengths whatever the file declares)"
            )
        scale = unit_scale(units or unit, "units")
        conversion = real_array(_attr(data, "conversion", 1.0), f"{where}: conversion")
        offset = real_array(_attr(data, "offset", 0.0), f"{where}: offset")
        positions.append((real_array(data[:], f"{where}: data") * conversion + offset) * scale)
        if "confidence" in series[node]:
            confidence.append(real_array(series[node]["confidence"][:], f"{where}: confidence"))
        else:
            confidence.append(None)
    positions = np.stack(positions, axis=1).astype(np.float64)
    if positions.shape[0] == 0:
        raise InputError(f"{path}: PoseEstimation '{group.name}' has no frames")
    declared = declared_units.pop() if len(declared_units) == 1 else "mixed"
    check_positions(positions, path, units or declared)
    keypoints = Keypoints(
        positions=positions,
        skeleton=SkeletonSpec(name=skeleton_name, nodes=nodes, edges=np.asarray(edges, dtype=np.int64).reshape(-1, 2)),
        confidence=np.stack(confidence, axis=1) if all(c is not None for c in confidence) else None,
        source_software=_scalar_text(group, "source_software") or "unknown",
        layout=layout,
        reference_frame=_attr(first, "reference_frame", None) or _scalar_text(first, "reference_frame") or "unknown",
        confidence_definition=_attr(first.get("confidence", first), "definition", None) or "as in the source file",
        named_by_source=named,
    )
    if units is not None and units != declared:
        keypoints.notes.append(f"values read as {units} (the file declares {declared!r})")
    if "timestamps" in first:
        keypoints.timestamps = real_array(first["timestamps"][:], f"{path}: series '{nodes[0]}': timestamps")
    elif "starting_time" in first:
        keypoints.starting_time = float(first["starting_time"][()])
        keypoints.rate = float(_attr(first["starting_time"], "rate"))
    return keypoints


def _scalar_text(group, key):
    if key in group and isinstance(group[key], h5py.Dataset):
        value = group[key][()]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def check_frame_ids(keypoints, source):
    """The keypoints' frame ids as int64, refused unless whole numbers strictly increasing."""
    name = keypoints.frame_ids_name
    ids = real_array(keypoints.frame_ids, f"{source}: {name}").ravel()
    if not np.all(np.isfinite(ids)) or not np.all(ids == np.round(ids)):
        raise InputError(f"{source}: {name} holds values that are not whole frame numbers")
    steps = np.diff(ids)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        what = "repeats" if steps[i] == 0 else "goes back"
        raise InputError(
            f"{source}: {name} {what} at frame {i + 1} ({ids[i]:.0f} then {ids[i + 1]:.0f}); "
            "frame numbers must increase with the frame times"
        )
    return ids.astype(np.int64)


def set_timing(keypoints, rate=None, timestamps=None, starting_time=0.0, source="keypoints"):
    """Place the frames on the session clock.

    ``timestamps`` (N,) in seconds; or ``rate`` in Hz from ``starting_time`` in seconds. When the
    source numbers its frames (``frame_ids``), ``rate`` is the camera rate and the frame ids give
    each frame's time. Without either, the source's own clock (NWB) is kept. Regular timestamps
    become a rate (:func:`regularize_clock`).
    """
    num_frames = keypoints.positions.shape[0]
    rate = check_rate(rate)
    starting_time = check_time(starting_time if starting_time is not None else 0.0)
    if rate is not None and timestamps is not None:
        raise InputError(f"{source}: give a frame rate or timestamps, not both")
    ids = check_frame_ids(keypoints, source) if keypoints.frame_ids is not None else None
    if ids is not None:
        keypoints.frame_ids = ids
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
    elif rate is not None and ids is not None:
        steps = np.unique(np.diff(ids))
        if steps.size <= 1:
            step = int(steps[0]) if steps.size else 1
            keypoints.rate, keypoints.starting_time, keypoints.timestamps = rate / step, starting_time, None
            if step != 1:
                keypoints.notes.append(
                    f"{keypoints.frame_ids_name} steps by {step}: one frame in {step} of the {rate:g} Hz camera"
                )
        else:
            keypoints.timestamps = starting_time + (ids - ids[0]) / rate
            keypoints.rate = keypoints.starting_time = None
            keypoints.notes.append(f"frame times from {keypoints.frame_ids_name} at the {rate:g} Hz camera rate")
    elif rate is not None:
        keypoints.rate, keypoints.starting_time, keypoints.timestamps = rate, starting_time, None
    elif keypoints.rate is None and keypoints.timestamps is None:
        raise InputError(f"{source}: give the frame rate (--rate) or per-frame timestamps (--timestamps)")
    if keypoints.rate is not None:  # a source's own clock (NWB) is checked like a given one
        keypoints.rate = check_rate(keypoints.rate, f"{source}: rate")
        keypoints.starting_time = check_time(keypoints.starting_time or 0.0, f"{source}: starting_time")
    elif keypoints.timestamps is not None and not np.all(np.isfinite(keypoints.timestamps)):
        raise InputError(f"{source}: timestamps contain NaN or infinite values")
    return regularize_clock(keypoints)


def regular_clock(timestamps, tolerance=REGULAR_CLOCK_TOLERANCE):
    """``(rate Hz, starting_time s)`` when every timestamp is within ``tolerance`` frame periods
    of a regular grid through the first and last ones, else None."""
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timestamps.size < 2:
        return None
    period = (timestamps[-1] - timestamps[0]) / (timestamps.size - 1)
    if not period > 0:
        return None
    grid = np.arange(timestamps.size)
    for rate in (float(f"{1 / period:.9g}"), 1 / period):  # the round rate when it fits as well
        if np.max(np.abs(timestamps - (timestamps[0] + grid / rate))) <= tolerance * period:
            return rate, float(timestamps[0])
    return None


def regularize_clock(keypoints):
    """Store regular timestamps as a rate and a starting time (see :func:`regular_clock`)."""
    if keypoints.timestamps is not None:
        clock = regular_clock(keypoints.timestamps)
        if clock is not None:
            keypoints.rate, keypoints.starting_time = clock
            keypoints.timestamps = None
            keypoints.notes.append(
                f"regular timestamps stored as {keypoints.rate:g} Hz from {keypoints.starting_time:g} s"
            )
    return keypoints


def _load_timestamps(timestamps):
    if isinstance(timestamps, (str, Path)):
        path = Path(timestamps)
        if not path.exists():
            raise InputError(f"{path}: no such timestamps file")
        try:
            values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path)
        except ValueError as error:
            raise InputError(f"{path}: not a list of numbers ({str(error).splitlines()[0][:80]})") from None
        return real_array(values, f"{path}").ravel()
    return real_array(timestamps, "timestamps").ravel()


def skeleton_to_nwb(spec, subject=None):
    return Skeleton(name=spec.name, nodes=spec.nodes, edges=spec.edges.astype("uint8"), subject=subject)


def behavior_skeleton(session_append, spec, source):
    """``(processing/behavior module, Skeleton)`` of an append: the session's skeleton of that name
    (which must have the same keypoints) or a new one added to its Skeletons."""
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
    series = []
    timing = (
        dict(timestamps=keypoints.timestamps)
        if keypoints.timestamps is not None
        else dict(rate=keypoints.rate, starting_time=keypoints.starting_time)
    )
    for k, node in enumerate(keypoints.skeleton.nodes):
        confidence = {}
        if keypoints.confidence is not None:
            confidence = dict(
                confidence=keypoints.confidence[:, k], confidence_definition=keypoints.confidence_definition
            )
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
    if description is None:
        description = f"3D keypoints from {keypoints.source_software} ({keypoints.layout})"
        if keypoints.frame_ids is not None:
            description += (
                f"; source frame numbers ({keypoints.frame_ids_name}) {keypoints.frame_ids[0]} to "
                f"{keypoints.frame_ids[-1]} in processing/{BEHAVIOR_MODULE}/{name}_frame_ids"
            )
    pose = PoseEstimation(
        name=name,
        pose_estimation_series=series,
        description=description,
        source_software=keypoints.source_software,
        skeleton=skeleton,
        source_video=source_video,
    )
    return pose


def frame_ids_to_nwb(keypoints, pose, name):
    """A TimeSeries of the source's frame number of each keypoint frame, on the keypoints' clock."""
    first = next(iter(pose.pose_estimation_series.values()))
    timing = (
        dict(rate=keypoints.rate, starting_time=keypoints.starting_time) if keypoints.rate else dict(timestamps=first)
    )
    return TimeSeries(
        name=f"{name}_frame_ids",
        data=np.asarray(keypoints.frame_ids, dtype=np.int64),
        unit="frames",
        description=(
            f"Frame number ({keypoints.frame_ids_name} of {keypoints.source_software}) in the source videos of "
            f"each frame of processing/{BEHAVIOR_MODULE}/{name}."
        ),
        **timing,
    )


def read_source(source, skeleton=None, keypoint_names=None, units=None, animal=None, track=None):
    """Keypoints of any supported file, by its content: DANNCE .mat, Anipose .csv, NWB with
    ndx-pose, SLEAP analysis .h5 or triangulated SLEAP ``tracks`` .h5."""
    source = Path(source)
    if skeleton is not None and keypoint_names is not None:
        raise InputError("keypoint names: give --skeleton or --keypoint-names, not both")
    if not source.exists():
        raise InputError(f"{source}: no such file")
    if source.suffix.lower() == ".csv":
        return read_anipose_csv(source, units=units, skeleton=skeleton, keypoint_names=keypoint_names)
    hdf5 = h5py.is_hdf5(source)
    if source.suffix.lower() in (".nwb", ".h5", ".hdf5") and not hdf5:
        raise InputError(f"{source}: not an HDF5 file (NWB and SLEAP files are HDF5)")
    if source.suffix.lower() == ".mat" or not hdf5:
        if track is not None:
            raise InputError(f"{source}: --track is for SLEAP files; DANNCE files choose with --animal")
        return read_dannce(source, skeleton, units=units, animal=animal, keypoint_names=keypoint_names)
    try:
        with h5py.File(source, "r") as f:
            is_nwb = "nwb_version" in f.attrs
            is_sleap = "tracks" in f
    except OSError as error:
        raise InputError(f"{source}: cannot be read as HDF5 ({error})") from None
    if is_nwb:
        if animal is not None or track is not None:
            raise InputError(f"{source}: --animal and --track do not apply to NWB sources")
        keypoints = read_nwb_pose(source, units=units)
        return resolve_skeleton(keypoints, skeleton, keypoint_names, source)
    if is_sleap:
        return read_sleap_h5(source, skeleton=skeleton, keypoint_names=keypoint_names, track=track, units=units)
    raise InputError(f"{source}: HDF5 file neither NWB (ndx-pose) nor SLEAP (no 'tracks' dataset)")


@dataclass(frozen=True)
class KeypointImportConfig:
    """How to read a keypoint source and place its frames on the session clock.

    ``skeleton`` (a built-in name, a Label3D/DANNCE .mat or a SkeletonSpec) or ``keypoint_names``
    (a list, a comma-separated string or a text file) names the keypoints when the source does
    not; ``units`` is the unit of the source's values (mm, cm, m; default mm, or the unit an NWB
    source declares); ``animal`` (DANNCE, an index) and ``track`` (SLEAP, an index or a name)
    choose one of several animals. ``rate`` in Hz (the camera rate when the source numbers its
    frames) or ``timestamps`` ((N,) seconds, or a .npy/.txt file of them), from ``starting_time``
    in s. ``reference_frame`` overrides the source's description of its coordinate frame;
    ``videos`` are source video files, stored as external ImageSeries in ``acquisition``.
    """

    skeleton: object = None
    keypoint_names: object = None
    units: str | None = None
    animal: int | None = None
    track: int | str | None = None
    rate: float | None = None
    timestamps: object = field(default=None, compare=False)
    starting_time: float = 0.0
    reference_frame: str | None = None
    videos: tuple = ()

    def __post_init__(self):
        # Numbers are checked at the door, before any file is read.
        object.__setattr__(self, "rate", check_rate(self.rate, "rate", ValueError))
        starting_time = 0.0 if self.starting_time is None else self.starting_time
        object.__setattr__(self, "starting_time", check_time(starting_time, "starting_time", ValueError))
        if self.rate is not None and self.timestamps is not None:
            raise ValueError("rate and timestamps: give a frame rate or timestamps, not both")
        if self.skeleton is not None and self.keypoint_names is not None:
            raise ValueError("skeleton and keypoint_names: give --skeleton or --keypoint-names, not both")
        if self.units is not None and self.units not in UNIT_SCALE:
            raise ValueError(f"units {self.units!r}: use one of mm, cm, m")
        object.__setattr__(self, "videos", tuple(self.videos or ()))


@dataclass(frozen=True)
class KeypointImportResult:
    """What :func:`import_keypoints` appended: ``name`` is ``processing/behavior/<name>`` (the
    PoseEstimation), ``skeleton`` its Skeleton's name, ``frame_ids`` the path of the source frame
    numbers (or None), ``videos`` the paths of the video ImageSeries; ``keypoints`` the data as
    written (positions (N, K, 3) metres, NaN where missing, and the clock)."""

    path: Path
    name: str
    keypoints: Keypoints
    skeleton: str
    frame_ids: str | None = None
    videos: tuple = ()

    def summary(self):
        """One line: where the keypoints went, frames x keypoints, clock, missing detections."""
        return f"{self.path}: {self.name}: {self.keypoints.summary()}"


def import_keypoints(
    session, source, config: KeypointImportConfig | None = None, *, name="PoseEstimation", replace=False
):
    """Append the 3D keypoints of ``source`` to a session as ndx-pose Skeleton + PoseEstimation.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path. Sources: DANNCE .mat, an NWB file with ndx-pose (0.1.x or later), a SLEAP analysis .h5
    with 3D points, a triangulated SLEAP ``tracks`` .h5 (sleap-anipose ``points3d.h5``) or an
    Anipose 3D .csv; ``config`` says how to read it (:class:`KeypointImportConfig`). The keypoints
    go to ``processing/behavior/<name>`` (with ``<name>_frame_ids`` when the source numbers its
    frames); ``replace`` replaces both. Returns a :class:`KeypointImportResult`.
    """
    config = config or KeypointImportConfig()
    source = Path(source)
    keypoints = read_source(
        source, config.skeleton, config.keypoint_names, units=config.units, animal=config.animal, track=config.track
    )
    set_timing(
        keypoints,
        rate=config.rate,
        timestamps=config.timestamps,
        starting_time=config.starting_time,
        source=str(source),
    )
    if config.reference_frame:
        keypoints.reference_frame = config.reference_frame
    replace_names = [f"{BEHAVIOR_MODULE}/{name}", f"{BEHAVIOR_MODULE}/{name}_frame_ids"] if replace else ()
    with opened(session) as current, current.append(replace=replace_names) as s:
        s.check_new(name, BEHAVIOR_MODULE)
        if keypoints.frame_ids is not None:
            s.check_new(f"{name}_frame_ids", BEHAVIOR_MODULE)
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
            for video in config.videos
        ]
        for video in video_series:
            s.nwbfile.add_acquisition(video)
        # ndx-pose links one source video; a multi-camera rig keeps all of them in acquisition.
        pose = keypoints_to_nwb(
            keypoints, skeleton, name=name, source_video=video_series[0] if len(video_series) == 1 else None
        )
        module.add(pose)
        if keypoints.frame_ids is not None:
            module.add(frame_ids_to_nwb(keypoints, pose, name))
        path = current.path
    return KeypointImportResult(
        path=path,
        name=f"processing/{BEHAVIOR_MODULE}/{name}",
        keypoints=keypoints,
        skeleton=keypoints.skeleton.name,
        frame_ids=f"processing/{BEHAVIOR_MODULE}/{name}_frame_ids" if keypoints.frame_ids is not None else None,
        videos=tuple(f"acquisition/{video.name}" for video in video_series),
    )
