"""What the controller sees: reference features (the next frames of the reference, relative to
the current body) and proprioception, computed from MuJoCo data.

All functions are vectorised over a leading axis of frames so that training data (every frame
of a reference) and a rollout (one frame at a time) share one code path.

Reference features, for each of the next ``reference_window`` frames tau = t+1 .. t+W (frames
past the end of the reference repeat the last one), in the *egocentric frame* of the current
body (the root body's axes: x forward, z up for the rodent; ``R`` its rotation, ``p`` its
position)::

    root_position      R.T (p_ref[tau] - p)                         3   metres
    root_orientation   quat(R.T R_ref[tau]), w >= 0                 4   unit quaternion
    joint_angles       q_ref[tau] - q          (every scalar joint)  J   radians
    appendages         R.T (x_ref[tau, b] - x[b])  (each appendage)  3A  metres

Proprioception (the current body only)::

    joint_angles       q                                            J   radians
    joint_velocities   dq/dt                                        J   rad/s
    actuator_activation  data.act                                   na
    root_height        p_z                                          1   metres
    world_zaxis        R.T e_z (gravity direction)                  3
    root_velocity      R.T v (linear, egocentric)                   3   m/s
    root_angular_velocity  omega (body frame)                       3   rad/s
    appendages         R.T (x[b] - p)                               3A  metres

The rodent's appendages are dm_control's (``lower_arm_R``, ``lower_arm_L``, ``foot_R``,
``foot_L`` and the head ``skull``).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

__all__ = [
    "DEFAULT_APPENDAGES",
    "ObservationLayout",
    "ReferenceKinematics",
    "ReferenceTrajectory",
    "proprioception",
    "reference_features",
    "reference_feature_names",
    "proprioception_names",
]

DEFAULT_APPENDAGES = ("lower_arm_R", "lower_arm_L", "foot_R", "foot_L", "skull")
_FREE = int(mujoco.mjtJoint.mjJNT_FREE)
_SCALAR = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))


@dataclass(frozen=True, eq=False)
class ReferenceTrajectory:
    """The reference the controller imitates: the registered poses at the frame rate, and the
    velocities (and activation states) that go with them (from inverse dynamics).

    Attributes:
        qpos: (T, nq); qvel: (T, nv); frame_rate: Hz.
        activations: (T, na) actuator activation at each frame (restarts set it), or None
            (restarts reset it to zero).
        first_frame: index of qpos[0] in the registration it came from (for alignment).
    """

    qpos: np.ndarray
    qvel: np.ndarray
    frame_rate: float
    activations: np.ndarray | None = None
    first_frame: int = 0

    def __post_init__(self):
        q, v = np.asarray(self.qpos, float), np.asarray(self.qvel, float)
        if q.ndim != 2 or v.ndim != 2 or len(q) != len(v):
            raise ValueError(f"reference: qpos {q.shape} and qvel {v.shape} must be (frames, n) with the same frames")
        if len(q) < 2:
            raise ValueError(f"reference: needs at least 2 frames, got {len(q)}")
        arrays = [("qpos", q), ("qvel", v)]
        if self.activations is not None:
            arrays.append(("activations", np.asarray(self.activations, float)))
        for name, a in arrays:
            if not np.isfinite(a).all():
                frames = np.flatnonzero(~np.isfinite(a.reshape(len(a), -1)).all(1))
                raise ValueError(f"reference: {name} has NaN or inf in {len(frames)} frame(s), first {frames[0]}")
        if self.activations is not None and len(self.activations) != len(q):
            raise ValueError("reference: activations must have one row per frame")
        if not (np.isfinite(self.frame_rate) and self.frame_rate > 0):
            raise ValueError(f"reference: frame_rate must be > 0 Hz, got {self.frame_rate!r}")
        object.__setattr__(self, "qpos", q)
        object.__setattr__(self, "qvel", v)

    @property
    def n_frames(self) -> int:
        return len(self.qpos)

    @classmethod
    def from_inverse_dynamics(cls, result, first_frame: int = 0) -> ReferenceTrajectory:
        """The smoothed poses, velocities and activations of an ``InverseDynamicsResult``."""
        return cls(
            qpos=result.qpos,
            qvel=result.qvel,
            frame_rate=result.frame_rate,
            activations=result.actuator_activations,
            first_frame=first_frame,
        )


@dataclass(frozen=True, eq=False)
class ObservationLayout:
    """Where the observed quantities live in a compiled model (indices), for one observation
    specification. Built by ``ObservationLayout.build``; checks names against the model."""

    model: mujoco.MjModel
    reference_window: int
    root_qpos: int
    root_dof: int
    root_body: int
    joint_qpos: np.ndarray
    joint_dof: np.ndarray
    joint_names: tuple[str, ...]
    appendage_bodies: tuple[str, ...]
    appendage_ids: np.ndarray

    @classmethod
    def build(
        cls, model: mujoco.MjModel, reference_window: int, appendage_bodies=DEFAULT_APPENDAGES, joint_names=None
    ) -> ObservationLayout:
        if model.njnt == 0 or int(model.jnt_type[0]) != _FREE:
            raise ValueError("body model: the first joint must be a free joint (the root)")
        if int(reference_window) < 1:
            raise ValueError(f"reference_window: must be >= 1, got {reference_window!r}")
        scalar = [j for j in range(model.njnt) if int(model.jnt_type[j]) in _SCALAR]
        names = tuple(model.joint(j).name for j in scalar)
        if joint_names is not None and tuple(joint_names) != names:
            raise ValueError(
                f"body model: its {len(names)} joints do not match the {len(joint_names)} joints "
                "the observation specification was made for"
            )
        ids = []
        for b in appendage_bodies:
            i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, b)
            if i < 0:
                raise ValueError(f"body model: has no appendage body {b!r}")
            ids.append(i)
        return cls(
            model=model,
            reference_window=int(reference_window),
            root_qpos=int(model.jnt_qposadr[0]),
            root_dof=int(model.jnt_dofadr[0]),
            root_body=int(model.jnt_bodyid[0]),
            joint_qpos=np.array([model.jnt_qposadr[j] for j in scalar], dtype=int),
            joint_dof=np.array([model.jnt_dofadr[j] for j in scalar], dtype=int),
            joint_names=names,
            appendage_bodies=tuple(appendage_bodies),
            appendage_ids=np.array(ids, dtype=int),
        )

    @property
    def n_joints(self) -> int:
        return len(self.joint_qpos)

    @property
    def reference_frame_size(self) -> int:
        return 3 + 4 + self.n_joints + 3 * len(self.appendage_ids)

    @property
    def reference_size(self) -> int:
        return self.reference_window * self.reference_frame_size

    @property
    def proprioception_size(self) -> int:
        return 2 * self.n_joints + self.model.na + 1 + 3 + 3 + 3 + 3 * len(self.appendage_ids)


@dataclass(frozen=True, eq=False)
class ReferenceKinematics:
    """Per-frame quantities of a reference the features need, computed once.

    Attributes:
        root_pos: (T, 3); root_mat: (T, 3, 3) root body rotation (columns: body axes in world);
        root_quat: (T, 4); joints: (T, J); appendages: (T, A, 3) world positions;
        body_pos: (T, nbody, 3) every body's world position (tracking error);
    """

    root_pos: np.ndarray
    root_mat: np.ndarray
    root_quat: np.ndarray
    joints: np.ndarray
    appendages: np.ndarray
    body_pos: np.ndarray

    @classmethod
    def compute(cls, layout: ObservationLayout, qpos: np.ndarray) -> ReferenceKinematics:
        model = layout.model
        data = mujoco.MjData(model)
        qpos = np.asarray(qpos, dtype=float)
        body_pos = np.empty((len(qpos), model.nbody, 3))
        root_mat = np.empty((len(qpos), 3, 3))
        for t, q in enumerate(qpos):
            data.qpos[:] = q
            mujoco.mj_kinematics(model, data)
            body_pos[t] = data.xpos
            root_mat[t] = data.xmat[layout.root_body].reshape(3, 3)
        rq = layout.root_qpos
        quat = qpos[:, rq + 3 : rq + 7] / np.linalg.norm(qpos[:, rq + 3 : rq + 7], axis=1, keepdims=True)
        return cls(
            root_pos=body_pos[:, layout.root_body].copy(),
            root_mat=root_mat,
            root_quat=quat,
            joints=qpos[:, layout.joint_qpos].copy(),
            appendages=body_pos[:, layout.appendage_ids].copy(),
            body_pos=body_pos,
        )

    def window(self, frames: np.ndarray, width: int) -> np.ndarray:
        """(N, width) frame indices t+1 .. t+width for each t in ``frames``, clipped to the end."""
        idx = np.asarray(frames)[:, None] + np.arange(1, width + 1)[None, :]
        return np.minimum(idx, len(self.root_pos) - 1)


def _quat_conj(q):
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _quat_mul(a, b):
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        axis=-1,
    )


@dataclass(frozen=True, eq=False)
class BodyState:
    """The current body, vectorised over N frames: root position (N, 3), rotation (N, 3, 3),
    quaternion (N, 4), joints (N, J), joint velocities (N, J), activations (N, na), root linear
    velocity in the world (N, 3), root angular velocity in the body frame (N, 3), appendage
    positions (N, A, 3)."""

    root_pos: np.ndarray
    root_mat: np.ndarray
    root_quat: np.ndarray
    joints: np.ndarray
    joint_vel: np.ndarray
    act: np.ndarray
    root_vel: np.ndarray
    root_angvel: np.ndarray
    appendages: np.ndarray

    @classmethod
    def from_data(cls, layout: ObservationLayout, data: mujoco.MjData) -> BodyState:
        """One frame from MuJoCo data after (at least) ``mj_kinematics``."""
        rq, rd, rb = layout.root_qpos, layout.root_dof, layout.root_body
        quat = data.qpos[rq + 3 : rq + 7]
        return cls(
            root_pos=data.xpos[rb][None].copy(),
            root_mat=data.xmat[rb].reshape(1, 3, 3).copy(),
            root_quat=(quat / np.linalg.norm(quat))[None],
            joints=data.qpos[layout.joint_qpos][None],
            joint_vel=data.qvel[layout.joint_dof][None],
            act=data.act[None].copy(),
            root_vel=data.qvel[rd : rd + 3][None].copy(),
            root_angvel=data.qvel[rd + 3 : rd + 6][None].copy(),
            appendages=data.xpos[layout.appendage_ids][None].copy(),
        )

    @classmethod
    def from_reference(
        cls,
        layout: ObservationLayout,
        kin: ReferenceKinematics,
        qvel: np.ndarray,
        act: np.ndarray | None,
        frames: np.ndarray,
    ) -> BodyState:
        """The body exactly at the reference, at ``frames`` (training data)."""
        frames = np.asarray(frames)
        rd = layout.root_dof
        v = np.asarray(qvel)[frames]
        na = layout.model.na
        act = np.zeros((len(frames), na)) if act is None else np.asarray(act)[frames]
        return cls(
            root_pos=kin.root_pos[frames],
            root_mat=kin.root_mat[frames],
            root_quat=kin.root_quat[frames],
            joints=kin.joints[frames],
            joint_vel=v[:, layout.joint_dof],
            act=act,
            root_vel=v[:, rd : rd + 3],
            root_angvel=v[:, rd + 3 : rd + 6],
            appendages=kin.appendages[frames],
        )


def reference_features(
    layout: ObservationLayout, kin: ReferenceKinematics, frames: np.ndarray, body: BodyState
) -> np.ndarray:
    """(N, reference_size) reference features for current frames ``frames`` (N,) and the
    current body (N frames). Layout per future frame: see the module docstring."""
    W = layout.reference_window
    idx = kin.window(np.atleast_1d(frames), W)  # (N, W)
    rt = np.swapaxes(body.root_mat, 1, 2)  # (N, 3, 3) world -> egocentric
    pos = np.einsum("nij,nwj->nwi", rt, kin.root_pos[idx] - body.root_pos[:, None])
    rel = _quat_mul(_quat_conj(body.root_quat)[:, None], kin.root_quat[idx])
    rel *= np.where(rel[..., :1] < 0, -1.0, 1.0)
    joints = kin.joints[idx] - body.joints[:, None]
    app = kin.appendages[idx] - body.appendages[:, None]  # (N, W, A, 3)
    app = np.einsum("nij,nwaj->nwai", rt, app).reshape(len(idx), W, -1)
    return np.concatenate([pos, rel, joints, app], axis=2).reshape(len(idx), -1)


def proprioception(layout: ObservationLayout, body: BodyState) -> np.ndarray:
    """(N, proprioception_size) proprioceptive features (see the module docstring)."""
    rt = np.swapaxes(body.root_mat, 1, 2)
    zaxis = rt[:, :, 2]  # R.T @ e_z
    vel = np.einsum("nij,nj->ni", rt, body.root_vel)
    app = np.einsum("nij,naj->nai", rt, body.appendages - body.root_pos[:, None]).reshape(len(rt), -1)
    return np.concatenate(
        [
            body.joints,
            body.joint_vel,
            body.act,
            body.root_pos[:, 2:3],
            zaxis,
            vel,
            body.root_angvel,
            app,
        ],
        axis=1,
    )


def reference_feature_names(layout: ObservationLayout) -> tuple[str, ...]:
    """Name of every reference feature column."""
    per = (
        ["root_position_" + c for c in "xyz"]
        + ["root_orientation_" + c for c in ("qw", "qx", "qy", "qz")]
        + ["joint_" + n for n in layout.joint_names]
        + [f"appendage_{b}_{c}" for b in layout.appendage_bodies for c in "xyz"]
    )
    return tuple(f"t+{w + 1}/{n}" for w in range(layout.reference_window) for n in per)


def proprioception_names(layout: ObservationLayout) -> tuple[str, ...]:
    """Name of every proprioceptive feature column."""
    m = layout.model
    acts = [m.actuator(i).name for i in range(m.nu) if m.actuator_actadr[i] >= 0]
    return tuple(
        ["joint_angle_" + n for n in layout.joint_names]
        + ["joint_velocity_" + n for n in layout.joint_names]
        + ["activation_" + a for a in acts]
        + ["root_height"]
        + ["world_zaxis_" + c for c in "xyz"]
        + ["root_velocity_" + c for c in "xyz"]
        + ["root_angular_velocity_" + c for c in "xyz"]
        + [f"appendage_{b}_{c}" for b in layout.appendage_bodies for c in "xyz"]
    )
