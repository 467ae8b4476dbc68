"""How well a simulated body tracks its reference, measured as Aldarondo et al. (2024) report it,
with the termination rules and reward terms of the imitation frameworks beside it.

Pure numpy/MuJoCo: arrays (or ``MjData``) in, arrays out.

Per frame, comparing the simulated body with the reference at the same frame:

- **total error** (the paper's "total keypoint error"): mean Euclidean distance between the
  keypoint sites of the model and those of the reference pose, metres;
- **pose error**: the same after a rigid Procrustes alignment *without scaling* of the model's
  sites onto the reference's (rotation + translation, Kabsch), metres: posture alone, whatever
  the position and heading of the whole body;
- **body error** (what ends an episode here): mean distance between the world positions of the
  bodies that carry keypoint sites, metres. Bodies no keypoint observes (the tail's 30 vertebrae,
  which only two weak tendons drive) are left out: they say nothing about imitating the rat;
- **dm_control error** (reported beside it): dm_control's reference-pose tracking task ends an
  episode on ``0.5 * mean |x_body - x_ref| + 0.5 * mean |q_joint - q_ref|`` (mean absolute
  coordinate difference over the tracked bodies, metres, plus mean absolute joint difference,
  radians; threshold 0.3 in ``MultiClipMocapTracking``); here over the keypoint-carrying bodies
  and every scalar joint;
- **track-mjx distances** and its termination rule (``track_mjx/environment/task/reward.py``,
  config ``rodent-full-clips.yaml``): ``root_distance`` = sum((dp * [1, 1, 0.2])^2) of the root
  position (m^2; ``too_far`` above 0.01, i.e. 10 cm horizontally), ``joint_distance`` =
  sum (q - q_ref)^2 over the joints (rad^2; ``bad_pose`` above 20), ``quat_distance`` =
  (angle / 2)^2 of the root rotation (rad^2; ``bad_quat`` above 1), ``fall``: the torso's height
  outside [0.0325, 0.5] m. ``trackmjx_terminate`` is 1 where any of them holds.

Termination (``TerminationConfig``): after at least ``min_episode_frames`` frames, an episode ends
when the body error exceeds ``threshold``. The default, 30 mm, is a fifth of the scaled rat's
trunk length and several times the error of a controller that keeps up with the rat (the
expert's mean body error on the demo clip is 5-8 mm): an episode ends when the body has lost the
reference (fallen, turned away, a limb elsewhere), not on the small errors every physically
simulated imitation keeps.

Survival (``survival_curve``): the proportion of episodes that last at least each duration,
from the episodes table; the paper's headline measure of imitation.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from ..body_model import KEYPOINT_SITE_PREFIX

__all__ = [
    "TRACKING_COLUMNS",
    "TRACKING_UNITS",
    "TerminationConfig",
    "TrackingMeter",
    "TrackMjxTermination",
    "episode_length_quantiles",
    "keypoint_body_ids",
    "keypoint_site_ids",
    "procrustes_error",
    "survival_curve",
    "tracking_errors",
]

TRACKING_COLUMNS = (
    "total_error",
    "pose_error",
    "body_error",
    "dm_control_error",
    "root_distance",
    "joint_distance",
    "quat_distance",
    "trackmjx_terminate",
)
TRACKING_UNITS = (
    "meters",
    "meters",
    "meters",
    "mixed (0.5 m + 0.5 rad)",
    "meters^2",
    "radians^2",
    "radians^2",
    "dimensionless",
)
_FREE = int(mujoco.mjtJoint.mjJNT_FREE)
_SCALAR = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


# --------------------------------------------------------------------------------------------
# Errors between point sets
# --------------------------------------------------------------------------------------------


def _as_points(points, name) -> np.ndarray:
    p = np.asarray(points, dtype=float)
    if p.ndim < 2 or p.shape[-1] != 3:
        raise ValueError(f"{name}: expected (..., K, 3) points, got shape {p.shape}")
    return p


def _rigid_align(model: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``model`` (..., K, 3) moved by the rotation and translation (no scaling, no reflection)
    that bring it closest to ``reference`` in least squares (Kabsch)."""
    mc = model.mean(-2, keepdims=True)
    rc = reference.mean(-2, keepdims=True)
    a, b = model - mc, reference - rc
    h = np.swapaxes(a, -1, -2) @ b  # (..., 3, 3) cross-covariance
    u, _, vt = np.linalg.svd(h)
    # A proper rotation: flip the least significant axis where the best orthogonal map reflects.
    d = np.sign(np.linalg.det(np.swapaxes(vt, -1, -2) @ np.swapaxes(u, -1, -2)))
    d = np.where(d == 0, 1.0, d)
    s = np.zeros(h.shape)
    s[..., 0, 0] = 1.0
    s[..., 1, 1] = 1.0
    s[..., 2, 2] = d
    r = np.swapaxes(vt, -1, -2) @ s @ np.swapaxes(u, -1, -2)  # rotation taking a onto b
    return a @ np.swapaxes(r, -1, -2) + rc


