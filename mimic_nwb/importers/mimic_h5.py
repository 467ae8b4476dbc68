"""MIMIC per-session HDF5 files into a session: keypoints, registration, binned spike counts, labels.

:func:`read_mimic_h5` reads the file into a :class:`MimicSession` (SI units, checked);
:func:`mimic_registration` makes the registration of its qpos on the rodent; :func:`import_mimic_h5`
appends the results. T is frames, U units.

Layout. ``/pose/keypoints`` (T, 3, 23) millimetres, rat23 keypoint order; ``/pose/qpos`` (T, 74)
on the rodent; optional ``/ephys/spike_counts`` (bins, U) spike counts in 20 ms bins covering the
frames' span (to half a bin) with optional ``/ephys/active_units`` (U,) bool mask (and optional
``brain_region`` attribute on ``/ephys``); optional ``/behavior/motion_mapper`` (T,) integer
cluster id per frame (NaN: unlabelled). Frames at 50 Hz unless told.

Appends PoseEstimation (rat23, metres), BodyModel + StacRegistration (rodent with the rat23 site
map; model keypoints by forward kinematics at the site map's offsets, so errors include the
offsets the original fit calibrated), BinnedSpikeCounts (counts stay integer counts: no spike
times are invented) and ``intervals/behavior_labels`` (run-length bouts, label ``cluster_<id>``,
column ``cluster_id``).
"""

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

import ndx_mimic

from ..data import BUILTIN_SITE_MAPS, data_path
from ..errors import InputError
from ..session import RESULTS_MODULE, opened
from ..stac.core import model_keypoint_positions
from ..storage import compressed
from ..writers import body_model_to_nwb, registration_to_nwb
from .hdf5 import attribute_dict, file_sha256, numeric, open_h5, read_dataset
from .keypoint_data import (
    DANNCE_REFERENCE_FRAME,
    Keypoints,
    SkeletonSpec,
    check_body_size,
    check_rate,
    check_time,
    load_skeleton,
)
from .keypoints import BEHAVIOR_MODULE
from .labels import bouts_from_frames, bouts_to_nwb, check_bouts
from .registration import KEYPOINTS_NAME, ImportedRegistration, add_keypoints, body_model_name, registration_body_model

MIMIC_FRAME_RATE = 50.0
MIMIC_BIN_SIZE = 0.02
MIMIC_SKELETON = "rat23"
LABELS_NAME = "behavior_labels"  # intervals/behavior_labels
COUNTS_NAME = "BinnedSpikeCounts"


@dataclass(frozen=True)
class MimicSession:
    """A MIMIC per-session HDF5: T frames on ``rate``, bins of ``bin_size`` s, SI units."""

    keypoints: np.ndarray  # (T, 23, 3) metres, rat23 order
    qpos: np.ndarray  # (T, nq)
    spike_counts: np.ndarray | None  # (bins, U) integer counts
    active_units: np.ndarray | None  # (U,) bool
    cluster_ids: np.ndarray | None  # (T,) int64 (-1 where unlabelled)
    labelled: np.ndarray | None  # (T,) bool
    brain_region: str | None
    rate: float
    bin_size: float
    skeleton: SkeletonSpec
    source: str

    @property
    def num_frames(self):
        return len(self.qpos)


