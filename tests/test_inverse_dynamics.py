"""Inverse-dynamics replay: forces that reproduce the reference, the actuator mapping, the
activation-filter inversion and the residual bookkeeping, on the real rodent model.

Inverse dynamics ignores contacts by default (the floor's support goes to the root residual);
the real-clip step-by-step test turns them on. Stated errors:
- smooth reference in the air (no floor contact, joints inside their ranges), open-loop replay
  over 2 s (1000 physics steps), with the generalised forces or with the controls through the
  actuators plus only the residual: qpos within 1e-7 (m, rad);
- STAC poses of the real clip, floor and self-contacts included: one physics step from every
  recorded state reproduces the next recorded state within 1e-8 (velocity x h, activation);
  without contacts, frame-by-frame replay (restarting every frame) within 1e-3 rad.
Open-loop replays of real poses with contacts are not asserted: the rodent's stiff contacts
(solref 5 ms) and joints held at their range limits amplify round-off without bound.
"""

import mujoco
import numpy as np
import pytest
import scipy.io

from mimic_nwb.body_model import build_body_model
from mimic_nwb.data import data_path
from mimic_nwb.simulate import InverseDynamicsConfig, replay_inverse_dynamics, run_inverse_dynamics
from mimic_nwb.simulate.physics import moment_matrix, simulation_model
from mimic_nwb.simulate.testing import smooth_reference

FPS = 50.0


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def airborne(body_model):
    """A smooth 2 s motion 10 cm above the floor, and its inverse dynamics (every step kept)."""
    qpos = smooth_reference(body_model, 100, FPS, height=0.1)
    return qpos, run_inverse_dynamics(qpos, body_model, FPS, InverseDynamicsConfig(keep_steps=True))


@pytest.fixture(scope="module")
def stac_qpos(body_model):
    """STAC registration of the first 60 frames of the real clip (about half a second)."""
    from mimic_nwb.stac import StacConfig, run_stac

    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:60]
    keypoints = np.transpose(pred, (0, 2, 1)) * 1e-3  # (T, 23, 3), metres
    result = run_stac(keypoints, body_model, StacConfig(n_workers=1, n_calibration_frames=30, n_calibration_rounds=2))
    assert result.valid.all()
    return result.qpos


def test_replay_with_generalized_forces_reproduces_reference(body_model, airborne):
    qpos, result = airborne
    sim = replay_inverse_dynamics(body_model, result, forces="generalized")
    assert sim.shape == result.qpos.shape
    np.testing.assert_allclose(sim, result.qpos, atol=1e-7)


def test_replay_through_actuators_plus_residual_reproduces_reference(body_model, airborne):
    _, result = airborne
    sim = replay_inverse_dynamics(body_model, result, forces="actuators")
    np.testing.assert_allclose(sim, result.qpos, atol=1e-7)
    # and without the residual it does not: the residual is needed (root, unactuated joints)
    steps = result.steps
    model = simulation_model(body_model)
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:], data.act[:] = steps.qpos[0], steps.qvel[0], steps.actuator_activations[0]
    for k in range(100):
        data.ctrl[:] = steps.actuator_controls[k]
        mujoco.mj_step(model, data)
    assert np.abs(data.qpos[:3] - steps.qpos[100, :3]).max() > 1e-4


