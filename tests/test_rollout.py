"""Closed- and open-loop rollouts: aligned arrays, episodes and restarts, seeds, resampling, bad input."""

from dataclasses import replace

import numpy as np
import pytest

from mimic_nwb.body_model import build_body_model
from mimic_nwb.controller import (
    ControllerCheckpoint,
    ControllerConfig,
    ReferenceTrajectory,
    build_training_set,
    network_from_params,
    network_params,
)
from mimic_nwb.data import data_path
from mimic_nwb.simulate import REWARD_TERMS, TRACKING_COLUMNS, RolloutConfig, run_inverse_dynamics, run_rollout
from mimic_nwb.simulate.testing import smooth_reference

FPS = 50.0
N = 40


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def reference(body_model):
    """A smooth motion 10 cm above the floor (no contacts: the body falls) with its
    inverse-dynamics velocities and activations."""
    qpos = smooth_reference(body_model, N, FPS, height=0.1)
    return ReferenceTrajectory.from_inverse_dynamics(run_inverse_dynamics(qpos, body_model, FPS))


@pytest.fixture(scope="module")
def checkpoint(body_model, reference):
    """An untrained small controller with the observation spec of this body model."""
    data = build_training_set(body_model, reference, np.zeros((N, body_model.model.nu)))
    spec = data.spec.with_statistics(data.reference, data.proprioception)
    config = ControllerConfig(observation=spec, encoder_sizes=(64, 64), latent_size=8, decoder_sizes=(32, 32))
    return ControllerCheckpoint(config=config, params=network_params(network_from_params(config, seed=3)))


@pytest.fixture(scope="module")
def closed_loop(body_model, reference, checkpoint):
    config = RolloutConfig(seed=7, min_episode_frames=3, termination_error=0.01)
    return run_rollout(body_model, reference, checkpoint, config)


def test_arrays_align_with_the_reference_frames(body_model, reference, checkpoint, closed_loop):
    r = closed_loop
    m = body_model.model
    assert r.n_frames == N
    np.testing.assert_array_equal(r.frames, np.arange(N))
    np.testing.assert_allclose(r.time, np.arange(N) / FPS)
    shapes = {
        "qpos": (N, m.nq),
        "qvel": (N, m.nv),
        "actuator_controls": (N, m.nu),
        "actuator_activations": (N, m.na),
        "actuator_forces": (N, m.nu),
        "reward": (N,),
        "tracking_error": (N,),
        "step_error": (N,),
    }
    for name, shape in shapes.items():
        assert getattr(r, name).shape == shape, name
    assert set(r.reward_terms) == set(REWARD_TERMS)
    for layer in checkpoint.config.layers():
        assert r.activations[layer.name].shape == (N, layer.size)
        assert r.layer_kinds[layer.name] == layer.kind
    np.testing.assert_array_equal(r.activations["action"], r.actuator_controls)  # no action noise
    assert np.isnan(r.reward[-1]) and np.isfinite(r.reward[:-1]).all()
    assert np.isnan(r.actuator_forces[-1]).all() and np.isfinite(r.actuator_forces[:-1]).all()
    assert np.all(np.abs(r.actuator_controls) <= 1.0)
    # the first frame is the reference state, with the reference's activation
    np.testing.assert_array_equal(r.qpos[0], reference.qpos[0])
    np.testing.assert_array_equal(r.actuator_activations[0], reference.activations[0])
    assert r.tracking_error[0] == 0.0
    assert r.controller_sha256 == checkpoint.sha256
    # the paper's measures of the states reached: none for the first row (not simulated)
    assert r.tracking.shape == (N, len(TRACKING_COLUMNS)) and np.isnan(r.tracking[0]).all()
    assert np.isfinite(r.tracking[1:]).all()
    body = TRACKING_COLUMNS.index("body_error")
    np.testing.assert_array_equal(r.step_error[:-1], r.tracking[1:, body])
    assert "episodes" in r.summary() and r.cpu_time > 0


def test_episodes_tile_the_rollout_and_restart_from_the_reference(reference, closed_loop):
    r, ep = closed_loop, closed_loop.episodes
    assert len(ep) >= 2  # an untrained controller loses the reference quickly
    assert ep.start_frame[0] == 0 and ep.stop_frame[-1] == N
    np.testing.assert_array_equal(ep.start_frame[1:], ep.stop_frame[:-1])
    assert np.all(ep.length[:-1] >= 3)  # min_episode_frames
    assert list(ep.termination[:-1]) == ["tracking_error"] * (len(ep) - 1)
    assert ep.termination[-1] == "end_of_reference"
    assert np.all(ep.termination_error[:-1] > 0.01) and np.isnan(ep.termination_error[-1])
    for a, b, ret in zip(ep.start_frame, ep.stop_frame, ep.episode_return):
        np.testing.assert_array_equal(r.qpos[a], reference.qpos[a])  # restarted body
        np.testing.assert_array_equal(r.actuator_activations[a], reference.activations[a])
        assert r.tracking_error[a] == 0.0
        assert ret == pytest.approx(np.nansum(r.reward[a:b]))
    # the error that ended an episode is that of the state its last control led to
    np.testing.assert_array_equal(r.step_error[ep.stop_frame[:-1] - 1], ep.termination_error[:-1])
    assert ep.reset_network_state.all() and set(ep.reset_activation) == {"reference"}