def read_mimic_h5(path, rate=MIMIC_FRAME_RATE, bin_size=MIMIC_BIN_SIZE):
    """Read a MIMIC per-session HDF5 (layout in the module docstring) into a :class:`MimicSession`."""
    source = str(path)
    rate = check_rate(rate)
    if not (np.isfinite(bin_size) and bin_size > 0):
        raise InputError(f"bin_size: {bin_size} s must be finite and positive")
    skeleton = load_skeleton(MIMIC_SKELETON)
    with open_h5(path, "a MIMIC per-session HDF5 (/pose/keypoints, /pose/qpos, ...)") as f:
        keypoints = numeric(read_dataset(f, "pose/keypoints", source), "/pose/keypoints", source, 3).astype(np.float64)
        qpos = numeric(read_dataset(f, "pose/qpos", source), "/pose/qpos", source, 2).astype(np.float64)
        counts = read_dataset(f, "ephys/spike_counts", source, optional=True)
        active = read_dataset(f, "ephys/active_units", source, optional=True)
        clusters = read_dataset(f, "behavior/motion_mapper", source, optional=True)
        region = attribute_dict(f["ephys"]).get("brain_region") if isinstance(f.get("ephys"), h5py.Group) else None

    num_keypoints = len(skeleton.nodes)
    if keypoints.shape[1:] != (3, num_keypoints):
        raise InputError(
            f"{source}: '/pose/keypoints' has shape {keypoints.shape}, expected (T, 3, {num_keypoints}) "
            f"({MIMIC_SKELETON}, millimetres)"
        )
    num_frames = len(keypoints)
    if num_frames == 0:
        raise InputError(f"{source}: '/pose/keypoints' has no frames")
    if len(qpos) != num_frames:
        raise InputError(f"{source}: /pose/keypoints has {num_frames} frames but /pose/qpos has {len(qpos)}")
    positions = np.transpose(keypoints, (0, 2, 1)) * 1e-3
    check_body_size(positions, f"{source}: /pose/keypoints", "mm")

    active_units = None
    if counts is not None:
        counts = numeric(counts, "/ephys/spike_counts", source, 2)
        if counts.dtype.kind == "f":
            if not np.isfinite(counts).all() or np.any(counts != np.round(counts)):
                raise InputError(f"{source}: '/ephys/spike_counts' are not whole numbers (expected spike counts)")
        if counts.size and counts.min() < 0:
            raise InputError(f"{source}: '/ephys/spike_counts' has negative counts")
        counts = counts.astype(np.min_scalar_type(max(int(counts.max(initial=0)), 1)))
        span_bins, span_frames = len(counts) * bin_size, num_frames / rate
        if abs(span_bins - span_frames) > bin_size / 2:
            raise InputError(
                f"{source}: /ephys/spike_counts covers {span_bins:g} s ({len(counts)} bins of {1000 * bin_size:g} ms) "
                f"but the frames cover {span_frames:g} s ({num_frames} at {rate:g} Hz)"
            )
        if active is not None:
            active = np.asarray(active)
            if active.shape != (counts.shape[1],) or not np.isin(active, (0, 1)).all():
                raise InputError(
                    f"{source}: '/ephys/active_units' must be a 0/1 mask of shape ({counts.shape[1]},), got {active.shape}"
                )
            active_units = active.astype(bool)
    elif active is not None:
        raise InputError(f"{source}: '/ephys/active_units' given without '/ephys/spike_counts'")

    cluster_ids = labelled = None
    if clusters is not None:
        clusters = numeric(clusters, "/behavior/motion_mapper", source, 1)
        if len(clusters) != num_frames:
            raise InputError(
                f"{source}: /behavior/motion_mapper has {len(clusters)} frames but /pose/keypoints has {num_frames}"
            )
        labelled = np.isfinite(clusters) if clusters.dtype.kind == "f" else np.ones(num_frames, bool)
        if np.any(clusters[labelled] != np.round(clusters[labelled])):
            raise InputError(f"{source}: '/behavior/motion_mapper' cluster ids are not integers")
        cluster_ids = np.where(labelled, clusters, -1).astype(np.int64)
    return MimicSession(
        keypoints=positions,
        qpos=qpos,
        spike_counts=counts,
        active_units=active_units,
        cluster_ids=cluster_ids,
        labelled=labelled,
        brain_region=region,
        rate=float(rate),
        bin_size=float(bin_size),
        skeleton=skeleton,
        source=source,
    )