def test_velocities_and_accelerations_match_the_motion(body_model):
    """Against derivatives of the same motion sampled 100x finer (no smoothing: the spline
    alone); hinges and root translation."""
    qpos = smooth_reference(body_model, 50, FPS, height=0.1)
    result = run_inverse_dynamics(qpos, body_model, FPS, InverseDynamicsConfig(smoothing_window=1))
    fine = smooth_reference(body_model, 50 * 100, FPS * 100, height=0.1)[: 49 * 100 + 2]
    dt = 1.0 / (FPS * 100)
    h = result.timestep
    # qvel[i] is the mean velocity over the physics step ending at frame i
    idx = np.arange(2, 48) * 100
    lag = int(round(h / 2 / dt))  # h/2 before the frame
    v_true = (fine[idx - lag + 1] - fine[idx - lag - 1]) / (2 * dt)
    a_true = (fine[idx + 1] - 2 * fine[idx] + fine[idx - 1]) / dt**2
    hinge_q = slice(7, None)
    hinge_v = slice(6, None)
    frames = idx // 100
    np.testing.assert_allclose(result.qvel[frames, hinge_v], v_true[:, hinge_q], atol=2e-3)
    np.testing.assert_allclose(result.qvel[frames, :3], v_true[:, :3], atol=1e-5)
    scale = np.abs(a_true[:, hinge_q]).max()
    assert np.abs(result.qacc[frames, hinge_v] - a_true[:, hinge_q]).max() < 0.01 * scale


def test_residual_and_actuator_bookkeeping(body_model, airborne):
    _, result = airborne
    model = simulation_model(body_model)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    moment = moment_matrix(model, data)  # constant: joint and fixed-tendon transmissions
    np.testing.assert_allclose(
        result.generalized_forces, result.actuator_forces @ moment + result.residual_forces, atol=1e-9
    )
    # the root has no actuator: its residual is all of its generalised force
    np.testing.assert_array_equal(result.residual_forces[:, :6], result.generalized_forces[:, :6])
    gain = model.actuator_gainprm[:, 0]
    assert np.all(np.abs(result.actuator_forces) <= gain + 1e-9)
    assert np.all(np.abs(result.actuator_controls) <= 1.0)
    np.testing.assert_allclose(result.actuator_forces, gain * result.actuator_activations, atol=1e-12)
    # activations follow MuJoCo's Euler filter under controls held over each frame
    tau = model.actuator_dynprm[:, 0]
    decay = (1 - result.timestep / tau) ** result.steps_per_frame
    a, u = result.actuator_activations, result.actuator_controls
    np.testing.assert_allclose(a[1:], u[:-1] + (a[:-1] - u[:-1]) * decay, atol=1e-12)
    report = result.report
    assert report.residual_share["root_translation"] == pytest.approx(1.0)
    assert report.residual_share["joints_unactuated"] == pytest.approx(1.0)
    assert report.residual_share["joints_actuated"] < 0.05  # only the filter's lag within frames
    # hovering 10 cm up, the root carries the weight: RMS vertical force ~ m g
    weight = model.body_mass.sum() * -model.opt.gravity[2]
    assert report.generalized_rms["root_translation"] == pytest.approx(weight, rel=0.05)
    assert "root_translation" in report.summary()


def test_control_per_physics_step_leaves_a_smaller_residual(body_model, airborne):
    qpos, per_frame = airborne
    per_step = run_inverse_dynamics(qpos, body_model, FPS, InverseDynamicsConfig(control_hold="step"))
    assert per_step.report.residual_rms["joints_actuated"] < 0.5 * per_frame.report.residual_rms["joints_actuated"]


def test_blocks_do_not_show(body_model, airborne):
    qpos, whole = airborne
    blocked = run_inverse_dynamics(qpos, body_model, FPS, InverseDynamicsConfig(block_frames=7))
    for name in ("qvel", "qacc", "generalized_forces", "actuator_controls", "residual_forces"):
        np.testing.assert_allclose(getattr(blocked, name), getattr(whole, name), atol=1e-6, err_msg=name)


