"""Shared test helpers: sessions to append to, and checks that a file did not change."""

import hashlib
import shutil
from pathlib import Path

import numpy as np

from mimic_nwb.create import SessionMetadata, create_session
from mimic_nwb.session import append
from ndx_mimic import JointStateSeries, NamedColumnSeries, StacRegistration
from ndx_mimic.testing import mock

METADATA = dict(
    subject_id="rat-01",
    species="Rattus norvegicus",
    sex="M",
    age="P90D",
    session_id="s1",
    session_start_time="2024-03-01T10:00:00+00:00",
    drives=[dict(name="drive0", brain_region="DLS", num_tetrodes=2)],
)


def new_session(folder, name="session.nwb", **overrides) -> Path:
    path = Path(folder) / name
    create_session(path, SessionMetadata.from_dict({**METADATA, **overrides}))
    return path


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def toy_registration(qpos, positions, body_model, skeleton, pose, timing, name="StacRegistration"):
    """A StacRegistration of the toy body (mock BodyModel): ``qpos`` (T, 9) (a plain array, or
    wrapped for storage), model keypoint ``positions`` (T, 3, 3) m, zero errors, every frame valid."""
    frames = len(positions)
    return StacRegistration(
        name=name,
        qpos=JointStateSeries(
            name="qpos",
            data=qpos,
            unit="mixed",
            column_names=mock.TOY_QPOS_NAMES,
            column_units=mock.TOY_QPOS_UNITS,
            body_model=body_model,
            description="toy",
            **timing,
        ),
        keypoint_errors=NamedColumnSeries(
            name="keypoint_errors",
            data=np.zeros((frames, 3)),
            unit="meters",
            column_names=mock.TOY_KEYPOINTS,
            description="toy",
            **timing,
        ),
        model_keypoints=mock.mock_PoseEstimation(skeleton=skeleton, name="model_keypoints", positions=positions),
        keypoint_sites=mock.mock_KeypointSites(),
        frame_valid=np.ones(frames, dtype=bool),
        pose_estimation=pose,
        body_model=body_model,
    )


def registered_toy_session(folder, frames=2000, rate=50.0):
    """A session with keypoints and a (toy-body) registration whose joint angles drive units."""
    path = new_session(folder)
    t = np.arange(frames) / rate
    qpos = np.zeros((frames, 9))
    qpos[:, 2], qpos[:, 3] = 0.05, 1.0
    qpos[:, 7] = 0.8 * np.sin(2 * np.pi * 0.5 * t)
    qpos[:, 8] = -1.0 + 0.5 * np.sin(2 * np.pi * 0.23 * t + 1.0)
    positions = np.stack(
        [np.c_[0.03 * np.cos(qpos[:, 7]) * (k + 1), np.zeros(frames), 0.05 + 0.01 * k * qpos[:, 8]] for k in range(3)],
        axis=1,
    )
    with append(path) as s:
        behavior = s.module("behavior", "keypoints")
        from ndx_pose import Skeletons

        skeleton = mock.mock_Skeleton()
        behavior.add(Skeletons(skeletons=[skeleton]))
        pose = mock.mock_PoseEstimation(skeleton=skeleton, positions=positions)
        behavior.add(pose)
        body_model = s.add(mock.mock_BodyModel())
        timing = dict(rate=rate, starting_time=0.0)
        s.add(toy_registration(qpos, positions, body_model, skeleton, pose, timing))
    return path, t, qpos


def session_templates(folder, frames=500, **overrides):
    """A plain session and a copy with ``frames`` of toy keypoints at 50 Hz (tests copy them)."""
    from ndx_pose import Skeletons

    plain = new_session(folder, "plain.nwb", **overrides)
    with_keypoints = Path(folder) / "keypoints.nwb"
    shutil.copy(plain, with_keypoints)
    with append(with_keypoints) as s:
        module = s.module("behavior", "keypoints")
        skeleton = mock.mock_Skeleton()
        module.add(Skeletons(skeletons=[skeleton]))
        module.add(mock.mock_PoseEstimation(skeleton=skeleton, positions=np.zeros((frames, 3, 3))))
    return {"plain": plain, "keypoints": with_keypoints}