def procrustes_error(model_points, reference_points) -> float:
    """Mean distance (metres) between two sets of K corresponding points (K, 3) after the rigid
    alignment (rotation and translation, no scaling) of ``model_points`` onto ``reference_points``."""
    m, r = _as_points(model_points, "model_points"), _as_points(reference_points, "reference_points")
    if m.ndim != 2 or m.shape != r.shape:
        raise ValueError(f"points: expected two (K, 3) arrays of the same shape, got {m.shape} and {r.shape}")
    return float(np.linalg.norm(_rigid_align(m, r) - r, axis=-1).mean())


def tracking_errors(model_points, reference_points) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame total and pose error (metres) of (T, K, 3) model keypoints against (T, K, 3)
    reference keypoints: total = mean over keypoints of the Euclidean distance; pose = the same
    after a rigid Procrustes alignment without scaling (per frame). Returns (total (T,), pose (T,))."""
    m, r = _as_points(model_points, "model_points"), _as_points(reference_points, "reference_points")
    if m.ndim != 3 or m.shape != r.shape:
        raise ValueError(f"points: expected two (T, K, 3) arrays of the same shape, got {m.shape} and {r.shape}")
    total = np.linalg.norm(m - r, axis=-1).mean(-1)
    pose = np.linalg.norm(_rigid_align(m, r) - r, axis=-1).mean(-1)
    return total, pose


# --------------------------------------------------------------------------------------------
# Where the keypoints are on the model
# --------------------------------------------------------------------------------------------


def keypoint_site_ids(model: mujoco.MjModel) -> np.ndarray:
    """(K,) ids of the keypoint sites (named ``keypoint_<name>``), in site order."""
    ids = [i for i in range(model.nsite) if (model.site(i).name or "").startswith(KEYPOINT_SITE_PREFIX)]
    if not ids:
        raise ValueError("body model: has no keypoint sites (named 'keypoint_<name>'); tracking is measured on them")
    return np.array(ids, dtype=int)


def keypoint_body_ids(model: mujoco.MjModel) -> np.ndarray:
    """(B,) ids of the bodies that carry at least one keypoint site, sorted."""
    return np.unique(model.site_bodyid[keypoint_site_ids(model)])


# --------------------------------------------------------------------------------------------
# Termination
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TerminationConfig:
    """When an episode ends (module docstring).

    Attributes:
        threshold: body error (mean distance of the keypoint-carrying bodies to the reference's),
            metres, above which an episode ends. Default 0.03: a fifth of the scaled rat's trunk
            length, several times the error of a controller that keeps up with the rat.
        min_episode_frames: frames an episode lasts at least before it may end (a restart's first
            frames settle the contacts).
    """

    threshold: float = 0.03
    min_episode_frames: int = 10

    def __post_init__(self):
        if not (np.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"TerminationConfig.threshold: must be > 0 metres, got {self.threshold!r}")
        if int(self.min_episode_frames) < 1:
            raise ValueError(f"TerminationConfig.min_episode_frames: must be >= 1, got {self.min_episode_frames!r}")

    def ends(self, body_error: float, frames_in_episode: int) -> bool:
        """Whether an episode that has lasted ``frames_in_episode`` frames ends at this error
        (NaN, an unstable simulation, always ends it)."""
        if not np.isfinite(body_error):
            return True
        return frames_in_episode >= int(self.min_episode_frames) and body_error > self.threshold


@dataclass(frozen=True)
class TrackMjxTermination:
    """track-mjx's termination thresholds (``rodent-full-clips.yaml``): root ``too_far`` on
    sum((dp * [1, 1, 0.2])^2) > 0.01 m^2, ``bad_pose`` on sum(dq^2) > 20 rad^2, ``bad_quat`` on
    (angle/2)^2 > 1 rad^2, ``fall`` when the torso's height leaves [0.0325, 0.5] m."""

    too_far_dist: float = 0.01
    bad_pose_dist: float = 20.0
    bad_quat_dist: float = 1.0
    healthy_z_range: tuple[float, float] = (0.0325, 0.5)
    penalty_pos_distance_scale: tuple[float, float, float] = (1.0, 1.0, 0.2)


# --------------------------------------------------------------------------------------------
# Per-frame measurement of a simulation against a reference
# --------------------------------------------------------------------------------------------


class TrackingMeter:
    """Per-frame tracking quantities of MuJoCo states against a reference trajectory.

    The reference's keypoint sites, keypoint-carrying bodies, root and joints are computed once
    (T frames of ``reference_qpos``). ``measure(data, frame)`` reads a state after
    ``mj_kinematics`` (site_xpos, xpos, qpos) and returns one row of ``TRACKING_COLUMNS``.

    Args:
        model: the simulated model (keypoint sites named ``keypoint_<name>``, free root joint).
        reference_qpos: (T, nq) reference poses.
        trackmjx: track-mjx's termination thresholds (for ``trackmjx_terminate``).
        torso_body: body whose height track-mjx's ``fall`` tests (default: the root body).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        reference_qpos: np.ndarray,
        trackmjx: TrackMjxTermination = TrackMjxTermination(),
        torso_body: str | None = None,
    ):
        if model.njnt == 0 or int(model.jnt_type[0]) != _FREE:
            raise ValueError("body model: the first joint must be a free joint (the root)")
        self.model = model
        self.sites = keypoint_site_ids(model)
        self.bodies = keypoint_body_ids(model)
        self.root_qpos = int(model.jnt_qposadr[0])
        scalar = [j for j in range(model.njnt) if int(model.jnt_type[j]) in _SCALAR]
        self.joint_qpos = np.array([model.jnt_qposadr[j] for j in scalar], dtype=int)
        if torso_body is None:
            self.torso = int(model.jnt_bodyid[0])
        else:
            self.torso = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, torso_body)
            if self.torso < 0:
                raise ValueError(f"body model: has no body {torso_body!r}")
        self.trackmjx = trackmjx
        q = np.asarray(reference_qpos, dtype=float)
        if q.ndim != 2 or q.shape[1] != model.nq:
            raise ValueError(f"reference: qpos must be (frames, {model.nq}), got {q.shape}")
        data = mujoco.MjData(model)
        self.site_pos = np.empty((len(q), len(self.sites), 3))
        self.body_pos = np.empty((len(q), len(self.bodies), 3))
        for t, qt in enumerate(q):
            data.qpos[:] = qt
            mujoco.mj_kinematics(model, data)
            self.site_pos[t] = data.site_xpos[self.sites]
            self.body_pos[t] = data.xpos[self.bodies]
        rq = self.root_qpos
        self.root_pos = q[:, rq : rq + 3].copy()
        self.root_quat = q[:, rq + 3 : rq + 7] / np.linalg.norm(q[:, rq + 3 : rq + 7], axis=1, keepdims=True)
        self.joints = q[:, self.joint_qpos].copy()

    @property
    def n_frames(self) -> int:
        return len(self.site_pos)

    def body_error(self, data: mujoco.MjData, frame: int) -> float:
        """Mean distance (m) of the keypoint-carrying bodies to the reference's at ``frame``."""
        return float(np.linalg.norm(data.xpos[self.bodies] - self.body_pos[frame], axis=1).mean())

    def site_cost(self, data: mujoco.MjData, frame: int) -> float:
        """Mean squared distance (m^2) of the keypoint sites to the reference's at ``frame``."""
        d = data.site_xpos[self.sites] - self.site_pos[frame]
        return float((d * d).sum(1).mean())

    def measure(self, data: mujoco.MjData, frame: int) -> np.ndarray:
        """(len(TRACKING_COLUMNS),) quantities of the state in ``data`` (after ``mj_kinematics``)
        against reference ``frame``."""
        sites = data.site_xpos[self.sites]
        ref_sites = self.site_pos[frame]
        total = float(np.linalg.norm(sites - ref_sites, axis=1).mean())
        pose = float(np.linalg.norm(_rigid_align(sites, ref_sites) - ref_sites, axis=1).mean())
        db = data.xpos[self.bodies] - self.body_pos[frame]
        body = float(np.linalg.norm(db, axis=1).mean())
        dj = data.qpos[self.joint_qpos] - self.joints[frame]
        dm = 0.5 * float(np.abs(db).mean()) + 0.5 * (float(np.abs(dj).mean()) if len(dj) else 0.0)
        rq, tm = self.root_qpos, self.trackmjx
        dp = (data.qpos[rq : rq + 3] - self.root_pos[frame]) * np.asarray(tm.penalty_pos_distance_scale)
        root_distance = float(dp @ dp)
        joint_distance = float(dj @ dj)
        quat = data.qpos[rq + 3 : rq + 7] / np.linalg.norm(data.qpos[rq + 3 : rq + 7])
        quat_distance = bounded_quat_distance(quat, self.root_quat[frame]) ** 2
        z = float(data.xpos[self.torso, 2])
        terminate = (
            root_distance > tm.too_far_dist
            or joint_distance > tm.bad_pose_dist
            or quat_distance > tm.bad_quat_dist
            or not tm.healthy_z_range[0] <= z <= tm.healthy_z_range[1]
        )
        return np.array([total, pose, body, dm, root_distance, joint_distance, quat_distance, float(terminate)])


def bounded_quat_distance(q: np.ndarray, r: np.ndarray) -> float:
    """track-mjx's quaternion distance: half the rotation angle between unit quaternions q and r,
    radians in [0, pi/2]."""
    c = 2.0 * float(np.dot(q, r)) ** 2 - 1.0
    return 0.5 * float(np.arccos(min(1.0, max(-1.0, c))))


# --------------------------------------------------------------------------------------------
# Survival
# --------------------------------------------------------------------------------------------


def survival_curve(episode_lengths, max_length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Proportion of episodes lasting at least each duration.

    Args:
        episode_lengths: (E,) episode lengths in frames (``Episodes.length``, or stop_frame -
            start_frame of a stored episodes table). An episode cut by the end of the reference
            counts with the length it reached (the curve is then a lower bound).
        max_length: last duration of the curve, frames (default the longest episode).

    Returns:
        (durations (D,), proportion (D,)): durations 0..max_length frames and the fraction of
        episodes with length >= each (1 at 0, non-increasing).
    """
    lengths = np.asarray(episode_lengths, dtype=float).ravel()
    if len(lengths) == 0:
        raise ValueError("episode_lengths: no episodes")
    if not np.isfinite(lengths).all() or (lengths < 0).any():
        raise ValueError("episode_lengths: must be finite and >= 0 frames")
    top = int(lengths.max()) if max_length is None else int(max_length)
    durations = np.arange(top + 1)
    proportion = (lengths[None, :] >= durations[:, None]).mean(1)
    return durations, proportion


def episode_length_quantiles(episode_lengths, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9)) -> dict:
    """{quantile: episode length in frames} (linear interpolation between episodes)."""
    lengths = np.asarray(episode_lengths, dtype=float).ravel()
    if len(lengths) == 0:
        raise ValueError("episode_lengths: no episodes")
    return {float(q): float(np.quantile(lengths, q)) for q in quantiles}
