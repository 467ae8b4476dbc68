"""Distillation of the tracking expert into the MIMIC network (DAgger): it closes the loop better
than the untrained network, it resumes from a checkpoint, and its log travels with the weights."""

import numpy as np
import pytest

from mimic_nwb.body_model import build_body_model
from mimic_nwb.controller import (
    ControllerCheckpoint,
    ControllerConfig,
    ControllerPolicy,
    ReferenceTrajectory,
    SupervisedTrainer,
    TrainingConfig,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    load_checkpoint,
    save_checkpoint,
)
from mimic_nwb.data import data_path
from mimic_nwb.simulate import run_inverse_dynamics
from mimic_nwb.simulate.distill import (
    DistillationConfig,
    _Imitation,
    action_weights,
    distill_controller,
    imitation_pass,
    observation_spec,
)
from mimic_nwb.simulate.expert import ExpertConfig, TrackingExpert
from mimic_nwb.simulate.testing import standing_reference
from mimic_nwb.simulate.tracking import TerminationConfig

FPS = 50.0
SMALL = ControllerConfig(encoder_sizes=(64, 64), latent_size=16, decoder="mlp", decoder_sizes=(64, 64), kl_weight=1e-6)
# A strict threshold: the standing reference is easy (the expert keeps up in one episode), the
# untrained network fails it at every minimum-length episode.
TERMINATION = TerminationConfig(threshold=0.012, min_episode_frames=5)


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def reference(body_model):
    qpos = standing_reference(body_model, 80, FPS, amplitude=0.06, seed=3)
    return ReferenceTrajectory.from_inverse_dynamics(run_inverse_dynamics(qpos, body_model, FPS))


@pytest.fixture(scope="module")
def expert(body_model, reference):
    return TrackingExpert(body_model.model, reference, ExpertConfig())


def _config(**kw):
    training = TrainingConfig(
        batch_size=64, sequence_length=1, learning_rate=2e-3, validation_fraction=0.0, log_every=50
    )
    return DistillationConfig(
        **{
            **dict(
                iterations=3,
                expert_passes=2,
                student_passes=1,
                steps_per_iteration=300,
                expert_noise=0.02,
                termination=TERMINATION,
                latent="mean",
                training=training,
            ),
            **kw,
        }
    )


@pytest.fixture(scope="module")
def distilled(body_model, reference, expert):
    return distill_controller(body_model, reference, expert, SMALL, _config())


def _closed_loop(body_model, reference, expert, checkpoint):
    sim = _Imitation(body_model.model, reference, checkpoint.config.observation)
    return imitation_pass(
        sim,
        expert,
        ControllerPolicy(checkpoint),
        start=0,
        stop=reference.n_frames,
        expert_probability=0.0,
        expert_noise=0.0,
        latent="mean",
        termination=TERMINATION,
        rng=np.random.default_rng(0),
        spec=checkpoint.config.observation,
        record=False,
    )


def test_dagger_student_imitates_longer_than_the_untrained_network(body_model, reference, expert, distilled):
    trained = _closed_loop(body_model, reference, expert, distilled.checkpoint)
    untrained = ControllerCheckpoint(
        config=distilled.checkpoint.config,
        params=SupervisedTrainer(distilled.checkpoint.config, TrainingConfig()).params,
    )
    before = _closed_loop(body_model, reference, expert, untrained)
    # the expert itself keeps up with this reference in one episode
    sim = _Imitation(body_model.model, reference, distilled.checkpoint.config.observation)
    by_expert = imitation_pass(
        sim,
        expert,
        None,
        start=0,
        stop=reference.n_frames,
        expert_probability=1.0,
        expert_noise=0.0,
        latent="mean",
        termination=TERMINATION,
        rng=np.random.default_rng(0),
        spec=distilled.checkpoint.config.observation,
    )
    assert len(by_expert.episode_lengths) == 1
    assert len(before.episode_lengths) >= 10
    # measured: untrained 16 episodes (median 5 frames, 11.0 mm), distilled 11 (median 7.5, 7.8 mm)
    assert len(trained.episode_lengths) < 0.8 * len(before.episode_lengths)
    assert np.median(trained.episode_lengths) > np.median(before.episode_lengths)
    assert trained.total_error.mean() < 0.85 * before.total_error.mean()


