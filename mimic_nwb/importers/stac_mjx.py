"""stac-mjx results into a session: a BodyModel and a StacRegistration (and their keypoints).

:func:`read_stac_mjx` reads the file into a :class:`StacMjxOutput` (SI units, checked);
:func:`stac_mjx_registration` builds the body model and checks that the file's qpos and sites
belong to it; :func:`import_stac_mjx` appends the results. T is frames, K keypoints, nq the body
model's.

Layout (``talmolab/stac-mjx`` ``save_data_to_h5``). Datasets: ``config`` (YAML or JSON text,
bytes or str) with a ``model`` section (or those keys at the top level): ``KEYPOINT_MODEL_PAIRS``
(keypoint → body, the order of the keypoint sites), ``KEYPOINT_INITIAL_OFFSETS`` (keypoint →
"x y z" or [x, y, z], metres, unscaled model), ``SCALE_FACTOR``, optional ``MOCAP_SCALE_FACTOR``,
``ROOT_OPTIMIZATION_KEYPOINT``, ``TRUNK_OPTIMIZATION_KEYPOINTS``, ``SITES_TO_REGULARIZE``;
``kp_names`` (K,) byte strings, equal to the ``KEYPOINT_MODEL_PAIRS`` keys in that order;
``names_qpos`` (nq,) one joint name per qpos column (a prefix up to '/' such as ``walker/`` is
ignored); ``kp_data`` (T, K*3) keypoints in metres flattened keypoint-major (x, y, z of keypoint
0, then keypoint 1, ...) or (T, K, 3), NaN where missing; ``marker_sites`` (T, K*3) or (T, K, 3)
model keypoint sites, metres; ``offsets`` (K, 3) fitted site offsets in the body frames of the
*scaled* model, metres; ``qpos`` (T, nq). Optional and only checked for T rows when not empty:
``qvel``, ``xpos``, ``xquat``, ``names_xpos`` (they follow from qpos and the stored model).

Appends a BodyModel (the rodent, or ``mjcf``, scaled by ``SCALE_FACTOR``, keypoint sites on the
config's bodies at the fitted offsets) and a StacRegistration (qpos, model keypoints =
``marker_sites``, errors = the distance between ``marker_sites`` and ``kp_data``, sites with
fitted and initial offsets; identity world_to_model: stac-mjx fits in the keypoints' frame),
linked to the session's keypoints in ``processing/behavior`` when it has them (same keypoints,
frames and values within 0.1 mm), else ``kp_data`` written there as ``PoseEstimation`` on a
skeleton from ``kp_names`` (a built-in skeleton, e.g. rat23, when it has the same keypoints) at
the configured frame rate.
"""

from dataclasses import dataclass, replace
from pathlib import Path

import mujoco
import numpy as np
from ndx_pose import PoseEstimation

from ..body_model import SiteMap
from ..errors import InputError
from ..session import RESULTS_MODULE, opened, where_of
from ..stac.core import model_keypoint_positions
from ..writers import body_model_to_nwb, registration_to_nwb
from .hdf5 import file_sha256, name_list, numeric, open_h5, parse_config, read_dataset
from .keypoint_data import Keypoints, check_body_size, check_rate, check_time, skeleton_for_names, stored_keypoints
from .keypoints import BEHAVIOR_MODULE
from .registration import KEYPOINTS_NAME, ImportedRegistration, add_keypoints, body_model_name, registration_body_model

# Largest distance (m) between the session's keypoints and a stac-mjx file's kp_data for them to
# be the same keypoints, and between marker_sites and the built model's sites for the same model.
SAME_KEYPOINTS_TOLERANCE = 1e-4
SAME_MODEL_TOLERANCE = 1e-3


