"""Outputs of other tools into a session: stac-mjx, track-mjx rollouts, MIMIC per-session HDF5.

Each format has a pure reader (HDF5 file → arrays in SI units, checked) and an ``import_*``
adapter that appends the NWB types with :func:`mimic_nwb.session.append` and returns a one-line
summary. T is frames (or rollout steps), K keypoints; nq, nv, nu are the body model's.

**stac-mjx** (``talmolab/stac-mjx`` ``save_data_to_h5``; :func:`read_stac_mjx`). Datasets:
``config`` (YAML or JSON text, bytes or str) with a ``model`` section (or those keys at the top
level): ``KEYPOINT_MODEL_PAIRS`` (keypoint → body, the order of the keypoint sites),
``KEYPOINT_INITIAL_OFFSETS`` (keypoint → "x y z" or [x, y, z], metres, unscaled model),
``SCALE_FACTOR``, optional ``MOCAP_SCALE_FACTOR``, ``ROOT_OPTIMIZATION_KEYPOINT``,
``TRUNK_OPTIMIZATION_KEYPOINTS``, ``SITES_TO_REGULARIZE``; ``kp_names`` (K,) byte strings, equal
to the ``KEYPOINT_MODEL_PAIRS`` keys in that order; ``names_qpos`` (nq,) one joint name per qpos
column (a prefix up to '/' such as ``walker/`` is ignored); ``kp_data`` (T, K*3) keypoints in
metres flattened keypoint-major (x, y, z of keypoint 0, then keypoint 1, ...) or (T, K, 3), NaN
where missing; ``marker_sites`` (T, K*3) or (T, K, 3) model keypoint sites, metres; ``offsets``
(K, 3) fitted site offsets in the body frames of the *scaled* model, metres; ``qpos`` (T, nq).
Optional and only checked for T rows when not empty: ``qvel``, ``xpos``, ``xquat``,
``names_xpos`` (they follow from qpos and the stored model). Appends a BodyModel (the rodent, or
``mjcf``, scaled by ``SCALE_FACTOR``, keypoint sites on the config's bodies at the fitted
offsets) and a StacRegistration (qpos, model keypoints = ``marker_sites``, errors =
|``marker_sites`` − ``kp_data``|, sites with fitted and initial offsets; identity
world_to_model: stac-mjx fits in the keypoints' frame), linked to ``processing/behavior/
PoseEstimation``: the session's keypoints when it has them (same keypoints, frames and values
within 0.1 mm), else ``kp_data`` written there on a skeleton from ``kp_names`` (a built-in
skeleton, e.g. rat23, when it has the same keypoints) at the caller's frame rate.

**track-mjx rollout** (what ``track_mjx.analysis.rollout`` generates, saved to HDF5;
:func:`read_track_mjx`). Datasets: ``qposes_ref`` (T, nq) and ``qposes_rollout`` (T, nq);
``ctrl`` (T, nu) or (T-1, nu) (track-mjx's controls between its T states: a NaN row is appended);
optional ``reward`` (or ``state_rewards``) (T,); optional group ``rewards`` of per-term (T,)
datasets; optional group ``activations`` of (T, units) or (T-1, units) datasets (nested groups
give names joined by '.'), whose layer kind comes from the name (case-insensitive, first match:
lstm…cell/cell_state → lstm_cell; lstm/hidden_state → lstm_hidden; latent_mean/mean/mu →
latent_mean; latent_scale/logvar/log_var/log_std/scale/std/sigma → latent_scale (stored as
written); latent_sample/intention/latent/z → latent_sample; encoder; decoder; action/ctrl/policy
→ action) or from ``layer_kinds``; optional ``observation_mean``/``observation_std`` (inputs,);
optional ``config`` (JSON/YAML text, track-mjx's config). File attributes, all optional:
``physics_timestep``, ``control_timestep`` (s), ``seed``, ``start_frame``, ``decoder_kind``,
``latent_size``, ``reference_window``, ``checkpoint_sha256``, ``architecture``, ``training``,
``observation_spec`` (JSON text). Appends SimulationRollout_<name> (mode closed_loop; qpos,
actuator_controls, reward, reward_terms, one episode), ControllerNetwork_<name> and
NetworkActivations_<name>, linked to the session's StacRegistration and its BodyModel (or its
only BodyModel; without either, the dm_control rodent is added as BodyModel). See
:func:`controller_metadata` for what is filled when the file does not say.

**MIMIC per-session HDF5** (:func:`read_mimic_h5`). ``/pose/keypoints`` (T, 3, 23) millimetres,
rat23 keypoint order; ``/pose/qpos`` (T, 74) on the rodent; optional ``/ephys/spike_counts``
(bins, U) spike counts in 20 ms bins covering the frames' span (to half a bin) with optional
``/ephys/active_units`` (U,) bool mask (and optional ``brain_region`` attribute on ``/ephys``);
optional ``/behavior/motion_mapper`` (T,) integer cluster id per frame (NaN: unlabelled). Frames
at 50 Hz unless told. Appends PoseEstimation (rat23, metres), BodyModel + StacRegistration
(rodent with the rat23 site map; model keypoints by forward kinematics at the site map's
offsets, so errors include the offsets the original fit calibrated), BinnedSpikeCounts (counts
stay integer counts: no spike times are invented) and ``intervals/behavior_labels`` (run-length
bouts, label ``cluster_<id>``, column ``cluster_id``).
"""

import contextlib
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from .keypoints import (
    BEHAVIOR_MODULE,
    BUILTIN_SKELETONS,
    DANNCE_REFERENCE_FRAME,
    Keypoints,
    SkeletonSpec,
    behavior_skeleton,
    check_body_size,
    keypoints_to_nwb,
    load_skeleton,
)