def test_real_clip_with_contacts_is_consistent_step_by_step(body_model, stac_qpos):
    result = run_inverse_dynamics(stac_qpos, body_model, FPS, InverseDynamicsConfig(keep_steps=True, contacts=True))
    model = simulation_model(body_model)
    data = mujoco.MjData(model)
    s, h = result.steps, result.timestep
    worst = 0.0
    for k in range(len(s.qpos) - 1):
        data.qpos[:], data.qvel[:], data.act[:] = s.qpos[k], s.qvel[k], s.actuator_activations[k]
        data.ctrl[:], data.qfrc_applied[:] = s.actuator_controls[k], s.residual_forces[k]
        mujoco.mj_step(model, data)
        worst = max(
            worst, h * np.abs(data.qvel - s.qvel[k + 1]).max(), np.abs(data.act - s.actuator_activations[k + 1]).max()
        )
    # mj_inverse solves the soft contacts analytically, mj_step iteratively (to its tolerance)
    assert worst < 1e-6
    # STAC keeps every geom out of the floor (tail included), and the report says so
    assert result.report.max_penetration < 1e-3
    assert result.report.deep_contact_fraction == 0.0
    assert result.penetration.shape == (len(stac_qpos),)
    # feet that touch without pressing into the floor take little of the weight from its contacts
    weight = body_model.model.body_mass.sum() * 9.81
    assert result.report.generalized_rms["root_translation"] == pytest.approx(weight, rel=0.2)


def test_real_clip_without_contacts_replays_frame_by_frame(body_model, stac_qpos):
    result = run_inverse_dynamics(stac_qpos, body_model, FPS, InverseDynamicsConfig(keep_steps=True, contacts=False))
    sim = replay_inverse_dynamics(body_model, result, forces="actuators", restart_every=1)
    assert np.abs(sim[:, :3] - result.qpos[:, :3]).max() < 1e-5
    # joints the registration holds at a range limit (the tail raised to clear the floor) give
    # a few milliradians to the soft limit in one frame; the others stay within 1 mrad
    assert np.abs(sim[:, 7:] - result.qpos[:, 7:]).max() < 5e-3
    assert np.median(np.abs(sim[:, 7:] - result.qpos[:, 7:]).max(0)) < 1e-3
    # no floor: the root's residual carries the body's weight
    weight = body_model.model.body_mass.sum() * 9.81
    assert result.report.generalized_rms["root_translation"] == pytest.approx(weight, rel=0.1)
    assert 0.0 <= result.report.max_penetration < 1e-3  # measured on the frames even so


def test_smoothing_keeps_quaternions_unit_and_sign_continuous(body_model):
    qpos = smooth_reference(body_model, 30, FPS, height=0.1)
    qpos[1::2, 3:7] *= -1  # same rotations, alternating signs
    result = run_inverse_dynamics(qpos, body_model, FPS)
    np.testing.assert_allclose(np.linalg.norm(result.qpos[:, 3:7], axis=1), 1.0, atol=1e-12)
    assert np.all(np.einsum("ij,ij->i", result.qpos[1:, 3:7], result.qpos[:-1, 3:7]) > 0.99)
    assert np.abs(result.qvel[:, 3:6]).max() < 2.0  # no spurious half-turn per frame


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda q: q.__setitem__((5, 10), np.nan), r"1 frame\(s\) contain NaN"),
        (lambda q: q.__setitem__((slice(None), slice(3, 7)), 0.0), "zero quaternion"),
    ],
)
def test_bad_reference_raises(body_model, mutate, message):
    qpos = smooth_reference(body_model, 20, FPS)
    mutate(qpos)
    with pytest.raises(ValueError, match=message) as err:
        run_inverse_dynamics(qpos, body_model, FPS)
    assert "\n" not in str(err.value)


def test_bad_arguments_raise(body_model):
    qpos = smooth_reference(body_model, 20, FPS)
    with pytest.raises(ValueError, match=r"expected shape \(frames, 74\)"):
        run_inverse_dynamics(qpos[:, :70], body_model, FPS)
    with pytest.raises(ValueError, match="does not divide the frame period"):
        run_inverse_dynamics(qpos, body_model, FPS, InverseDynamicsConfig(timestep=0.003))
    with pytest.raises(ValueError, match="smoothing_window"):
        InverseDynamicsConfig(smoothing_window=4)
    with pytest.raises(ValueError, match="fewer than the smoothing window"):
        run_inverse_dynamics(qpos[:5], body_model, FPS)
    result = run_inverse_dynamics(qpos, body_model, FPS)
    with pytest.raises(ValueError, match="keep_steps=True"):
        replay_inverse_dynamics(body_model, result)
