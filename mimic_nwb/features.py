"""Feature sets read from a session by name, for encoding models and RSA.

A feature set is a (T, F) matrix on its own clock (times in seconds on the session clock) with
column names. Available names depend on what the session holds:

- ``kinematics``: the positions of the registered model's keypoint sites (the registration's
  ``model_keypoints``) in the egocentric frame of the body (origin at the root, x along the
  root's heading, z up; needs a StacRegistration) and their velocities. The model's sites,
  not the measured keypoints: they are complete in every registered frame, whereas a keypoint
  missing in a frame (a missed detection) would make the whole feature set NaN there;
- ``joint_angles``: the hinge columns (radians) of the registered qpos;
- ``joint_velocities``: their time derivatives (rad/s, central differences);
- ``inverse_dynamics``: the generalised forces of the hinge degrees of freedom of an
  ``inverse_dynamics`` rollout;
- ``<NetworkActivations name>/<layer>``: every layer of every recorded network rollout.

With several registrations (or inverse-dynamics rollouts) in a session, their feature sets are
named ``<StacRegistration name>/kinematics`` (``<SimulationRollout name>/inverse_dynamics``), and
a bare ``kinematics`` is an error that names the candidates: a choice is never made silently.

:func:`resample_to_bins` puts any of them on spike-count bins.

Missing samples (frames the registration did not fit, NaN) are filled by linear interpolation
when the gap is short: at most ``MAX_INTERPOLATED_GAP`` seconds between the valid samples on
either side (0.1 s: four missing frames at 50 Hz), which is well below the time scale of
behaviour. Longer gaps stay NaN, and the encoding models and RSA leave out the bins they touch.
"""

from dataclasses import dataclass

import numpy as np

from ndx_mimic import NetworkActivations, SimulationRollout, StacRegistration
from ndx_mimic.mimic import pose_as_array

from .encoding.binning import resample_features
from .errors import InputError
from .session import RESULTS_MODULE, find_results

#: Longest gap (seconds between the valid samples around it) filled by linear interpolation.
MAX_INTERPOLATED_GAP = 0.1


@dataclass
class FeatureSet:
    """A named feature matrix: ``values`` (T, F) sampled at ``times`` (T,) seconds.

    ``source`` is the path of the data in the file; ``result`` the session result it was read
    from (a StacRegistration, SimulationRollout or NetworkActivations): its ``object_id`` is what
    a stage passes to the append as an input.
    """

    name: str
    values: np.ndarray
    times: np.ndarray
    columns: list[str]
    source: str
    result: object = None


REGISTRATION_SETS = ("kinematics", "joint_angles", "joint_velocities")


def _results(nwbfile, kind):
    return list(find_results(nwbfile, kind, RESULTS_MODULE).values())


def _id_rollouts(nwbfile):
    return [
        r
        for r in _results(nwbfile, SimulationRollout)
        if r.mode == "inverse_dynamics" and r.generalized_forces is not None
    ]


def _one(candidates, what, kind, path):
    """The only candidate, or an InputError naming the qualified names to choose from."""
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(f"{c.name}/{what}" for c in candidates)
    raise InputError(
        f"{path}: feature set {what!r} is ambiguous: {len(candidates)} {kind} results; choose one of {names}"
    )


def _hinge_columns(series):
    names = [str(n) for n in series.column_names[:]]
    units = [str(u) for u in series.column_units[:]] if series.column_units is not None else [series.unit] * len(names)
    keep = [i for i, unit in enumerate(units) if unit in ("radians", "radian")]
    return keep, [names[i] for i in keep]


def _quat_yaw(quaternions):
    """Heading (rotation about z) of (T, 4) w, x, y, z quaternions."""
    w, x, y, z = quaternions.T
    return np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def _kinematics(registration, name):
    qpos = np.asarray(registration.qpos.data[:])
    times = registration.qpos.get_timestamps()
    names = [str(n) for n in registration.qpos.column_names[:]]
    root = [names.index(n) for n in ("root_x", "root_y", "root_z", "root_qw", "root_qx", "root_qy", "root_qz")]
    # The model's keypoint sites, moved into the model frame (floor at z = 0) where qpos lives.
    transform = np.asarray(registration.world_to_model[:]) if registration.world_to_model is not None else np.eye(4)
    keypoints = pose_as_array(registration.model_keypoints, registration.keypoint_names)
    keypoints = keypoints @ transform[:3, :3].T + transform[:3, 3]
    qpos = fill_short_gaps(qpos, times)
    keypoints = fill_short_gaps(keypoints.reshape(len(times), -1), times).reshape(keypoints.shape)
    position, yaw = qpos[:, root[:3]], _quat_yaw(qpos[:, root[3:]])
    cos, sin = np.cos(-yaw)[:, None], np.sin(-yaw)[:, None]
    relative = keypoints - position[:, None, :]
    egocentric = np.stack(
        [
            cos * relative[..., 0] - sin * relative[..., 1],
            sin * relative[..., 0] + cos * relative[..., 1],
            relative[..., 2],
        ],
        axis=-1,
    )
    flat = egocentric.reshape(len(times), -1)
    velocity = np.gradient(flat, times, axis=0)
    columns = [f"{k}_{axis}" for k in registration.keypoint_names for axis in "xyz"]
    return FeatureSet(
        name,
        np.concatenate([flat, velocity], axis=1),
        times,
        columns + [f"{c}_velocity" for c in columns],
        f"processing/{RESULTS_MODULE}/{registration.name}",
        registration,
    )


