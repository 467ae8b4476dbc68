"""Synthetic references for tests, benchmarks and examples (no data needed).

``smooth_reference`` makes a smooth, known trajectory of a body model: the root glides and turns
at a fixed height, every scalar joint oscillates gently inside its range. Being C-infinity and
well inside the joint limits, it is the case where inverse dynamics must be exact.
"""

from __future__ import annotations

import mujoco
import numpy as np

from ..body_model import BodyModel
from .physics import as_mjmodel

__all__ = ["smooth_reference", "standing_reference"]


def smooth_reference(
    body_model: BodyModel | mujoco.MjModel,
    n_frames: int = 100,
    frame_rate: float = 50.0,
    *,
    height: float | None = None,
    amplitude: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """(n_frames, nq) qpos of a smooth motion of the body model.

    The root (first joint, free) starts at ``qpos0``, raised by ``height`` metres (None: keep
    qpos0's height), moves forward at 5 cm/s with a 1 cm sway, turns at 0.8 rad/s with a small
    pitch oscillation; each scalar joint oscillates around qpos0 (moved at least a quarter of
    its range inside the limits) with ``amplitude`` x its range, at 0.5-2 Hz, random phase.
    """
    model = as_mjmodel(body_model)
    rng = np.random.default_rng(seed)
    t = np.arange(int(n_frames)) / float(frame_rate)
    q = np.tile(model.qpos0, (len(t), 1))
    if model.njnt and int(model.jnt_type[0]) == int(mujoco.mjtJoint.mjJNT_FREE):
        a = int(model.jnt_qposadr[0])
        q[:, a] += 0.05 * t
        q[:, a + 1] += 0.01 * np.sin(2 * np.pi * 0.7 * t)
        if height is not None:
            q[:, a + 2] += height + 0.003 * np.sin(2 * np.pi * 1.3 * t)
        yaw, pitch = 0.8 * t, 0.05 * np.sin(2 * np.pi * 0.9 * t)
        for i in range(len(t)):
            qz, qy, out = np.zeros(4), np.zeros(4), np.zeros(4)
            mujoco.mju_axisAngle2Quat(qz, np.array([0.0, 0.0, 1.0]), yaw[i])
            mujoco.mju_axisAngle2Quat(qy, np.array([0.0, 1.0, 0.0]), pitch[i])
            mujoco.mju_mulQuat(out, qz, qy)
            q[i, a + 3 : a + 7] = out
    scalar = [
        j
        for j in range(model.njnt)
        if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    ]
    adr = model.jnt_qposadr[scalar]
    lo, hi = model.jnt_range[scalar, 0], model.jnt_range[scalar, 1]
    limited = model.jnt_limited[scalar].astype(bool)
    span = np.where(limited, hi - lo, 1.0)
    center = np.where(limited, np.clip(model.qpos0[adr], lo + 0.25 * span, hi - 0.25 * span), model.qpos0[adr])
    freq = rng.uniform(0.5, 2.0, len(adr))
    phase = rng.uniform(0.0, 2 * np.pi, len(adr))
    q[:, adr] = center + amplitude * span * np.sin(2 * np.pi * freq * t[:, None] + phase)
    return q


def standing_reference(
    body_model: BodyModel | mujoco.MjModel,
    n_frames: int = 100,
    frame_rate: float = 50.0,
    *,
    amplitude: float = 0.05,
    tail_lift: float = 0.3,
    tail_prefix: str = "vertebra_C",
    clearance: float = 5e-4,
    seed: int = 0,
) -> np.ndarray:
    """(n_frames, nq) qpos of a body standing on the floor and moving its joints gently: a
    reference a controller without root force can follow.

    The root keeps qpos0's horizontal position and orientation; every scalar joint oscillates
    around qpos0 (clipped into its range) with ``amplitude`` x its range at 0.5-2 Hz, random
    phase, except the joints whose names start with ``tail_prefix`` (the rodent's tail, which no
    actuator holds up): their ``extend`` hinges are raised by ``tail_lift`` radians and held, so
    the tail clears the floor. In every frame the root height is then set so that the lowest
    geom that collides with the floor (world-body geoms) sits ``clearance`` metres above it: the
    feet carry the body, nothing is in the floor.
    """
    model = as_mjmodel(body_model)
    rng = np.random.default_rng(seed)
    t = np.arange(int(n_frames)) / float(frame_rate)
    q = np.tile(model.qpos0, (len(t), 1))
    scalar = [
        j
        for j in range(model.njnt)
        if int(model.jnt_type[j]) in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    ]
    moving = [j for j in scalar if not (model.joint(j).name or "").startswith(tail_prefix)]
    tail = [
        j
        for j in scalar
        if (model.joint(j).name or "").startswith(tail_prefix) and (model.joint(j).name or "").endswith("extend")
    ]
    for joints, wave in ((moving, True), (tail, False)):
        if not joints:
            continue
        adr = model.jnt_qposadr[joints]
        lo, hi = model.jnt_range[joints, 0], model.jnt_range[joints, 1]
        limited = model.jnt_limited[joints].astype(bool)
        span = np.where(limited, hi - lo, 1.0)
        if wave:
            freq = rng.uniform(0.5, 2.0, len(adr))
            phase = rng.uniform(0.0, 2 * np.pi, len(adr))
            values = model.qpos0[adr] + amplitude * span * np.sin(2 * np.pi * freq * t[:, None] + phase)
        else:
            values = np.tile(model.qpos0[adr] + tail_lift, (len(t), 1))
        q[:, adr] = np.where(limited, np.clip(values, lo, hi), values)
    floor = [g for g in range(model.ngeom) if model.geom_bodyid[g] == 0]
    if model.njnt and int(model.jnt_type[0]) == int(mujoco.mjtJoint.mjJNT_FREE) and floor:
        f = floor[0]
        body = [
            g
            for g in range(model.ngeom)
            if model.geom_bodyid[g] != 0
            and (model.geom_contype[g] & model.geom_conaffinity[f] or model.geom_conaffinity[g] & model.geom_contype[f])
        ]
        data = mujoco.MjData(model)
        fromto = np.zeros(6)
        z = int(model.jnt_qposadr[0]) + 2
        for i in range(len(q)):
            data.qpos[:] = q[i]
            mujoco.mj_kinematics(model, data)
            lowest = min(mujoco.mj_geomDistance(model, data, g, f, 1.0, fromto) for g in body)
            q[i, z] += clearance - lowest
    return q