@dataclass(frozen=True)
class StacMjxOutput:
    """A stac-mjx result: every K axis in ``keypoint_names`` order; metres."""

    keypoint_names: tuple
    keypoint_bodies: tuple
    initial_offsets: np.ndarray  # (K, 3) from the config, unscaled model
    offsets: np.ndarray  # (K, 3) fitted, scaled model
    keypoints: np.ndarray  # (T, K, 3) kp_data
    marker_sites: np.ndarray  # (T, K, 3)
    qpos: np.ndarray  # (T, nq)
    qpos_names: tuple
    scale: float
    mocap_scale: float | None
    root_keypoint: str | None
    trunk_keypoints: tuple
    regularized_keypoints: tuple
    source: str

    def reordered(self, names):
        """The same output with every K axis in the order of ``names`` (same keypoints)."""
        index = [self.keypoint_names.index(n) for n in names]
        return replace(
            self,
            keypoint_names=tuple(names),
            keypoint_bodies=tuple(self.keypoint_bodies[i] for i in index),
            initial_offsets=self.initial_offsets[index],
            offsets=self.offsets[index],
            keypoints=self.keypoints[:, index],
            marker_sites=self.marker_sites[:, index],
        )

    def site_map(self):
        """The SiteMap of the file's config (initial offsets, unscaled model)."""
        sites = {k: (b, tuple(o)) for k, b, o in zip(self.keypoint_names, self.keypoint_bodies, self.initial_offsets)}
        try:
            return SiteMap(
                sites=sites,
                root_keypoint=self.root_keypoint,
                trunk_keypoints=self.trunk_keypoints,
                regularized_keypoints=self.regularized_keypoints,
                scale=self.scale,
            )
        except ValueError as error:
            raise InputError(f"{self.source}: config: {str(error).removeprefix('site map: ')}") from None


def _offset(value, keypoint, source):
    try:
        offset = [float(v) for v in (value.split() if isinstance(value, str) else value)]
    except (TypeError, ValueError):
        offset = []
    if len(offset) != 3 or not np.all(np.isfinite(offset)):
        raise InputError(f"{source}: config: KEYPOINT_INITIAL_OFFSETS of {keypoint} is {value!r}, expected 'x y z'")
    return offset


def _as_points(array, num_keypoints, key, source):
    """(T, K*3) keypoint-major or (T, K, 3) → (T, K, 3)."""
    if array.ndim == 2 and array.shape[1] == 3 * num_keypoints:
        return array.reshape(array.shape[0], num_keypoints, 3)
    if array.ndim == 3 and array.shape[1:] == (num_keypoints, 3):
        return array
    raise InputError(
        f"{source}: '{key}' has shape {array.shape}, expected (T, {3 * num_keypoints}) or (T, {num_keypoints}, 3) "
        f"for {num_keypoints} keypoints"
    )


