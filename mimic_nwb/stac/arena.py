"""The arena: floor plane and up direction of the rig, and the rigid transform to the model's world.

Keypoints come in the rig's world frame (any orientation, any origin). The model lives in a
world with gravity along -z and a floor at z = 0. ``Floor`` describes the rig's floor plane
(``{x : up . x = height}``) and gives the rigid transform that maps rig coordinates to model
coordinates: the smallest rotation taking ``up`` to +z, then a vertical shift putting the floor
at z = 0 (horizontal position and heading are kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from .geometry import GeomSupport, kabsch


@dataclass(frozen=True)
class Floor:
    """Floor plane of the rig.

    Attributes:
        up: (3,) unit vector, the up direction in rig coordinates.
        height: floor height along ``up``, metres (the plane is ``up . x = height``).
        estimated: True when estimated from the keypoints, False when given by the caller.
    """

    up: np.ndarray
    height: float
    estimated: bool = False

    def world_from_input(self) -> np.ndarray:
        """(4, 4) homogeneous rigid transform: x_model = T[:3, :3] @ x_rig + T[:3, 3]."""
        up = np.asarray(self.up, dtype=float)
        up = up / np.linalg.norm(up)
        rot = rotation_between(up, np.array([0.0, 0.0, 1.0]))
        out = np.eye(4)
        out[:3, :3] = rot
        out[2, 3] = -self.height  # (rot @ x)_z = up . x
        return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation (3, 3) taking unit vector ``a`` onto unit vector ``b``."""
    v = np.cross(a, b)
    c = float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        # Half turn about any axis perpendicular to a.
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to points (..., 3) (NaN stays NaN)."""
    return points @ transform[:3, :3].T + transform[:3, 3]


def model_floor_clearance(model: mujoco.MjModel, keypoints_z: np.ndarray) -> float:
    """Height of the lowest keypoint above the model's lowest point, metres.

    Args:
        model: the body model.
        keypoints_z: (K,) heights of the keypoint sites with the model at ``qpos0``.

    The keypoints of a standing animal are this high above the floor (a paw keypoint sits on
    the paw, not on the ground). Planes (the floor) are ignored.
    """
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    keep = np.flatnonzero(model.geom_type != mujoco.mjtGeom.mjGEOM_PLANE)
    if len(keep) == 0:
        return 0.0
    lowest = GeomSupport(model, keep).heights(data).min()
    return float(np.min(keypoints_z) - lowest)


def estimate_floor(
    keypoints: np.ndarray,
    observed: np.ndarray,
    model_keypoints: np.ndarray,
    clearance: float,
    max_frames: int = 400,
    seed: int = 0,
) -> Floor:
    """Estimate the floor plane and up direction from keypoints (rig frame, metres).

    1. A first up: the model's +z (its up when standing at ``qpos0``) carried onto every sampled
       frame by a rigid fit of all observed keypoints, averaged over frames. It is biased by the
       animal's posture (a rat with its head up pitches by 20-30 degrees) but picks the side.
    2. The floor is the plane that supports the keypoint cloud from below: RANSAC over planes
       through three of the lowest 20 % points, with a normal within 45 degrees of the first up,
       at most 2 % of all points below it, scoring the points within ``0.1 * body size`` of it
       (the paws touching the floor, pooled over frames). Refined by least squares on the
       keypoints found in that band in at least 20 % of their frames, each with its own height
       when each spreads over the floor enough to fix a tilt (second in-plane standard
       deviation at least a fifth of the body size), else as one plane. When even that does
       not spread enough, the first up is kept.
    3. Height: the median over frames of the lowest keypoint along up (a paw on the floor in
       most frames), less ``clearance`` (how high the model's lowest keypoint sits above its
       lowest point at ``qpos0``).

    Args:
        keypoints: (T, K, 3), metres; observed: (T, K) bool.
        model_keypoints: (K, 3) model keypoint positions in the root body's frame at ``qpos0``.
        clearance: see ``model_floor_clearance``.
        max_frames: frames sampled (evenly) for the estimate.
        seed: RANSAC random seed (the estimate is deterministic).
    """
    frames = np.flatnonzero(observed.sum(1) >= 3)
    if len(frames) == 0:
        raise ValueError("keypoints: no frame has 3 observed keypoints to find the floor from")
    frames = frames[np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).astype(int)]

    ups = [kabsch(model_keypoints[observed[t]], keypoints[t, observed[t]])[0][:, 2] for t in frames]
    first_up = np.mean(ups, axis=0)
    first_up /= np.linalg.norm(first_up)
    labels = np.broadcast_to(np.arange(observed.shape[1]), observed.shape)[frames][observed[frames]]
    up = _support_plane_normal(
        keypoints[frames][observed[frames]], labels, first_up, model_keypoints, np.random.default_rng(seed)
    )
    heights = np.array([np.min(keypoints[t, observed[t]] @ up) for t in frames])
    return Floor(up=up, height=float(np.median(heights) - clearance), estimated=True)


def _support_plane_normal(points, labels, first_up, model_keypoints, rng, trials=400):
    """Normal of the plane supporting ``points`` (N, 3) from below; ``labels`` (N,) keypoint ids."""
    body_size = np.sqrt(((model_keypoints - model_keypoints.mean(0)) ** 2).sum(1).mean())
    band = 0.1 * body_size
    height = points @ first_up
    low = points[height <= np.percentile(height, 20)]
    if len(low) < 3:
        return first_up
    best_score, best = 0, None
    for _ in range(trials):
        a, b, c = low[rng.choice(len(low), 3, replace=False)]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-12:
            continue
        normal *= np.sign(normal @ first_up) / norm
        if normal @ first_up < np.cos(np.radians(45)):
            continue
        dist = points @ normal - normal @ a
        if (dist < -band).mean() > 0.02:
            continue
        score = int((np.abs(dist) < band).sum())
        if score > best_score:
            best_score, best = score, (normal, a)
    if best is None:
        return first_up
    normal, origin = best
    # Refine by least squares on the keypoints that touch the plane often (the paws). Each
    # keypoint gets its own height (a foot keypoint sits higher on its paw than a hand's) when
    # each paw's contacts spread enough over the floor to fix a tilt on their own; otherwise
    # one plane through all of them (the paws' layout fixes the tilt).
    for _ in range(3):
        dist = points @ normal - normal @ origin
        groups = []
        for k in np.unique(labels):
            mine = labels == k
            near = np.abs(dist[mine]) < band
            if near.sum() >= 5 and near.mean() >= 0.2:
                groups.append(points[mine][near])
        if not groups:
            return first_up
        within = np.concatenate([g - g.mean(0) for g in groups])
        evals, evecs = np.linalg.eigh(within.T @ within / len(within))
        if np.sqrt(max(evals[1], 0.0)) < body_size / 5:
            pooled = np.concatenate(groups)
            origin = pooled.mean(0)
            evals, evecs = np.linalg.eigh(np.cov((pooled - origin).T))
            if np.sqrt(max(evals[1], 0.0)) < body_size / 5:
                return first_up
        else:
            origin = np.concatenate(groups).mean(0)
        normal = evecs[:, 0] * np.sign(evecs[:, 0] @ first_up)
    return normal
