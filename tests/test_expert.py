"""Tracking measured as the paper does (total / pose error, termination, survival) and the
tracking expert (inverse dynamics + PD through the actuators, optional predictive sampling)."""

import mujoco
import numpy as np
import pytest

from mimic_nwb.body_model import build_body_model
from mimic_nwb.controller import ReferenceTrajectory
from mimic_nwb.data import data_path
from mimic_nwb.simulate import RolloutConfig, run_inverse_dynamics, run_rollout
from mimic_nwb.simulate.expert import ExpertConfig, TrackingExpert
from mimic_nwb.simulate.testing import smooth_reference, standing_reference
from mimic_nwb.simulate.tracking import (
    TRACKING_COLUMNS,
    TerminationConfig,
    TrackingMeter,
    episode_length_quantiles,
    keypoint_site_ids,
    procrustes_error,
    survival_curve,
    tracking_errors,
)

FPS = 50.0


def _site_positions(model, qpos, sites):
    data = mujoco.MjData(model)
    out = np.empty((len(qpos), len(sites), 3))
    for t, q in enumerate(qpos):
        data.qpos[:] = q
        mujoco.mj_kinematics(model, data)
        out[t] = data.site_xpos[sites]
    return out


def _rotation(axis, angle):
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, float) / np.linalg.norm(axis), angle)
    r = np.zeros(9)
    mujoco.mju_quat2Mat(r, q)
    return r.reshape(3, 3)


def test_rigid_motion_has_zero_pose_error_and_total_error_equal_to_the_offset():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(23, 3)) * 0.05
    offset = np.array([0.01, -0.02, 0.005])
    shifted = points + offset
    total, pose = tracking_errors(shifted[None], points[None])
    assert total[0] == pytest.approx(np.linalg.norm(offset), rel=1e-12)
    assert pose[0] == pytest.approx(0.0, abs=1e-12)
    moved = points @ _rotation([1, 2, 3], 0.7).T + offset
    assert procrustes_error(moved, points) == pytest.approx(0.0, abs=1e-12)
    assert tracking_errors(moved[None], points[None])[0][0] > 0.01


def test_pose_error_of_a_deformation_by_hand():
    # Two points moved apart symmetrically by d each: no rigid motion undoes it, the best
    # alignment leaves each at distance d; total error is d as well.
    ref = np.array([[-1.0, 0, 0], [1.0, 0, 0], [0, 0, 0]])
    model = np.array([[-1.2, 0, 0], [1.2, 0, 0], [0, 0, 0]])
    assert procrustes_error(model, ref) == pytest.approx(0.4 / 3)
    total, pose = tracking_errors(model[None], ref[None])
    assert total[0] == pytest.approx(0.4 / 3) and pose[0] == pytest.approx(0.4 / 3)
    # a mirror image is not a rotation: the alignment may not reflect
    mirrored = ref * np.array([1.0, 1.0, -1.0]) + np.array([[0, 0, 0], [0, 0, 0], [0, 0, 1.0]])
    assert procrustes_error(mirrored, ref) > 0.1


def test_bad_points_are_rejected():
    with pytest.raises(ValueError, match="points"):
        tracking_errors(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="same shape"):
        procrustes_error(np.zeros((3, 3)), np.zeros((4, 3)))


def test_survival_curve_from_episode_lengths():
    durations, proportion = survival_curve([10, 20, 20, 50])
    assert durations[0] == 0 and durations[-1] == 50
    assert proportion[0] == 1.0 and proportion[10] == 1.0 and proportion[11] == 0.75
    assert proportion[20] == 0.75 and proportion[21] == 0.25 and proportion[50] == 0.25
    assert np.all(np.diff(proportion) <= 0)
    assert episode_length_quantiles([10, 20, 20, 50])[0.5] == 20.0
    with pytest.raises(ValueError, match="no episodes"):
        survival_curve([])


def test_termination_rule():
    rule = TerminationConfig(threshold=0.03, min_episode_frames=5)
    assert not rule.ends(0.05, 4) and rule.ends(0.05, 5) and not rule.ends(0.02, 50)
    assert rule.ends(np.nan, 1)
    with pytest.raises(ValueError, match="threshold"):
        TerminationConfig(threshold=0.0)


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def reference(body_model):
    qpos = smooth_reference(body_model, 60, FPS, height=0.1, amplitude=0.05)
    return ReferenceTrajectory.from_inverse_dynamics(run_inverse_dynamics(qpos, body_model, FPS))