def test_training_log_is_stored_with_the_weights(distilled):
    ckpt = checkpoint_from_bytes(checkpoint_to_bytes(distilled.checkpoint))
    stage = ckpt.training[-1]
    assert stage["stage"] == "dagger" and stage["resumed_from_iteration"] == 0
    iterations = stage["iterations"]
    assert [e["iteration"] for e in iterations] == [0, 1, 2]
    assert [e["actor"] for e in iterations] == ["expert", "student", "student"]
    assert iterations[0]["frames"] < iterations[1]["frames"] < iterations[2]["frames"]  # aggregated
    assert all(e["error_on_new_states_before_training"] is not None for e in iterations[1:])
    assert stage["distillation_config"]["termination"]["threshold"] == TERMINATION.threshold
    assert stage["expert"]["type"] == "TrackingExpert"
    assert len(stage["action_weights"]) == 38


def test_resuming_continues_from_the_checkpoint(body_model, reference, expert, distilled, tmp_path):
    path = tmp_path / "student.npz"
    save_checkpoint(path, distilled.checkpoint)
    loaded = load_checkpoint(path)
    for a, b in zip(_leaves(distilled.checkpoint.params), _leaves(loaded.params)):
        np.testing.assert_array_equal(a, b)
    more = distill_controller(body_model, reference, expert, config=_config(iterations=1), initial=loaded)
    stages = [s["stage"] for s in more.checkpoint.training]
    assert stages == ["dagger", "dagger"]
    assert more.checkpoint.training[-1]["resumed_from_iteration"] == 3
    assert [e["iteration"] for e in more.log] == [3]
    assert more.log[0]["actor"] == "student"  # no expert-only iteration when resuming
    # the normalisation is the checkpoint's
    np.testing.assert_array_equal(
        more.checkpoint.config.observation.reference_mean, loaded.config.observation.reference_mean
    )


def test_resumed_trainer_starts_from_the_saved_weights_and_loss(body_model, reference, expert, tmp_path):
    spec = observation_spec(body_model.model)
    sim = _Imitation(body_model.model, reference, spec)
    data = imitation_pass(
        sim,
        expert,
        None,
        start=0,
        stop=reference.n_frames,
        expert_probability=1.0,
        expert_noise=0.02,
        latent="mean",
        termination=TERMINATION,
        rng=np.random.default_rng(0),
        spec=spec,
    ).data
    from dataclasses import replace

    config = replace(SMALL, n_actions=38, observation=spec.with_statistics(data.reference, data.proprioception))
    training = TrainingConfig(
        batch_size=64,
        sequence_length=1,
        learning_rate=2e-3,
        log_every=1,
        action_weights=action_weights(body_model.model, "gain"),
    )
    first = SupervisedTrainer(config, training)
    fresh_loss = first.evaluate(data)
    first.fit(data, 200)
    saved_loss = first.evaluate(data)
    assert saved_loss < 0.5 * fresh_loss
    path = tmp_path / "c.npz"
    save_checkpoint(path, ControllerCheckpoint(config=config, params=first.params))
    loaded = load_checkpoint(path)
    resumed = SupervisedTrainer(loaded.config, training, loaded.params)
    for a, b in zip(_leaves(first.params), _leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    assert resumed.evaluate(data) == pytest.approx(saved_loss, rel=1e-5)
    history = resumed.fit(data, 5)
    # the loss continues from the saved value, not from a fresh network's
    assert history["mse"][0] < 3 * saved_loss + 1e-6 and history["mse"][0] < 0.5 * fresh_loss


def test_action_weights_follow_the_gains(body_model):
    w = np.asarray(action_weights(body_model.model, "gain"))
    names = [body_model.model.actuator(i).name for i in range(body_model.model.nu)]
    assert w.mean() == pytest.approx(1.0)
    assert w[names.index("lumbar_extend")] > 50 * w[names.index("finger_R")]
    assert action_weights(body_model.model, "none") is None


def test_bad_configs_are_rejected(body_model, reference, expert):
    with pytest.raises(ValueError, match="expert_noise"):
        DistillationConfig(expert_noise=-1)
    with pytest.raises(ValueError, match="latent"):
        DistillationConfig(latent="max")
    with pytest.raises(ValueError, match="frames"):
        distill_controller(body_model, reference, expert, SMALL, _config(start_frame=0, stop_frame=500))


def _leaves(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree, key=str) for x in _leaves(tree[k])]
    return [np.asarray(tree)]