def _joint_angles(registration, name, velocities=False):
    keep, names = _hinge_columns(registration.qpos)
    times = registration.qpos.get_timestamps()
    values = fill_short_gaps(np.asarray(registration.qpos.data[:])[:, keep], times)
    if velocities:
        values, names = np.gradient(values, times, axis=0), [f"{n}_velocity" for n in names]
    return FeatureSet(name, values, times, names, f"processing/{RESULTS_MODULE}/{registration.name}/qpos", registration)


def _inverse_dynamics(rollout, name):
    forces = rollout.generalized_forces
    keep = [i for i, column in enumerate(forces.column_names[:]) if not str(column).startswith("root_")]
    names = [str(forces.column_names[i]) for i in keep]
    times = forces.get_timestamps()
    return FeatureSet(
        name,
        fill_short_gaps(np.asarray(forces.data[:])[:, keep], times),
        times,
        names,
        f"processing/{RESULTS_MODULE}/{rollout.name}/generalized_forces",
        rollout,
    )


def fill_short_gaps(values, times, max_gap=MAX_INTERPOLATED_GAP):
    """Linearly interpolate the NaN runs of each column that are at most ``max_gap`` s long.

    ``values`` (T, F) sampled at ``times`` (T,) seconds. A run is filled when it has a finite
    sample on both sides and those two samples are at most ``max_gap`` seconds apart; runs at
    the ends and longer runs stay NaN. Returns a new array (float64).
    """
    values = np.array(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 3 or np.isfinite(values).all():
        return values
    times = np.asarray(times, dtype=np.float64)
    n = values.shape[0]
    finite = np.isfinite(values)
    index = np.arange(n)[:, None]
    # For every sample, the last finite sample at or before it and the first at or after it.
    before = np.maximum.accumulate(np.where(finite, index, -1), axis=0)
    after = np.minimum.accumulate(np.where(finite, index, n)[::-1], axis=0)[::-1]
    inside = (before >= 0) & (after < n)
    span = np.full(values.shape, np.inf)
    span[inside] = times[after[inside]] - times[before[inside]]
    fill = ~finite & inside & (span <= max_gap * (1 + 1e-9))
    for column in np.flatnonzero(fill.any(axis=0)):
        ok = finite[:, column]
        rows = fill[:, column]
        values[rows, column] = np.interp(times[rows], times[ok], values[ok, column])
    return values


def available_feature_sets(nwbfile):
    """Names of the feature sets this session can provide, in a stable order."""
    names = []
    registrations = _results(nwbfile, StacRegistration)
    if len(registrations) == 1:
        names += list(REGISTRATION_SETS)
    else:
        names += [f"{r.name}/{what}" for r in registrations for what in REGISTRATION_SETS]
    rollouts = _id_rollouts(nwbfile)
    if len(rollouts) == 1:
        names.append("inverse_dynamics")
    else:
        names += [f"{r.name}/inverse_dynamics" for r in rollouts]
    for activations in _results(nwbfile, NetworkActivations):
        names += [f"{activations.name}/{layer}" for layer in activations.layer_activations]
    return names


def read_feature_set(nwbfile, name, path="session"):
    """One feature set by name (see the module docstring)."""
    readers = {
        "kinematics": lambda r: _kinematics(r, name),
        "joint_angles": lambda r: _joint_angles(r, name),
        "joint_velocities": lambda r: _joint_angles(r, name, velocities=True),
    }
    group, _, what = name.rpartition("/")
    feature_set = None
    if what in readers:
        registrations = _results(nwbfile, StacRegistration)
        if group:
            registrations = [r for r in registrations if r.name == group]
        if registrations:
            feature_set = readers[what](_one(registrations, what, "StacRegistration", path))
    elif what == "inverse_dynamics":
        rollouts = _id_rollouts(nwbfile)
        if group:
            rollouts = [r for r in rollouts if r.name == group]
        if rollouts:
            feature_set = _inverse_dynamics(_one(rollouts, what, "inverse-dynamics SimulationRollout", path), name)
    if feature_set is None and "/" in name:
        group, layer = name.split("/", 1)
        activations = find_results(nwbfile, NetworkActivations, RESULTS_MODULE).get(group)
        if activations is not None and layer in activations.layer_activations:
            series = activations.layer_activations[layer]
            values = np.asarray(series.data[:], dtype=np.float64) * series.conversion + series.offset  # int16 codes
            feature_set = FeatureSet(
                name,
                values,
                series.get_timestamps(),
                [f"{layer}_{i}" for i in range(values.shape[1])],
                f"processing/{RESULTS_MODULE}/{group}/{layer}",
                activations,
            )
    if feature_set is None:
        available = ", ".join(available_feature_sets(nwbfile)) or "none"
        raise InputError(f"{path}: unknown feature set {name!r} (available: {available})")
    return feature_set


def resample_to_bins(feature_set, bin_centers, dtype=np.float64):
    """Values of a feature set at bin centres (linear interpolation; NaN outside its time range).

    The result is ``dtype``; the interpolation is float64 in blocks of bins whatever it is.
    """
    values, _ = resample_features(feature_set.values, bin_centers, timestamps=feature_set.times, dtype=dtype)
    return values