def read_stac_mjx(path):
    """Read a stac-mjx ``.h5`` (layout in the module docstring) into a :class:`StacMjxOutput`."""
    source = str(path)
    with open_h5(path, "a stac-mjx .h5 (config, kp_names, kp_data, marker_sites, offsets, qpos)") as f:
        config = parse_config(read_dataset(f, "config", source), "config", source)
        kp_names = name_list(read_dataset(f, "kp_names", source), "kp_names", source)
        qpos_names = name_list(read_dataset(f, "names_qpos", source), "names_qpos", source)
        kp_data = numeric(read_dataset(f, "kp_data", source), "kp_data", source, (2, 3)).astype(np.float64)
        marker_sites = numeric(read_dataset(f, "marker_sites", source), "marker_sites", source, (2, 3)).astype(
            np.float64
        )
        offsets = numeric(read_dataset(f, "offsets", source), "offsets", source, (1, 2)).astype(np.float64)
        qpos = numeric(read_dataset(f, "qpos", source), "qpos", source, 2).astype(np.float64)
        others = {key: read_dataset(f, key, source, optional=True) for key in ("qvel", "xpos", "xquat")}

    model_config = config.get("model", config)
    missing = [k for k in ("KEYPOINT_MODEL_PAIRS", "KEYPOINT_INITIAL_OFFSETS", "SCALE_FACTOR") if k not in model_config]
    if missing:
        raise InputError(f"{source}: config has no model {', '.join(missing)}")
    pairs = model_config["KEYPOINT_MODEL_PAIRS"]
    initial = model_config["KEYPOINT_INITIAL_OFFSETS"]
    if not isinstance(pairs, dict) or not isinstance(initial, dict):
        raise InputError(f"{source}: config: KEYPOINT_MODEL_PAIRS and KEYPOINT_INITIAL_OFFSETS must be mappings")
    if kp_names != list(pairs):
        only_file = [k for k in kp_names if k not in pairs]
        only_config = [k for k in pairs if k not in kp_names]
        detail = (
            f"only in kp_names: {only_file}, only in the config: {only_config}"
            if only_file or only_config or len(kp_names) != len(pairs)
            else "same keypoints in another order"
        )
        raise InputError(f"{source}: kp_names do not match the config's KEYPOINT_MODEL_PAIRS ({detail})")
    no_offset = [k for k in kp_names if k not in initial]
    if no_offset:
        raise InputError(f"{source}: config: KEYPOINT_INITIAL_OFFSETS has no offset for {no_offset}")
    num_keypoints = len(kp_names)

    keypoints = _as_points(kp_data, num_keypoints, "kp_data", source)
    marker_sites = _as_points(marker_sites, num_keypoints, "marker_sites", source)
    offsets = offsets.reshape(-1, 3) if offsets.ndim == 1 and offsets.size == 3 * num_keypoints else offsets
    if offsets.shape != (num_keypoints, 3) or not np.isfinite(offsets).all():
        raise InputError(f"{source}: 'offsets' has shape {offsets.shape}, expected finite ({num_keypoints}, 3)")
    if len(qpos_names) != qpos.shape[1]:
        raise InputError(f"{source}: names_qpos has {len(qpos_names)} names but qpos has {qpos.shape[1]} columns")
    frames = {"kp_data": len(keypoints), "marker_sites": len(marker_sites), "qpos": len(qpos)}
    frames.update({k: len(v) for k, v in others.items() if v is not None and np.size(v)})
    if len(set(frames.values())) > 1:
        raise InputError(f"{source}: datasets differ in frames: {', '.join(f'{k} {n}' for k, n in frames.items())}")
    if len(qpos) == 0:
        raise InputError(f"{source}: no frames")
    check_body_size(keypoints, f"{source}: kp_data", "m")
    try:
        scale = float(model_config["SCALE_FACTOR"])
        mocap_scale = float(model_config["MOCAP_SCALE_FACTOR"]) if "MOCAP_SCALE_FACTOR" in model_config else None
    except (TypeError, ValueError):
        raise InputError(f"{source}: config: SCALE_FACTOR and MOCAP_SCALE_FACTOR must be numbers") from None
    return StacMjxOutput(
        keypoint_names=tuple(kp_names),
        keypoint_bodies=tuple(str(pairs[k]) for k in kp_names),
        initial_offsets=np.array([_offset(initial[k], k, source) for k in kp_names]),
        offsets=offsets,
        keypoints=keypoints,
        marker_sites=marker_sites,
        qpos=qpos,
        qpos_names=tuple(qpos_names),
        scale=scale,
        mocap_scale=mocap_scale,
        root_keypoint=model_config.get("ROOT_OPTIMIZATION_KEYPOINT"),
        trunk_keypoints=tuple(model_config.get("TRUNK_OPTIMIZATION_KEYPOINTS") or ()),
        regularized_keypoints=tuple(model_config.get("SITES_TO_REGULARIZE") or ()),
        source=source,
    )


def stac_mjx_registration(output: StacMjxOutput, mjcf=None):
    """(body model with the fitted sites, ImportedRegistration) of a stac-mjx output.

    Checks that qpos fits the body model (nq, joint names) and that the model, at the fitted
    offsets, puts its sites where the file's ``marker_sites`` are (same MJCF and scale).
    """
    model = registration_body_model(output.site_map(), output.keypoint_names, output.qpos, output.source, mjcf=mjcf)
    joints, free = _joint_of_column(model)
    for column, (given, joint, is_free) in enumerate(zip(output.qpos_names, joints, free)):
        if not is_free and given.rpartition("/")[2] != joint:
            raise InputError(
                f"{output.source}: names_qpos[{column}] is {given!r} but qpos column {column} of the body model "
                f"({Path(model.source).name}) is joint {joint!r}: made with another MJCF?"
            )
    fitted = model.with_site_offsets(output.offsets)
    registration = ImportedRegistration(
        qpos=output.qpos,
        model_keypoints=output.marker_sites,
        keypoints=output.keypoints,
        offsets=output.offsets,
        initial_offsets=np.asarray(model.initial_offsets),
        keypoint_names=output.keypoint_names,
        keypoint_bodies=fitted.keypoint_bodies,
    )
    valid = registration.valid
    if valid.any():
        sites = model_keypoint_positions(fitted, output.qpos[valid], output.offsets)
        gap = np.nanmax(np.linalg.norm(sites - output.marker_sites[valid], axis=2))
        if gap > SAME_MODEL_TOLERANCE:
            raise InputError(
                f"{output.source}: marker_sites are up to {1000 * gap:.1f} mm from the sites of qpos on the body model "
                f"({Path(model.source).name}, scale {output.scale:g}): made with another MJCF? (pass mjcf)"
            )
    return fitted, registration