FORMATS = ("stac-mjx", "track-mjx", "mimic-h5")
KEYPOINTS_NAME = "PoseEstimation"
# Largest distance (m) between the session's keypoints and a stac-mjx file's kp_data for them to
# be the same keypoints, and between marker_sites and the built model's sites for the same model.
SAME_KEYPOINTS_TOLERANCE = 1e-4
SAME_MODEL_TOLERANCE = 1e-3
# A track-mjx reference frame matches a registration frame within this (qpos units).
REFERENCE_MATCH_TOLERANCE = 1e-4
MIMIC_FRAME_RATE = 50.0
MIMIC_BIN_SIZE = 0.02
MIMIC_SKELETON = "rat23"
UNKNOWN = "unknown"

_LAYER_KIND_RULES = (
    (r"lstm.*(cell|_c\b)|cell_state", "lstm_cell"),
    (r"lstm|hidden_state", "lstm_hidden"),
    (r"latent_mean|(^|[._/])(mean|mu)([._/]|$)", "latent_mean"),
    (r"latent_scale|logvar|log_var|log_std|(^|[._/])(scale|std|sigma)([._/]|$)", "latent_scale"),
    (r"latent_sample|intention|latent|(^|[._/])z([._/]|$)", "latent_sample"),
    (r"encoder", "encoder"),
    (r"decoder", "decoder"),
    (r"action|ctrl|policy", "action"),
)


# ----------------------------------------------------------------------------------------------
# HDF5 reading helpers


@contextlib.contextmanager
def _open_h5(path, expected):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file (expected {expected})")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None
    with f:
        try:
            yield f
        except OSError as error:  # a damaged dataset
            raise InputError(f"{path}: cannot be read as HDF5 ({error})") from None


def _dataset(f, key, source, optional=False):
    """A dataset's value, or None when ``optional`` and absent."""
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        if optional:
            return None
        raise InputError(f"{source}: no dataset '{key}'")
    return obj[()]