def test_lstm_state_restarts_with_each_episode(body_model, reference, checkpoint, closed_loop):
    """The network's activations at an episode's first frame equal those of a rollout that
    starts there (same latent noise needs the same seed stream position: use the mean)."""
    config = RolloutConfig(seed=7, min_episode_frames=3, termination_error=0.01, latent="mean")
    full = run_rollout(body_model, reference, checkpoint, config)
    a = int(full.episodes.start_frame[1])
    fresh = run_rollout(body_model, reference, checkpoint, replace(config, start_frame=a, n_frames=2))
    for name in ("lstm_hidden_0", "lstm_cell_1", "action"):
        np.testing.assert_allclose(full.activations[name][a], fresh.activations[name][0], atol=1e-6)


def test_same_seed_same_rollout(body_model, reference, checkpoint, closed_loop):
    again = run_rollout(body_model, reference, checkpoint, closed_loop.config)
    np.testing.assert_array_equal(again.qpos, closed_loop.qpos)
    for name, value in closed_loop.activations.items():
        np.testing.assert_array_equal(again.activations[name], value)
    other = run_rollout(body_model, reference, checkpoint, replace(closed_loop.config, seed=8))
    assert not np.array_equal(other.activations["latent_sample"], closed_loop.activations["latent_sample"])
    assert closed_loop.seed == 7


def test_latent_resampling_is_recorded_and_changes_nothing_else(body_model, reference, checkpoint, closed_loop):
    config = replace(closed_loop.config, resample_latent=True, latent_samples=6)
    r = run_rollout(body_model, reference, checkpoint, config)
    res = r.latent_resampling
    assert res.n_samples == 6
    assert res.action_std.shape == (N, 38) and res.latent_std.shape == (N, 8)
    assert np.all(res.latent_std > 0) and np.all(res.action_std >= 0)
    np.testing.assert_array_equal(r.qpos, closed_loop.qpos)
    assert closed_loop.latent_resampling is None


def test_open_loop_starts_every_frame_from_the_reference(body_model, reference, checkpoint):
    r = run_rollout(body_model, reference, checkpoint, RolloutConfig(mode="open_loop", n_frames=12))
    np.testing.assert_array_equal(r.qpos, reference.qpos[:12])
    np.testing.assert_array_equal(r.qvel, reference.qvel[:12])
    assert len(r.episodes) == 1 and r.episodes.termination[0] == "end_of_reference"
    assert np.all(r.step_error[:-1] > 0) and np.all(r.step_error[:-1] < 0.05)


def test_action_noise_uses_the_policy_std(body_model, reference, checkpoint):
    r = run_rollout(body_model, reference, checkpoint, RolloutConfig(mode="open_loop", n_frames=5, action_noise=True))
    diff = r.actuator_controls - r.activations["action"]
    assert 0 < np.abs(diff).max() < 1.0


def test_bad_inputs_raise_one_line(body_model, reference, checkpoint):
    bad = reference.qpos.copy()
    bad[3, 9] = np.nan
    with pytest.raises(ValueError, match="qpos has NaN or inf in 1 frame") as err:
        ReferenceTrajectory(qpos=bad, qvel=reference.qvel, frame_rate=FPS)
    assert "\n" not in str(err.value)
    obs = checkpoint.config.observation
    other_window = replace(
        checkpoint,
        config=replace(
            checkpoint.config, observation=replace(obs, reference_window=3, reference_mean=None, reference_std=None)
        ),
    )
    with pytest.raises(ValueError, match="reference input of .* features, the body model gives"):
        run_rollout(body_model, reference, other_window)
    fewer = replace(
        checkpoint,
        config=replace(
            checkpoint.config, n_actions=37, observation=replace(obs, actuator_names=obs.actuator_names[:37])
        ),
    )
    with pytest.raises(ValueError, match="drives 37 actuators, the body model has 38"):
        run_rollout(body_model, reference, fewer)
    with pytest.raises(ValueError, match="start_frame"):
        run_rollout(body_model, reference, checkpoint, RolloutConfig(start_frame=N))
    with pytest.raises(ValueError, match="does not divide"):
        run_rollout(body_model, reference, checkpoint, RolloutConfig(timestep=0.003))
    with pytest.raises(ValueError, match="mode"):
        RolloutConfig(mode="sideways")
    with pytest.raises(ValueError, match="needs a controller checkpoint"):
        run_rollout(body_model, reference, None, RolloutConfig(mode="closed_loop"))
    with pytest.raises(ValueError, match="latent_samples"):
        RolloutConfig(resample_latent=True, latent_samples=1)