def _joint_of_column(model):
    """(nq,) joint name of every qpos column and whether that joint is free."""
    names, free = [], []
    sizes = {int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4}
    for j in range(model.model.njnt):
        kind = int(model.model.jnt_type[j])
        names += [model.model.joint(j).name] * sizes.get(kind, 1)
        free += [kind == int(mujoco.mjtJoint.mjJNT_FREE)] * sizes.get(kind, 1)
    return names, free


def match_session_keypoints(output, pose, path, source, rate=None):
    """A stac-mjx output checked against, and put in the order of, the session's keypoints.

    ``pose`` is the session's PoseEstimation (``path`` the session file, ``source`` the stac-mjx
    file, for the messages). The output's ``kp_data`` must be those keypoints (same names, frames
    and positions within ``SAME_KEYPOINTS_TOLERANCE``); the keypoints' clock is the frames' clock,
    and a ``rate`` (Hz) given must agree with it. Returns (output in skeleton order, timing: a
    ``rate``/``starting_time`` dict, or None for timestamps).
    """
    stored = stored_keypoints(pose, path)
    positions, keypoint_names = stored.positions, stored.skeleton.nodes
    if sorted(keypoint_names) != sorted(output.keypoint_names):
        raise InputError(
            f"{source}: kp_names are not the keypoints of the session's {pose.name} ({', '.join(keypoint_names)})"
        )
    output = output.reordered(keypoint_names)
    if len(positions) != len(output.qpos):
        raise InputError(f"{source}: {len(output.qpos)} frames but the session's {pose.name} has {len(positions)}")
    gap = np.nanmax(np.abs(positions - output.keypoints), initial=0.0)
    if gap > SAME_KEYPOINTS_TOLERANCE:
        raise InputError(
            f"{source}: kp_data differ from the session's {pose.name} by up to {1000 * gap:.2f} mm: "
            "not the same keypoints"
        )
    timing = _pose_timing(pose)
    if rate is not None and (timing is None or abs(timing["rate"] - rate) > 1e-9 * rate):
        raise InputError(f"rate: the session's keypoints set the frame times; do not pass {rate} Hz")
    return output, timing


def _pose_timing(pose):
    first = next(iter(pose.pose_estimation_series.values()))
    return dict(rate=first.rate, starting_time=first.starting_time) if first.rate is not None else None


@dataclass(frozen=True)
class StacMjxImportConfig:
    """How to place a stac-mjx file in a session.

    ``rate`` (Hz) and ``starting_time`` (s) place the frames when the session has no keypoints
    (otherwise the frames are the session's keypoint frames, and a ``rate`` must agree with
    theirs); ``mjcf`` is the model stac-mjx fitted (default: the dm_control rodent).
    """

    rate: float | None = None
    starting_time: float = 0.0
    mjcf: str | Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "rate", check_rate(self.rate, "rate", ValueError))
        object.__setattr__(self, "starting_time", check_time(self.starting_time, "starting_time", ValueError))


@dataclass(frozen=True)
class StacMjxImportResult:
    """What :func:`import_stac_mjx` appended: the StacRegistration at ``name``
    (``processing/mimic/<name>``), its BodyModel at ``body_model``, linked to the keypoints at
    ``keypoints`` (added by this import when ``keypoints_added``); ``registration`` holds the
    numbers written (qpos, errors in metres, offsets)."""

    path: Path
    name: str
    body_model: str
    keypoints: str
    keypoints_added: bool
    skeleton: str
    registration: ImportedRegistration
    source: Path

    def summary(self):
        """One line: frames x keypoints, mean keypoint error, where the keypoints come from."""
        num_frames, num_keypoints = self.registration.errors.shape
        if self.keypoints_added:
            note = f"keypoints added as {self.keypoints} ({self.skeleton})"
        else:
            note = f"linked to the session's {self.keypoints.rpartition('/')[2]}"
        return (
            f"{self.path}: {self.name}: {num_frames} frames x {num_keypoints} keypoints from stac-mjx "
            f"{self.source.name}, mean keypoint error {1000 * self.registration.mean_error:.2f} mm; {note}"
        )