def mimic_registration(data: MimicSession, site_map=None):
    """(body model, ImportedRegistration) of a MIMIC session's qpos: model keypoints by forward kinematics.

    ``site_map`` defaults to the built-in rat23 map on the dm_control rodent; the sites sit at its
    offsets (the file has no fitted offsets).
    """
    site_map = site_map or data_path(BUILTIN_SITE_MAPS[MIMIC_SKELETON])
    model = registration_body_model(site_map, data.skeleton.nodes, data.qpos, f"{data.source}: /pose/qpos")
    offsets = np.asarray(model.initial_offsets)
    return model, ImportedRegistration(
        qpos=data.qpos,
        model_keypoints=model_keypoint_positions(model, data.qpos, offsets),
        keypoints=data.keypoints,
        offsets=offsets,
        initial_offsets=offsets,
        keypoint_names=model.keypoint_names,
        keypoint_bodies=model.keypoint_bodies,
    )


@dataclass(frozen=True)
class MimicH5ImportConfig:
    """How to place a MIMIC per-session HDF5 on the session clock: frames at ``rate`` (Hz) from
    ``starting_time`` (s); spike counts in bins of ``bin_size`` (s) from the same time."""

    rate: float = MIMIC_FRAME_RATE
    starting_time: float = 0.0
    bin_size: float = MIMIC_BIN_SIZE

    def __post_init__(self):
        object.__setattr__(self, "rate", check_rate(self.rate, "rate", ValueError))
        if self.rate is None:
            raise ValueError("rate: give the frame rate in Hz")
        object.__setattr__(self, "starting_time", check_time(self.starting_time, "starting_time", ValueError))
        try:
            bin_size = float(self.bin_size)
        except (TypeError, ValueError):
            raise ValueError(f"bin_size: {self.bin_size!r} is not a number of seconds") from None
        if not (np.isfinite(bin_size) and bin_size > 0):
            raise ValueError(f"bin_size: {bin_size} s must be finite and positive")
        object.__setattr__(self, "bin_size", bin_size)


@dataclass(frozen=True)
class MimicH5ImportResult:
    """What :func:`import_mimic_h5` appended: the StacRegistration at ``name``, its BodyModel at
    ``body_model``, the keypoints at ``keypoints``, the BinnedSpikeCounts at ``spike_counts`` and
    the bouts at ``labels`` (None when the file has none); ``data`` holds the numbers read (SI
    units), ``registration`` the registration written (errors in metres)."""

    path: Path
    name: str
    body_model: str
    keypoints: str
    spike_counts: str | None
    labels: str | None
    data: MimicSession
    registration: ImportedRegistration
    num_bouts: int = 0
    num_clusters: int = 0

    def summary(self):
        """One line: frames and rate, the registration's mean keypoint error, units and bins, bouts."""
        data = self.data
        counts = "no spike counts"
        if data.spike_counts is not None:
            active = int(data.active_units.sum()) if data.active_units is not None else data.spike_counts.shape[1]
            counts = f"{data.spike_counts.shape[1]} units x {len(data.spike_counts)} bins ({active} active)"
        labels = f"{self.num_bouts} bouts of {self.num_clusters} clusters" if self.labels else "no labels"
        return (
            f"{self.path}: {data.num_frames} frames at {data.rate:g} Hz from {Path(data.source).name}: "
            f"{self.keypoints.rpartition('/')[2]}, {self.name.rpartition('/')[2]} "
            f"(mean keypoint error {1000 * self.registration.mean_error:.2f} mm), {counts}, {labels}"
        )