def test_meter_is_zero_on_the_reference_and_sees_a_shift(body_model, reference):
    model = body_model.model
    meter = TrackingMeter(model, reference.qpos)
    data = mujoco.MjData(model)
    data.qpos[:] = reference.qpos[7]
    mujoco.mj_kinematics(model, data)
    np.testing.assert_allclose(meter.measure(data, 7)[:4], 0.0, atol=1e-12)
    data.qpos[:3] += [0.0, 0.0, 0.02]  # the whole body 2 cm up: total = body error = 2 cm, pose 0
    mujoco.mj_kinematics(model, data)
    row = meter.measure(data, 7)
    assert row[0] == pytest.approx(0.02) and row[1] == pytest.approx(0.0, abs=1e-9)
    assert row[2] == pytest.approx(0.02)
    assert row[3] == pytest.approx(0.5 * 0.02 / 3)  # dm_control: mean |dx| over coordinates, joints 0
    columns = dict(zip(TRACKING_COLUMNS, row))
    # track-mjx weighs the root's height by 0.2: (0.2 * 0.02)^2; no joint or orientation change
    assert columns["root_distance"] == pytest.approx((0.2 * 0.02) ** 2)
    assert columns["joint_distance"] == 0.0 and columns["quat_distance"] == pytest.approx(0.0, abs=1e-12)
    assert columns["trackmjx_terminate"] == 0.0
    # the root turned by 0.6 rad: track-mjx's quaternion distance is (0.6 / 2)^2
    data.qpos[:] = reference.qpos[7]
    turn = np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, np.array([0.0, 0.0, 1.0]), 0.6)
    mujoco.mju_mulQuat(data.qpos[3:7], reference.qpos[7, 3:7].copy(), turn)
    mujoco.mj_kinematics(model, data)
    columns = dict(zip(TRACKING_COLUMNS, meter.measure(data, 7)))
    assert columns["quat_distance"] == pytest.approx(0.3**2)
    assert columns["pose_error"] == pytest.approx(0.0, abs=1e-9) and columns["total_error"] > 0.005


def test_expert_controls_are_in_range_and_leave_the_state_alone(body_model, reference):
    model = body_model.model
    expert = TrackingExpert(model, reference, ExpertConfig())
    data = mujoco.MjData(model)
    data.qpos[:] = reference.qpos[3]
    data.qvel[:] = reference.qvel[3]
    data.act[:] = reference.activations[3]
    before = (data.qpos.copy(), data.qvel.copy(), data.act.copy(), data.ctrl.copy())
    u = expert.controls(data, 3)
    assert u.shape == (model.nu,) and np.all(np.abs(u) <= 1.0)
    for a, b in zip(before, (data.qpos, data.qvel, data.act, data.ctrl)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="natural_frequency"):
        ExpertConfig(natural_frequency=-1.0)


@pytest.fixture(scope="module")
def standing(body_model):
    """A body standing on the floor, moving its joints gently (feet carry it: physically possible)."""
    qpos = standing_reference(body_model, 60, FPS, amplitude=0.02)
    return ReferenceTrajectory.from_inverse_dynamics(run_inverse_dynamics(qpos, body_model, FPS))


def test_expert_tracks_a_standing_reference_without_root_force(body_model, standing):
    r = run_rollout(body_model, standing, None, RolloutConfig(mode="expert"))
    assert len(r.episodes) == 1 and r.episodes.termination[0] == "end_of_reference"
    assert np.nanmean(r.total_error) < 0.008 and np.nanmax(r.total_error) < 0.015
    # the stored measures are those of the simulated poses' keypoint sites (one episode: every
    # row after the first is a state the simulation reached)
    sites = keypoint_site_ids(body_model.model)
    model_points, reference_points = (
        _site_positions(body_model.model, r.qpos, sites),
        _site_positions(body_model.model, standing.qpos, sites),
    )
    total, pose = tracking_errors(model_points, reference_points)
    np.testing.assert_allclose(r.total_error[1:], total[1:], rtol=1e-9)
    np.testing.assert_allclose(r.pose_error[1:], pose[1:], rtol=1e-9, atol=1e-12)
    assert np.all(np.abs(r.actuator_controls) <= 1.0)
    assert r.activations == {} and r.controller_sha256 == ""
    # feedforward alone (no feedback) drifts away from the reference
    drift = run_rollout(
        body_model,
        standing,
        None,
        RolloutConfig(mode="expert", termination_error=1.0, expert=ExpertConfig(natural_frequency=1e-9)),
    )
    assert np.nanmean(drift.total_error) > 3 * np.nanmean(r.total_error)


def test_predictive_sampling_is_seeded_and_keeps_the_state(body_model, standing):
    config = ExpertConfig(n_samples=4, horizon=0.06, seed=3)
    expert = TrackingExpert(body_model.model, standing, config)
    assert expert.horizon_frames == 3
    data = mujoco.MjData(body_model.model)
    data.qpos[:], data.qvel[:], data.act[:] = standing.qpos[5], standing.qvel[5], standing.activations[5]
    qpos = data.qpos.copy()
    u = expert.controls(data, 5)
    np.testing.assert_array_equal(data.qpos, qpos)
    again = TrackingExpert(body_model.model, standing, config).controls(data, 5)
    np.testing.assert_array_equal(u, again)
    r = run_rollout(body_model, standing, None, RolloutConfig(mode="expert", n_frames=12, expert=config))
    assert np.nanmean(r.total_error) < 0.01