def import_stac_mjx(
    session,
    source,
    config: StacMjxImportConfig | None = None,
    *,
    keypoints=None,
    name="StacRegistration",
    replace=False,
):
    """Append a stac-mjx result: BodyModel + StacRegistration (+ its keypoints when the session has none).

    ``session`` is a :class:`~mimic_nwb.session.Session` opened with mode ``"a"`` or a session
    path; ``source`` the stac-mjx ``.h5`` (layout in the module docstring). The registration links
    the session's keypoints (``processing/behavior``: the PoseEstimation named ``keypoints``, or
    the only one), which must be the file's ``kp_data``; a session without keypoints gets them
    from ``kp_data`` as ``PoseEstimation``. The registration goes to ``processing/mimic/<name>``,
    its BodyModel to ``BodyModel`` (``BodyModel_<name>`` for another ``name``); ``replace``
    replaces both. Returns a :class:`StacMjxImportResult`.
    """
    config = config or StacMjxImportConfig()
    source = Path(source)
    output = read_stac_mjx(source)
    model_name = body_model_name(name)
    keypoints_path = f"processing/{BEHAVIOR_MODULE}/{KEYPOINTS_NAME}"
    with opened(session) as current:
        has_keypoints = keypoints is not None or current.results(PoseEstimation, BEHAVIOR_MODULE)
        pose = current.keypoints(keypoints) if has_keypoints else None
        if pose is not None:
            keypoints_path = where_of(pose)
            output, timing = match_session_keypoints(output, pose, current.path, source, config.rate)
            skeleton = pose.skeleton.name if pose.skeleton is not None else pose.name
            inputs = current.object_ids(pose)
        else:
            if config.rate is None:
                raise InputError(f"{source}: the session has no keypoints; give the frame rate (--rate)")
            skeleton_spec = skeleton_for_names(output.keypoint_names, "stac_mjx_keypoints")
            output = output.reordered(skeleton_spec.nodes)
            skeleton = skeleton_spec.name
            new_keypoints = Keypoints(
                positions=output.keypoints,
                skeleton=skeleton_spec,
                source_software="stac-mjx (kp_data)",
                layout="stac-mjx .h5 kp_data",
                reference_frame=(
                    "the frame of the keypoints given to stac-mjx, scaled to metres by its MOCAP_SCALE_FACTOR "
                    f"({output.mocap_scale})"
                ),
                rate=config.rate,
                starting_time=config.starting_time,
            )
            timing = dict(rate=config.rate, starting_time=config.starting_time)
            inputs = {}
        fitted, registration = stac_mjx_registration(output, mjcf=config.mjcf)
        parameters = {
            "format": "stac-mjx",
            "source": str(source),
            "source_sha256": file_sha256(source),
            "scale": output.scale,
            "mocap_scale_factor": output.mocap_scale,
            "mjcf": str(fitted.source),
            "keypoints": keypoints_path,
        }
        with current.append(replace=[name, model_name] if replace else (), inputs=inputs) as s:
            s.check_new(name)
            s.check_new(model_name)
            linked = s.input(keypoints_path, inputs[keypoints_path]) if inputs else add_keypoints(s, new_keypoints)
            body_model = s.add(
                body_model_to_nwb(fitted, model_name, f"{fitted.source} (keypoint sites at the stac-mjx offsets)"),
                parameters={"scale": fitted.scale, "actuators": fitted.actuator_kind, "mjcf": str(fitted.source)},
            )
            s.add(
                registration_to_nwb(registration, fitted, body_model, linked, timing, name, source_software="stac-mjx"),
                parameters=parameters,
            )
        path = current.path
    return StacMjxImportResult(
        path=path,
        name=f"processing/{RESULTS_MODULE}/{name}",
        body_model=f"processing/{RESULTS_MODULE}/{model_name}",
        keypoints=keypoints_path,
        keypoints_added=not inputs,
        skeleton=skeleton,
        registration=registration,
        source=source,
    )