def import_mimic_h5(
    session, source, config: MimicH5ImportConfig | None = None, *, name="StacRegistration", replace=False
):
    """Append a MIMIC per-session HDF5: keypoints, BodyModel + StacRegistration, binned counts, labels.

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``source`` the file (layout in the module docstring). Results:
    ``processing/behavior/PoseEstimation``, ``processing/mimic/<name>`` and its BodyModel
    (``BodyModel``, or ``BodyModel_<name>``), ``processing/mimic/BinnedSpikeCounts`` and
    ``intervals/behavior_labels`` (the last two when the file has them). ``replace`` replaces all
    of them. Returns a :class:`MimicH5ImportResult`.
    """
    config = config or MimicH5ImportConfig()
    source = Path(source)
    starting_time = config.starting_time
    data = read_mimic_h5(source, rate=config.rate, bin_size=config.bin_size)
    model, registration = mimic_registration(data)
    times = starting_time + np.arange(data.num_frames) / data.rate
    bouts = None
    if data.cluster_ids is not None and data.labelled.any():
        labels = np.where(data.labelled, np.char.add("cluster_", data.cluster_ids.astype(str)), "")
        bouts = bouts_from_frames(labels, times, 1.0 / data.rate, data.cluster_ids, source=f"{source}: motion_mapper")
        check_bouts(bouts, str(source), start=starting_time, end=times[-1] + 1.0 / data.rate)
    model_name = body_model_name(name)
    results = [
        name,
        model_name,
        f"{BEHAVIOR_MODULE}/{KEYPOINTS_NAME}",
        COUNTS_NAME,
        f"intervals/{LABELS_NAME}",
    ]
    timing = dict(rate=data.rate, starting_time=starting_time)
    provenance = {"format": "mimic-h5", "source": str(source), "source_sha256": file_sha256(source)}
    keypoints = Keypoints(
        positions=data.keypoints,
        skeleton=data.skeleton,
        layout="MIMIC per-session HDF5 /pose/keypoints",
        reference_frame=DANNCE_REFERENCE_FRAME,
        **timing,
    )
    with opened(session) as current:
        with current.append(replace=results if replace else ()) as s:
            s.check_new(name)
            s.check_new(model_name)
            if data.spike_counts is not None:
                s.check_new(COUNTS_NAME)
            if bouts is not None:
                s.check_new(LABELS_NAME, module="intervals")
            pose = add_keypoints(s, keypoints)
            body_model = s.add(
                body_model_to_nwb(
                    model, model_name, f"{model.source} (keypoint sites at the {MIMIC_SKELETON} site map)"
                ),
                parameters={"scale": model.scale, "actuators": model.actuator_kind, "mjcf": str(model.source)},
            )
            s.add(
                registration_to_nwb(
                    registration,
                    model,
                    body_model,
                    pose,
                    timing,
                    name,
                    source_software="mimic_nwb (forward kinematics)",
                ),
                parameters={
                    **provenance,
                    "model_keypoints": "forward kinematics of /pose/qpos at the site map offsets",
                },
            )
            if data.spike_counts is not None:
                num_units = data.spike_counts.shape[1]
                s.add(
                    ndx_mimic.BinnedSpikeCounts(
                        name=COUNTS_NAME,
                        data=compressed(data.spike_counts),
                        column_names=[f"unit_{i}" for i in range(num_units)],
                        bin_size=data.bin_size,
                        rate=1.0 / data.bin_size,
                        starting_time=float(starting_time),
                        brain_region=[data.brain_region] * num_units if data.brain_region else None,
                        active=data.active_units,
                        description=(
                            "Spike counts per unit in regular bins (MIMIC /ephys/spike_counts); spike times unknown."
                        ),
                    ),
                    parameters={**provenance, "bin_size": data.bin_size},
                )
            if bouts is not None:
                s.nwbfile.add_time_intervals(
                    bouts_to_nwb(
                        bouts,
                        name=LABELS_NAME,
                        description=f"Behaviour bouts: run-length motion-mapper clusters of {source.name}.",
                    )
                )
        path = current.path
    return MimicH5ImportResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        body_model=f"processing/{RESULTS_MODULE}/{model_name}",
        keypoints=f"processing/{BEHAVIOR_MODULE}/{KEYPOINTS_NAME}",
        spike_counts=f"processing/{RESULTS_MODULE}/{COUNTS_NAME}" if data.spike_counts is not None else None,
        labels=f"intervals/{LABELS_NAME}" if bouts is not None else None,
        data=data,
        registration=registration,
        num_bouts=len(bouts.start) if bouts is not None else 0,
        num_clusters=len(set(bouts.label)) if bouts is not None else 0,
    )