def _numbers(value, key, source, ndim=None):
    """A numeric array (float64 unless integer), of ``ndim`` dimensions when given."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{source}: '{key}' is not numeric (dtype {array.dtype})")
    if array.dtype.kind == "b":
        array = array.astype(np.int64)
    if ndim is not None and array.ndim not in np.atleast_1d(ndim):
        raise InputError(f"{source}: '{key}' has shape {array.shape}, expected {_ndim_text(ndim)}")
    if array.dtype.kind == "f" and np.isinf(array).any():
        raise InputError(f"{source}: '{key}' contains infinite values")
    return array


def _ndim_text(ndim):
    return " or ".join(f"{n}-D" for n in np.atleast_1d(ndim))


def _text(value):
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _names(value, key, source):
    array = np.asarray(value)
    if array.ndim != 1 or array.dtype.kind not in "SUO":
        raise InputError(f"{source}: '{key}' must be a 1-D list of names, got shape {array.shape} ({array.dtype})")
    return [_text(v) for v in array]


def _parse_config(value, key, source):
    import yaml

    try:
        config = yaml.safe_load(_text(value))  # JSON is YAML
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise InputError(f"{source}: '{key}' is not YAML/JSON text ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{source}: '{key}' is not a mapping of settings")
    return config


def _attributes(obj):
    return {key: _text(v) if isinstance(v, (bytes, np.bytes_)) else v for key, v in obj.attrs.items()}


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


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _find_key(mapping, *keys):
    """The first value found under any of ``keys`` in a nested mapping (depth first), else None."""
    if not isinstance(mapping, dict):
        return None
    for key in keys:
        if key in mapping:
            return mapping[key]
    for value in mapping.values():
        found = _find_key(value, *keys)
        if found is not None:
            return found
    return None


# ----------------------------------------------------------------------------------------------
# A registration made elsewhere, written by mimic_nwb.stac.nwb.registration_to_nwb


@dataclass(frozen=True, eq=False)
class ImportedRegistration:
    """A registration computed by another tool, with the StacResult fields the writer needs.

    qpos (T, nq) (NaN rows: frames not fitted); model_keypoints and keypoints (T, K, 3) metres in
    the keypoints' frame; offsets and initial_offsets (K, 3) metres in the body frames of the
    scaled model; names and bodies of the K keypoints.
    """

    qpos: np.ndarray
    model_keypoints: np.ndarray
    keypoints: np.ndarray
    offsets: np.ndarray
    initial_offsets: np.ndarray
    keypoint_names: tuple
    keypoint_bodies: tuple
    world_from_input: np.ndarray = field(default_factory=lambda: np.eye(4))

    @cached_property
    def valid(self):
        """(T,) frames with a fitted pose."""
        return np.isfinite(self.qpos).all(axis=1)

    @cached_property
    def errors(self):
        """(T, K) distance between model and observed keypoint, metres; NaN where missing or not fitted."""
        errors = np.linalg.norm(self.model_keypoints - self.keypoints, axis=2)
        errors[~self.valid] = np.nan
        return errors

    @property
    def mean_error(self):
        errors = self.errors[np.isfinite(self.errors)]
        return float(errors.mean()) if errors.size else float("nan")


def _registration_parts(site_map, keypoint_names, qpos, source, mjcf=None, scale=None):
    """Build the body model of a registration and check its qpos columns."""
    from ..body_model import build_body_model

    try:
        model = build_body_model(site_map, keypoint_names, mjcf=mjcf, scale=scale)
    except (ValueError, FileNotFoundError) as error:
        raise InputError(f"{source}: body model: {error}") from None
    if qpos.shape[1] != model.nq:
        raise InputError(
            f"{source}: qpos has {qpos.shape[1]} columns but the body model ({model.model_name}, "
            f"{Path(model.source).name}) has nq {model.nq}"
        )
    return model


def _joint_of_column(model):
    """(nq,) joint name of every qpos column and whether that joint is free."""
    import mujoco

    names, free = [], []
    sizes = {int(mujoco.mjtJoint.mjJNT_FREE): 7, int(mujoco.mjtJoint.mjJNT_BALL): 4}
    for j in range(model.model.njnt):
        kind = int(model.model.jnt_type[j])
        names += [model.model.joint(j).name] * sizes.get(kind, 1)
        free += [kind == int(mujoco.mjtJoint.mjJNT_FREE)] * sizes.get(kind, 1)
    return names, free


# ----------------------------------------------------------------------------------------------
# stac-mjx


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
        from ..body_model import SiteMap

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


def read_stac_mjx(path):
    """Read a stac-mjx ``.h5`` (layout in the module docstring) into a :class:`StacMjxOutput`."""
    source = str(path)
    with _open_h5(path, "a stac-mjx .h5 (config, kp_names, kp_data, marker_sites, offsets, qpos)") as f:
        config = _parse_config(_dataset(f, "config", source), "config", source)
        kp_names = _names(_dataset(f, "kp_names", source), "kp_names", source)
        qpos_names = _names(_dataset(f, "names_qpos", source), "names_qpos", source)
        kp_data = _numbers(_dataset(f, "kp_data", source), "kp_data", source, (2, 3)).astype(np.float64)
        marker_sites = _numbers(_dataset(f, "marker_sites", source), "marker_sites", source, (2, 3)).astype(np.float64)
        offsets = _numbers(_dataset(f, "offsets", source), "offsets", source, (1, 2)).astype(np.float64)
        qpos = _numbers(_dataset(f, "qpos", source), "qpos", source, 2).astype(np.float64)
        others = {key: _dataset(f, key, source, optional=True) for key in ("qvel", "xpos", "xquat")}

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
    from ..stac.core import model_keypoint_positions

    model = _registration_parts(output.site_map(), output.keypoint_names, output.qpos, output.source, mjcf=mjcf)
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


def _skeleton_for(names, fallback_name):
    """A built-in skeleton with exactly these keypoints, else one without edges named ``fallback_name``."""
    for builtin in BUILTIN_SKELETONS:
        skeleton = load_skeleton(builtin)
        if sorted(skeleton.nodes) == sorted(names):
            return skeleton
    return SkeletonSpec(name=fallback_name, nodes=list(names), edges=np.zeros((0, 2), dtype=np.int64))


def _add_keypoints(s, keypoints, name=KEYPOINTS_NAME):
    """Add Skeleton (if new) + PoseEstimation to ``processing/behavior`` of an append."""
    s.check_new(name, BEHAVIOR_MODULE)
    module, skeleton = behavior_skeleton(s, keypoints.skeleton, s.path)
    pose = keypoints_to_nwb(keypoints, skeleton, name=name)
    module.add(pose)
    return pose


def _session_keypoints(nwbfile, name=KEYPOINTS_NAME):
    module = nwbfile.processing.get(BEHAVIOR_MODULE)
    return module.data_interfaces.get(name) if module is not None else None


def _pose_timing(pose):
    first = next(iter(pose.pose_estimation_series.values()))
    return dict(rate=first.rate, starting_time=first.starting_time) if first.rate is not None else None


def _body_model_name(name, default):
    return "BodyModel" if name == default else f"BodyModel_{name}"


def _check_rate(rate):
    if rate is not None and not (np.isfinite(rate) and rate > 0):
        raise InputError(f"rate: {rate} Hz must be positive")


def import_stac_mjx(session, source, rate=None, starting_time=0.0, name="StacRegistration", mjcf=None, replace=False):
    """Append a stac-mjx result: BodyModel + StacRegistration (+ its keypoints when the session has none).

    ``rate`` (Hz) places the frames when the session has no keypoints; otherwise the frames are
    the session's keypoint frames. The BodyModel is named ``BodyModel`` (``BodyModel_<name>`` for
    another ``name``). ``replace`` replaces both. Returns a one-line summary.
    """
    from ..stac.nwb import body_model_to_nwb, read_keypoints, registration_to_nwb
    from ..session import append

    _check_rate(rate)
    output = read_stac_mjx(source)
    body_model_name = _body_model_name(name, "StacRegistration")
    with append(session, replace=[name, body_model_name] if replace else ()) as s:
        s.check_new(name)
        s.check_new(body_model_name)
        pose = _session_keypoints(s.nwbfile)
        if pose is not None:
            pose, positions, names, _ = read_keypoints(s.nwbfile, session)
            if sorted(names) != sorted(output.keypoint_names):
                raise InputError(
                    f"{source}: kp_names are not the keypoints of the session's {KEYPOINTS_NAME} ({', '.join(names)})"
                )
            output = output.reordered(names)
            if len(positions) != len(output.qpos):
                raise InputError(
                    f"{source}: {len(output.qpos)} frames but the session's {KEYPOINTS_NAME} has {len(positions)}"
                )
            gap = np.nanmax(np.abs(positions - output.keypoints), initial=0.0)
            if gap > SAME_KEYPOINTS_TOLERANCE:
                raise InputError(
                    f"{source}: kp_data differ from the session's {KEYPOINTS_NAME} by up to {1000 * gap:.2f} mm: "
                    "not the same keypoints"
                )
            timing = _pose_timing(pose)
            if rate is not None and (timing is None or abs(timing["rate"] - rate) > 1e-9 * rate):
                raise InputError(f"rate: the session's keypoints set the frame times; do not pass {rate} Hz")
            keypoints_note = f"linked to the session's {KEYPOINTS_NAME}"
        else:
            if rate is None:
                raise InputError(f"{source}: the session has no keypoints; give the frame rate (--rate)")
            skeleton = _skeleton_for(output.keypoint_names, "stac_mjx_keypoints")
            output = output.reordered(skeleton.nodes)
            keypoints = Keypoints(
                positions=output.keypoints,
                skeleton=skeleton,
                source_software="stac-mjx (kp_data)",
                layout="stac-mjx .h5 kp_data",
                reference_frame=(
                    "the frame of the keypoints given to stac-mjx, scaled to metres by its MOCAP_SCALE_FACTOR "
                    f"({output.mocap_scale})"
                ),
                rate=float(rate),
                starting_time=float(starting_time),
            )
            pose = _add_keypoints(s, keypoints)
            timing = dict(rate=float(rate), starting_time=float(starting_time))
            keypoints_note = f"keypoints added as processing/{BEHAVIOR_MODULE}/{KEYPOINTS_NAME} ({skeleton.name})"
        fitted, registration = stac_mjx_registration(output, mjcf=mjcf)
        parameters = {
            "format": "stac-mjx",
            "source": str(source),
            "source_sha256": file_sha256(source),
            "scale": output.scale,
            "mocap_scale_factor": output.mocap_scale,
            "mjcf": str(fitted.source),
            "keypoints": f"processing/{BEHAVIOR_MODULE}/{KEYPOINTS_NAME}",
        }
        body_model = s.add(
            body_model_to_nwb(fitted, body_model_name, f"{fitted.source} (keypoint sites at the stac-mjx offsets)"),
            parameters={"scale": fitted.scale, "actuators": fitted.actuator_kind, "mjcf": str(fitted.source)},
        )
        s.add(
            registration_to_nwb(registration, fitted, body_model, pose, timing, name, source_software="stac-mjx"),
            parameters=parameters,
        )
    num_frames, num_keypoints = registration.errors.shape
    return (
        f"{session}: processing/mimic/{name}: {num_frames} frames x {num_keypoints} keypoints from stac-mjx "
        f"{Path(source).name}, mean keypoint error {1000 * registration.mean_error:.2f} mm; {keypoints_note}"
    )


# ----------------------------------------------------------------------------------------------
# track-mjx rollouts


def layer_kind_of(name):
    """The layer kind (ndx_mimic LAYER_KINDS) a layer name implies, else None."""
    lowered = name.lower()
    return next((kind for pattern, kind in _LAYER_KIND_RULES if re.search(pattern, lowered)), None)


@dataclass(frozen=True)
class TrackMjxRollout:
    """A track-mjx rollout: T steps; controls and activations padded to T rows with NaN when the file had T-1."""

    qpos_reference: np.ndarray  # (T, nq)
    qpos: np.ndarray  # (T, nq)
    ctrl: np.ndarray  # (T, nu)
    reward: np.ndarray | None  # (T,)
    reward_terms: dict  # name -> (T,)
    activations: dict  # layer name -> (T, units), dtype as written
    layer_kinds: dict  # layer name -> kind
    observation_mean: np.ndarray | None
    observation_std: np.ndarray | None
    attributes: dict
    config: dict | None
    padded: bool  # the file had T-1 controls (and activations)
    source: str

    @property
    def num_steps(self):
        return len(self.qpos)


def _pad_steps(array, num_steps, key, source):
    """(T, ...) as is, (T-1, ...) with a NaN row appended (track-mjx: one control fewer than states)."""
    if len(array) == num_steps:
        return array, False
    if len(array) == num_steps - 1:
        dtype = array.dtype if array.dtype.kind == "f" else np.float64
        return np.concatenate([array.astype(dtype), np.full((1, *array.shape[1:]), np.nan, dtype)]), True
    raise InputError(f"{source}: '{key}' has {len(array)} rows; the rollout has {num_steps} steps (T or T-1 expected)")


def read_track_mjx(path, layer_kinds=None):
    """Read a track-mjx rollout ``.h5`` (layout in the module docstring) into a :class:`TrackMjxRollout`.

    ``layer_kinds`` ({layer name: kind}) sets or overrides the kinds inferred from the names.
    """
    from ndx_mimic.mimic import LAYER_KINDS

    source = str(path)
    layer_kinds = dict(layer_kinds or {})
    wrong = {n: k for n, k in layer_kinds.items() if k not in LAYER_KINDS}
    if wrong:
        raise InputError(f"layer kinds {wrong}: each must be one of {', '.join(LAYER_KINDS)}")
    with _open_h5(path, "a track-mjx rollout .h5 (qposes_ref, qposes_rollout, ctrl, ...)") as f:
        qpos_reference = _numbers(_dataset(f, "qposes_ref", source), "qposes_ref", source, 2).astype(np.float64)
        qpos = _numbers(_dataset(f, "qposes_rollout", source), "qposes_rollout", source, 2).astype(np.float64)
        ctrl = _numbers(_dataset(f, "ctrl", source), "ctrl", source, 2).astype(np.float64)
        reward_key = "reward" if "reward" in f else "state_rewards"
        reward = _dataset(f, reward_key, source, optional=True)
        terms = {}
        if isinstance(f.get("rewards"), h5py.Group):
            terms = {k: v[()] for k, v in f["rewards"].items() if isinstance(v, h5py.Dataset)}
        layers = {}
        if isinstance(f.get("activations"), h5py.Group):
            f["activations"].visititems(
                lambda key, obj: layers.__setitem__(key.replace("/", "."), obj[()])
                if isinstance(obj, h5py.Dataset)
                else None
            )
        observation = [_dataset(f, k, source, optional=True) for k in ("observation_mean", "observation_std")]
        config = _dataset(f, "config", source, optional=True)
        attributes = _attributes(f)

    num_steps = len(qpos)
    if num_steps == 0:
        raise InputError(f"{source}: qposes_rollout has no steps")
    if qpos_reference.shape != qpos.shape:
        raise InputError(f"{source}: qposes_ref has shape {qpos_reference.shape} but qposes_rollout {qpos.shape}")
    ctrl, padded = _pad_steps(ctrl, num_steps, "ctrl", source)
    if reward is not None:
        reward = _numbers(reward, reward_key, source, (1, 2)).astype(np.float64).reshape(len(reward), -1)
        if reward.shape != (num_steps, 1):
            raise InputError(f"{source}: '{reward_key}' has shape {reward.shape[:1]}, expected ({num_steps},)")
        reward = reward[:, 0]
    for key, values in terms.items():
        values = _numbers(values, f"rewards/{key}", source, (1, 2)).astype(np.float64).reshape(len(values), -1)
        if values.shape != (num_steps, 1):
            raise InputError(f"{source}: 'rewards/{key}' has {values.shape[0]} rows, expected ({num_steps},)")
        terms[key] = values[:, 0]
    activations = {}
    for key, values in layers.items():
        values = _numbers(values, f"activations/{key}", source, (1, 2))
        values = values.reshape(len(values), -1) if values.ndim == 1 else values
        if values.dtype.kind != "f":
            values = values.astype(np.float32)
        values, layer_padded = _pad_steps(values, num_steps, f"activations/{key}", source)
        if layer_padded != padded:
            raise InputError(f"{source}: 'activations/{key}' has {len(layers[key])} rows but ctrl has {len(ctrl) - padded}")
        activations[key] = values
    unknown = [k for k in activations if k not in layer_kinds and layer_kind_of(k) is None]
    if unknown:
        raise InputError(
            f"{source}: layer kind of activations {unknown} unknown from the name; give it "
            f"(layer_kinds / --layer-kind NAME=KIND, KIND one of {', '.join(LAYER_KINDS)})"
        )
    extra = [k for k in layer_kinds if k not in activations]
    if extra:
        raise InputError(f"{source}: layer kinds given for {extra}, which are not in the activations group")
    for key, values in zip(("observation_mean", "observation_std"), observation):
        if values is not None and _numbers(values, key, source, 1).shape != np.shape(observation[0]):
            raise InputError(f"{source}: observation_mean and observation_std differ in shape")
    return TrackMjxRollout(
        qpos_reference=qpos_reference,
        qpos=qpos,
        ctrl=ctrl,
        reward=reward,
        reward_terms=terms,
        activations=activations,
        layer_kinds={k: layer_kinds.get(k) or layer_kind_of(k) for k in activations},
        observation_mean=None if observation[0] is None else np.asarray(observation[0], np.float64),
        observation_std=None if observation[1] is None else np.asarray(observation[1], np.float64),
        attributes=attributes,
        config=_parse_config(config, "config", source) if config is not None else None,
        padded=padded,
        source=source,
    )


def _plain(value):
    """``value`` as plain JSON types (YAML configs may hold dates and other objects)."""
    return json.loads(json.dumps(value, default=str))


def _json_text(value, default):
    """A JSON text attribute as given, or ``default`` dumped as JSON."""
    if value is None:
        return json.dumps(default, sort_keys=True, default=str)
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def controller_metadata(rollout: TrackMjxRollout):
    """The ControllerNetwork fields of a track-mjx rollout; file attributes first, then ``config``.

    When the file does not say: ``decoder_kind`` 'lstm' if the config has ``use_lstm`` true or a
    layer is an LSTM state, else 'mlp'; ``latent_size`` the config's ``intention_size`` /
    ``latent_size``, else the width of the latent_mean (or latent_sample) layer, else 0;
    ``reference_window`` the config's ``traj_length`` / ``reference_window``, else 0 (unknown);
    ``architecture`` JSON of the recorded layers (kind, units) and the config's ``network_config``;
    ``training`` JSON of the config's ``train_setup`` (else {}); ``observation_spec`` '[]';
    ``checkpoint_sha256`` 'unknown'; observation mean and std empty arrays.
    """
    attrs, config = rollout.attributes, rollout.config or {}
    kinds = rollout.layer_kinds
    widths = {name: int(values.shape[1]) for name, values in rollout.activations.items()}
    use_lstm = _find_key(config, "use_lstm")
    decoder_kind = attrs.get("decoder_kind") or (
        "lstm" if use_lstm or (use_lstm is None and {"lstm_hidden", "lstm_cell"} & set(kinds.values())) else "mlp"
    )
    latent_layer = next((n for kind in ("latent_mean", "latent_sample") for n, k in kinds.items() if k == kind), None)
    latent_size = attrs.get("latent_size", _find_key(config, "intention_size", "latent_size"))
    if latent_size is None:
        latent_size = widths[latent_layer] if latent_layer else 0
    reference_window = attrs.get("reference_window", _find_key(config, "traj_length", "reference_window"))
    architecture = {
        "source": "track-mjx",
        "decoder_kind": decoder_kind,
        "layers": {name: {"kind": kinds[name], "units": widths[name]} for name in rollout.activations},
    }
    network_config = _find_key(config, "network_config")
    if network_config is not None:
        architecture["network_config"] = network_config
    return dict(
        architecture=_json_text(attrs.get("architecture"), architecture),
        decoder_kind=str(decoder_kind),
        latent_size=int(latent_size),
        reference_window=int(reference_window or 0),
        observation_spec=_json_text(attrs.get("observation_spec"), []),
        training=_json_text(attrs.get("training"), _find_key(config, "train_setup") or {}),
        checkpoint_sha256=str(attrs.get("checkpoint_sha256", UNKNOWN)),
        observation_mean=rollout.observation_mean if rollout.observation_mean is not None else np.zeros(0),
        observation_std=rollout.observation_std if rollout.observation_std is not None else np.zeros(0),
    )


def _only(objects, kind, path, chosen=None):
    """The object named ``chosen`` among ``objects`` ({name: obj}), or the only one; None when there are none."""
    if chosen is not None:
        if chosen not in objects:
            raise InputError(f"{path}: no {kind} named {chosen!r} (found: {', '.join(objects) or 'none'})")
        return objects[chosen]
    if len(objects) > 1:
        raise InputError(f"{path}: several {kind}s ({', '.join(objects)}); choose one")
    return next(iter(objects.values()), None)


def _series_times(series):
    return np.asarray(series.get_timestamps(), dtype=np.float64)


def import_track_mjx(
    session,
    source,
    rate=None,
    name="track_mjx",
    layer_kinds=None,
    reference=None,
    body_model=None,
    replace=False,
):
    """Append a track-mjx rollout: SimulationRollout_<name>, ControllerNetwork_<name>, NetworkActivations_<name>.

    The rollout links the session's StacRegistration (``reference`` names one when there are
    several) and its BodyModel, or the session's only BodyModel (``body_model``); a session with
    neither gets the dm_control rodent as ``BodyModel``. qpos columns must equal the body model's
    nq, controls its nu. Steps are ``control_timestep`` apart (file attribute, else 1/``rate``,
    else the reference's frame period) and start at the time of the reference frame the rollout
    started from (file attribute ``start_frame``, else found by matching ``qposes_ref[0]`` to the
    reference's qpos, else 0). ``replace`` replaces the three results. Returns a one-line summary.
    """
    import ndx_mimic
    from pynwb import TimeSeries

    from ..body_model import build_body_model
    from ..session import append
    from ..stac.nwb import body_model_to_nwb
    from ..storage import compressed

    _check_rate(rate)
    rollout = read_track_mjx(source, layer_kinds)
    names = {kind: f"{kind}_{name}" for kind in ("SimulationRollout", "ControllerNetwork", "NetworkActivations")}
    num_steps, nq = rollout.qpos.shape
    with append(session, replace=list(names.values()) if replace else ()) as s:
        for result in names.values():
            s.check_new(result)
        mimic = s.nwbfile.processing.get("mimic")
        results = mimic.data_interfaces if mimic is not None else {}
        registrations = {n: o for n, o in results.items() if o.neurodata_type == "StacRegistration"}
        registration = _only(registrations, "StacRegistration", session, reference)
        if registration is not None:
            model_nwb = registration.body_model
        else:
            models = {n: o for n, o in results.items() if o.neurodata_type == "BodyModel"}
            model_nwb = _only(models, "BodyModel", session, body_model)
        if model_nwb is None:
            default = build_body_model(None)
            if nq != default.nq:
                raise InputError(
                    f"{source}: qposes_rollout has {nq} columns; the session has no BodyModel or StacRegistration "
                    f"and the default rodent has nq {default.nq} (import the registration first)"
                )
            model_nwb = s.add(
                body_model_to_nwb(default, "BodyModel", f"{default.source} (no keypoint sites)"),
                parameters={"scale": default.scale, "actuators": default.actuator_kind, "mjcf": str(default.source)},
            )
        qpos_names = list(model_nwb.qpos_names[:])
        if nq != len(qpos_names):
            raise InputError(
                f"{source}: qposes_rollout has {nq} columns but body model '{model_nwb.name}' has nq {len(qpos_names)}"
            )
        actuator_names = list(model_nwb.actuator_names[:])
        if rollout.ctrl.shape[1] != len(actuator_names):
            raise InputError(
                f"{source}: ctrl has {rollout.ctrl.shape[1]} columns but body model '{model_nwb.name}' has "
                f"{len(actuator_names)} actuators"
            )
        qpos_units = _qpos_units(model_nwb)

        attrs = rollout.attributes
        start_frame, start_note, frame_times = 0, "unknown (0)", None
        if registration is not None:
            frame_times = _series_times(registration.qpos)
            if "start_frame" in attrs:
                start_frame, start_note = int(attrs["start_frame"]), "file attribute"
            else:
                gaps = np.abs(np.asarray(registration.qpos.data[:]) - rollout.qpos_reference[0]).max(axis=1)
                gaps[np.isnan(gaps)] = np.inf  # frames not fitted
                best = int(np.argmin(gaps))
                if gaps[best] < REFERENCE_MATCH_TOLERANCE:
                    start_frame, start_note = best, "qposes_ref[0] matched to the reference qpos"
            if not 0 <= start_frame < len(frame_times):
                raise InputError(f"{source}: start_frame {start_frame} is outside the reference's {len(frame_times)} frames")
        elif "start_frame" in attrs:
            start_frame, start_note = int(attrs["start_frame"]), "file attribute"
        if "control_timestep" in attrs:
            control_timestep = float(attrs["control_timestep"])
            if rate is not None and abs(rate * control_timestep - 1) > 1e-9:
                raise InputError(f"rate: {rate} Hz contradicts the file's control_timestep {control_timestep} s")
        elif rate is not None:
            control_timestep = 1.0 / rate
        elif registration is not None and registration.qpos.rate is not None:
            control_timestep = 1.0 / registration.qpos.rate
        else:
            raise InputError(f"{source}: no control_timestep attribute; give the control rate (--rate)")
        if not control_timestep > 0:
            raise InputError(f"{source}: control_timestep {control_timestep} s must be positive")
        starting_time = float(frame_times[start_frame]) if frame_times is not None else 0.0
        clock = dict(rate=1.0 / control_timestep, starting_time=starting_time)

        def joint_series(series_name, data, columns, unit, units=None, description=""):
            return ndx_mimic.JointStateSeries(
                name=series_name,
                data=compressed(data),
                unit=unit,
                column_names=columns,
                column_units=units,
                body_model=model_nwb,
                description=description,
                **clock,
            )

        reward = None
        if rollout.reward is not None:
            reward = TimeSeries(
                name="reward", data=compressed(rollout.reward), unit="dimensionless",
                description="Total reward per step (track-mjx).", **clock,
            )
        reward_terms = None
        if rollout.reward_terms:
            reward_terms = ndx_mimic.NamedColumnSeries(
                name="reward_terms",
                data=compressed(np.column_stack(list(rollout.reward_terms.values()))),
                unit="dimensionless",
                column_names=list(rollout.reward_terms),
                description="Reward terms per step (track-mjx rewards group).",
                **clock,
            )
        episodes = ndx_mimic.RolloutEpisodes(name="episodes", description="The rollout as one episode (track-mjx file).")
        episodes.add_row(
            start_time=starting_time,
            stop_time=starting_time + num_steps * control_timestep,
            start_frame=start_frame,
            termination_reason=str(attrs.get("termination_reason", UNKNOWN)),
            episode_return=float(np.nansum(rollout.reward)) if rollout.reward is not None else float("nan"),
        )
        controller = s.add(
            ndx_mimic.ControllerNetwork(name=names["ControllerNetwork"], **controller_metadata(rollout)),
            parameters={"format": "track-mjx", "source": str(source), "config": _plain(rollout.config)},
        )
        padding = " (the file's last step has no control: NaN)" if rollout.padded else ""
        simulation = ndx_mimic.SimulationRollout(
            name=names["SimulationRollout"],
            mode="closed_loop",
            physics_timestep=float(attrs.get("physics_timestep", model_nwb.timestep)),
            control_timestep=control_timestep,
            seed=int(attrs["seed"]) if "seed" in attrs else None,
            qpos=joint_series("qpos", rollout.qpos, qpos_names, "mixed", qpos_units, "Simulated qpos (qposes_rollout)."),
            actuator_controls=joint_series(
                "actuator_controls", rollout.ctrl, actuator_names, "dimensionless",
                description=f"Actuator controls (track-mjx ctrl){padding}.",
            ),
            reward=reward,
            reward_terms=reward_terms,
            episodes=episodes,
            body_model=model_nwb,
            reference=registration,
            controller=controller,
        )
        parameters = {
            "format": "track-mjx",
            "source": str(source),
            "source_sha256": file_sha256(source),
            "start_frame": start_frame,
            "start_frame_from": start_note,
            "controls_padded": rollout.padded,
            "reference_max_deviation": _reference_deviation(rollout, registration, start_frame),
        }
        s.add(simulation, parameters=parameters)
        if rollout.activations:
            layers = [
                ndx_mimic.LayerActivations(
                    name=layer,
                    data=compressed(values),
                    layer_kind=rollout.layer_kinds[layer],
                    description=f"Activations of layer '{layer}' (track-mjx){padding}.",
                    **clock,
                )
                for layer, values in rollout.activations.items()
            ]
            s.add(
                ndx_mimic.NetworkActivations(
                    name=names["NetworkActivations"], layer_activations=layers, controller=controller, rollout=simulation
                ),
                parameters={"format": "track-mjx", "source": str(source), "layer_kinds": rollout.layer_kinds},
            )
    kinds = ", ".join(f"{n} {k}" for n, k in rollout.layer_kinds.items())
    linked = f"reference {registration.name} from frame {start_frame}" if registration is not None else "no reference"
    return (
        f"{session}: processing/mimic/{names['SimulationRollout']}: {num_steps} steps (closed loop, {linked}); "
        f"{len(rollout.activations)} layers in {names['NetworkActivations'] if rollout.activations else 'none'}"
        + (f" ({kinds})" if kinds else "")
    )


def _qpos_units(model_nwb):
    """Units of the qpos columns of a stored body model (compiled from its MJCF)."""
    import mujoco

    from ..body_model import column_names

    model = mujoco.MjModel.from_xml_string(model_nwb.mjcf, model_nwb.assets)
    return column_names(model)[1]


def _reference_deviation(rollout, registration, start_frame):
    """Largest |qposes_ref - reference qpos| over the frames they share (steps = frames), or None."""
    if registration is None:
        return None
    reference = np.asarray(registration.qpos.data[start_frame : start_frame + rollout.num_steps])
    shared = min(len(reference), rollout.num_steps)
    difference = np.abs(reference[:shared] - rollout.qpos_reference[:shared])
    return float(np.nanmax(difference)) if np.isfinite(difference).any() else None


# ----------------------------------------------------------------------------------------------
# MIMIC per-session HDF5


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
    _check_rate(rate)
    skeleton = load_skeleton(MIMIC_SKELETON)
    with _open_h5(path, "a MIMIC per-session HDF5 (/pose/keypoints, /pose/qpos, ...)") as f:
        keypoints = _numbers(_dataset(f, "pose/keypoints", source), "/pose/keypoints", source, 3).astype(np.float64)
        qpos = _numbers(_dataset(f, "pose/qpos", source), "/pose/qpos", source, 2).astype(np.float64)
        counts = _dataset(f, "ephys/spike_counts", source, optional=True)
        active = _dataset(f, "ephys/active_units", source, optional=True)
        clusters = _dataset(f, "behavior/motion_mapper", source, optional=True)
        region = _attributes(f["ephys"]).get("brain_region") if isinstance(f.get("ephys"), h5py.Group) else None

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
        counts = _numbers(counts, "/ephys/spike_counts", source, 2)
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
        clusters = _numbers(clusters, "/behavior/motion_mapper", source, 1)
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
    from ..data import data_path
    from ..stac.core import model_keypoint_positions
    from ..stac.nwb import BUILTIN_SITE_MAPS

    site_map = site_map or data_path(BUILTIN_SITE_MAPS[MIMIC_SKELETON])
    model = _registration_parts(site_map, data.skeleton.nodes, data.qpos, f"{data.source}: /pose/qpos")
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


def import_mimic_h5(
    session,
    source,
    rate=MIMIC_FRAME_RATE,
    starting_time=0.0,
    bin_size=MIMIC_BIN_SIZE,
    name="StacRegistration",
    replace=False,
):
    """Append a MIMIC per-session HDF5: keypoints, BodyModel + StacRegistration, binned counts, labels.

    Results: ``processing/behavior/PoseEstimation``, ``processing/mimic/<name>`` and its BodyModel
    (``BodyModel``, or ``BodyModel_<name>``), ``processing/mimic/BinnedSpikeCounts`` and
    ``intervals/behavior_labels`` (the last two when the file has them). ``rate`` (Hz) is the
    frame rate, ``bin_size`` (s) the spike-count bin. ``replace`` replaces all of them.
    """
    import ndx_mimic

    from ..session import append
    from ..stac.nwb import body_model_to_nwb, registration_to_nwb
    from ..storage import compressed
    from .labels import bouts_from_frames, bouts_to_nwb, check_bouts

    data = read_mimic_h5(source, rate=rate, bin_size=bin_size)
    model, registration = mimic_registration(data)
    times = starting_time + np.arange(data.num_frames) / data.rate
    bouts = None
    if data.cluster_ids is not None and data.labelled.any():
        labels = np.where(data.labelled, np.char.add("cluster_", data.cluster_ids.astype(str)), "")
        bouts = bouts_from_frames(labels, times, 1.0 / data.rate, data.cluster_ids, source=f"{source}: motion_mapper")
        check_bouts(bouts, str(source), start=starting_time, end=times[-1] + 1.0 / data.rate)
    body_model_name = _body_model_name(name, "StacRegistration")
    results = [name, body_model_name, f"{BEHAVIOR_MODULE}/{KEYPOINTS_NAME}", "BinnedSpikeCounts", "intervals/behavior_labels"]
    timing = dict(rate=data.rate, starting_time=float(starting_time))
    provenance = {"format": "mimic-h5", "source": str(source), "source_sha256": file_sha256(source)}
    with append(session, replace=results if replace else ()) as s:
        s.check_new(name)
        s.check_new(body_model_name)
        if data.spike_counts is not None:
            s.check_new("BinnedSpikeCounts")
        if bouts is not None:
            s.check_new("behavior_labels", module="intervals")
        keypoints = Keypoints(
            positions=data.keypoints,
            skeleton=data.skeleton,
            layout="MIMIC per-session HDF5 /pose/keypoints",
            reference_frame=DANNCE_REFERENCE_FRAME,
            **timing,
        )
        pose = _add_keypoints(s, keypoints)
        body_model = s.add(
            body_model_to_nwb(model, body_model_name, f"{model.source} (keypoint sites at the {MIMIC_SKELETON} site map)"),
            parameters={"scale": model.scale, "actuators": model.actuator_kind, "mjcf": str(model.source)},
        )
        s.add(
            registration_to_nwb(
                registration, model, body_model, pose, timing, name, source_software="mimic_nwb (forward kinematics)"
            ),
            parameters={**provenance, "model_keypoints": "forward kinematics of /pose/qpos at the site map offsets"},
        )
        if data.spike_counts is not None:
            num_units = data.spike_counts.shape[1]
            s.add(
                ndx_mimic.BinnedSpikeCounts(
                    name="BinnedSpikeCounts",
                    data=compressed(data.spike_counts),
                    column_names=[f"unit_{i}" for i in range(num_units)],
                    bin_size=data.bin_size,
                    rate=1.0 / data.bin_size,
                    starting_time=float(starting_time),
                    brain_region=[data.brain_region] * num_units if data.brain_region else None,
                    active=data.active_units,
                    description="Spike counts per unit in regular bins (MIMIC /ephys/spike_counts); spike times unknown.",
                ),
                parameters={**provenance, "bin_size": data.bin_size},
            )
        if bouts is not None:
            s.nwbfile.add_time_intervals(
                bouts_to_nwb(bouts, description=f"Behaviour bouts: run-length motion-mapper clusters of {Path(source).name}.")
            )
    counts = "no spike counts"
    if data.spike_counts is not None:
        active = int(data.active_units.sum()) if data.active_units is not None else data.spike_counts.shape[1]
        counts = f"{data.spike_counts.shape[1]} units x {len(data.spike_counts)} bins ({active} active)"
    labels = f"{len(bouts.start)} bouts of {len(set(bouts.label))} clusters" if bouts is not None else "no labels"
    return (
        f"{session}: {data.num_frames} frames at {data.rate:g} Hz from {Path(source).name}: PoseEstimation, "
        f"{name} (mean keypoint error {1000 * registration.mean_error:.2f} mm), {counts}, {labels}"
    )


# ----------------------------------------------------------------------------------------------


def import_foreign(session, source, format, rate=None, name=None, replace=False, layer_kinds=None):
    """Import another tool's output (``format`` one of FORMATS) into a session; return a summary line."""
    names = {} if name is None else {"name": name}
    if format == "stac-mjx":
        return import_stac_mjx(session, source, rate=rate, replace=replace, **names)
    if format == "track-mjx":
        return import_track_mjx(session, source, rate=rate, layer_kinds=layer_kinds, replace=replace, **names)
    if format == "mimic-h5":
        rate = MIMIC_FRAME_RATE if rate is None else rate
        return import_mimic_h5(session, source, rate=rate, replace=replace, **names)
    raise InputError(f"format {format!r}: use one of {', '.join(FORMATS)}")
