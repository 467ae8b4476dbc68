"""The MIMIC controller: network structure and determinism, observations, training, checkpoints."""

import jax
import mujoco
import numpy as np
import pytest

from mimic_nwb.body_model import build_body_model
from mimic_nwb.controller import (
    ControllerCheckpoint,
    ControllerConfig,
    ControllerPolicy,
    ObservationLayout,
    ReferenceTrajectory,
    TrainingConfig,
    build_training_set,
    check_checkpoint_compatible,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    initial_carry,
    kl_to_prior,
    load_checkpoint,
    network_from_params,
    network_params,
    save_checkpoint,
    train_controller,
)
from mimic_nwb.controller.network import apply_network, split_network
from mimic_nwb.controller.observations import (
    BodyState,
    ReferenceKinematics,
    proprioception,
    proprioception_names,
    reference_feature_names,
    reference_features,
)
from mimic_nwb.data import data_path
from mimic_nwb.simulate import run_inverse_dynamics
from mimic_nwb.simulate.testing import smooth_reference

FPS = 50.0
SMALL = dict(encoder_sizes=(32, 32), latent_size=8, decoder_sizes=(16, 16))


@pytest.fixture(scope="module")
def body_model():
    return build_body_model(data_path("rat23_rodent_sites.yaml"))


@pytest.fixture(scope="module")
def training_set(body_model):
    qpos = smooth_reference(body_model, 120, FPS, height=0.1)
    result = run_inverse_dynamics(qpos, body_model, FPS)
    reference = ReferenceTrajectory.from_inverse_dynamics(result)
    return build_training_set(body_model, reference, result.actuator_controls)


def _config(training_set, **kw):
    spec = training_set.spec.with_statistics(training_set.reference, training_set.proprioception)
    return ControllerConfig(observation=spec, **{**SMALL, **kw})


_STEPS = {}


def _run(config, seed=0, steps=3):
    """Every layer's activations over a few steps of a fresh network (jitted, pure function;
    one compilation per config)."""
    graphdef, params = split_network(network_from_params(config, seed=seed))
    if id(config) not in _STEPS:
        _STEPS[id(config)] = (config, jax.jit(lambda params, r, p, c, n: apply_network(graphdef, params, r, p, c, n)))
    step = _STEPS[id(config)][1]
    obs = config.observation
    rng = np.random.default_rng(1)
    r = rng.standard_normal((steps, obs.reference_size)).astype(np.float32)
    p = rng.standard_normal((steps, obs.proprioception_size)).astype(np.float32)
    noise = rng.standard_normal((steps, config.latent_size)).astype(np.float32)
    carry, outs = initial_carry(config), []
    for t in range(steps):
        _, carry, acts = step(params, r[t], p[t], carry, noise[t])
        outs.append({k: np.asarray(v) for k, v in acts.items()})
    return outs


def test_default_config_is_the_papers():
    c = ControllerConfig()
    assert (c.encoder_sizes, c.encoder_activation, c.latent_size) == ((1024, 1024), "tanh", 60)
    assert (c.decoder, c.decoder_sizes, c.reference_window, c.n_actions) == ("lstm", (128, 128), 5, 38)


def test_network_is_deterministic_for_a_seed(training_set):
    config = _config(training_set)
    a, b = _run(config, 0), _run(config, 0)
    for t in range(3):
        for name in a[t]:
            np.testing.assert_array_equal(a[t][name], b[t][name])
    p0 = network_params(network_from_params(config, seed=0))
    p1 = network_params(network_from_params(config, seed=1))
    again = network_params(network_from_params(config, seed=0))
    np.testing.assert_array_equal(p0["encoder"][0]["kernel"], again["encoder"][0]["kernel"])
    assert not np.allclose(p0["encoder"][0]["kernel"], p1["encoder"][0]["kernel"])


@pytest.mark.parametrize("decoder", ["lstm", "mlp"])
def test_activation_names_kinds_and_shapes_follow_the_config(training_set, decoder):
    config = _config(training_set, decoder=decoder)
    out = _run(config, steps=1)[0]
    layers = config.layers()
    assert sorted(layer.name for layer in layers) == sorted(out)
    for layer in layers:
        assert out[layer.name].shape == (layer.size,)
    kinds = {layer.kind for layer in layers}
    expected = {"encoder", "latent_mean", "latent_scale", "latent_sample", "action"}
    expected |= {"lstm_hidden", "lstm_cell"} if decoder == "lstm" else {"decoder"}
    assert kinds == expected
    assert sum(layer.kind == "encoder" for layer in layers) == 2
    assert np.all(np.abs(out["action"]) <= 1.0) and out["action"].shape == (38,)
    assert np.all(out["latent_scale"] > 0)
    np.testing.assert_allclose(
        out["latent_sample"], out["latent_mean"] + out["latent_scale"] * _noise0(config), rtol=1e-5
    )


def _noise0(config):
    rng = np.random.default_rng(1)
    obs = config.observation
    rng.standard_normal((1, obs.reference_size)), rng.standard_normal((1, obs.proprioception_size))
    return rng.standard_normal((1, config.latent_size)).astype(np.float32)[0]


def test_policy_step_matches_the_network_and_unpacks_by_name(training_set):
    config = _config(training_set)
    ckpt = ControllerCheckpoint(config=config, params=network_params(network_from_params(config)))
    policy = ControllerPolicy(ckpt)
    rng = np.random.default_rng(0)
    r = training_set.reference[3]
    p = training_set.proprioception[3]
    noise = rng.standard_normal(config.latent_size).astype(np.float32)
    action, state, flat = policy.step(r, p, policy.initial_state(), noise)
    net = network_from_params(config, ckpt.params)
    norm = config.observation.normalisation()
    _, _, acts = net(
        (r - norm["reference_mean"]) / norm["reference_std"],
        (p - norm["proprioception_mean"]) / norm["proprioception_std"],
        initial_carry(config),
        noise,
    )
    unpacked = policy.unpack(flat)
    for name, value in acts.items():
        np.testing.assert_allclose(unpacked[name], np.asarray(value), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(action, unpacked["action"])
    assert state.shape == (2 * 2 * 16,)


def test_kl_to_autoregressive_prior():
    z = np.array([0.3, -1.0])
    assert float(kl_to_prior(np.zeros(2), np.ones(2), z, True, 0.95)) == pytest.approx(0.0, abs=1e-7)
    scale = np.sqrt(1 - 0.95**2) * np.ones(2)
    assert float(kl_to_prior(0.95 * z, scale, z, False, 0.95)) == pytest.approx(0.0, abs=1e-6)
    assert float(kl_to_prior(np.ones(2), scale, z, False, 0.95)) > 1.0


def test_reference_features_are_egocentric(body_model):
    """Moving and turning the whole scene (reference and body) changes no feature; the body on
    a standing-still reference sees zero differences."""
    layout = ObservationLayout.build(body_model.model, 3)
    qpos = smooth_reference(body_model, 10, FPS, height=0.1)
    kin = ReferenceKinematics.compute(layout, qpos)
    qvel = np.zeros((10, body_model.nv))
    body = BodyState.from_reference(layout, kin, qvel, None, np.arange(10))
    feats = reference_features(layout, kin, np.arange(10), body)
    prop = proprioception(layout, body)
    assert feats.shape == (10, layout.reference_size) and prop.shape == (10, layout.proprioception_size)
    assert len(reference_feature_names(layout)) == layout.reference_size
    assert len(proprioception_names(layout)) == layout.proprioception_size

    turned = qpos.copy()
    yaw = np.zeros(4)
    mujoco.mju_axisAngle2Quat(yaw, np.array([0.0, 0.0, 1.0]), 2.0)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, yaw)
    turned[:, :3] = qpos[:, :3] @ rot.reshape(3, 3).T + np.array([1.0, -2.0, 0.0])
    for t in range(10):
        mujoco.mju_mulQuat(turned[t, 3:7], yaw, qpos[t, 3:7].copy())
    kin2 = ReferenceKinematics.compute(layout, turned)
    body2 = BodyState.from_reference(layout, kin2, qvel, None, np.arange(10))
    np.testing.assert_allclose(reference_features(layout, kin2, np.arange(10), body2), feats, atol=1e-9)
    np.testing.assert_allclose(proprioception(layout, body2), prop, atol=1e-9)

    still = np.tile(qpos[:1], (10, 1))
    kin3 = ReferenceKinematics.compute(layout, still)
    body3 = BodyState.from_reference(layout, kin3, qvel, None, np.arange(10))
    f = reference_features(layout, kin3, np.arange(10), body3).reshape(10, 3, -1)
    np.testing.assert_allclose(f[..., :3], 0.0, atol=1e-12)  # root position
    np.testing.assert_allclose(f[..., 3:7], np.broadcast_to([1.0, 0, 0, 0], f[..., 3:7].shape), atol=1e-12)
    np.testing.assert_allclose(f[..., 7:], 0.0, atol=1e-12)  # joints and appendages


def test_training_reduces_the_loss(training_set):
    result = train_controller(
        training_set,
        ControllerConfig(**SMALL, decoder="mlp"),
        TrainingConfig(
            steps=120, batch_size=8, sequence_length=16, learning_rate=3e-3, log_every=20, validation_fraction=0.1
        ),
    )
    mse = result.history["mse"]
    assert mse[-1] < 0.5 * mse[0]
    assert np.isfinite(result.history["validation_mse"]).all()
    stage = result.checkpoint.training[-1]
    assert stage["stage"] == "supervised" and stage["training_config"]["steps"] == 120
    obs = result.checkpoint.config.observation
    assert obs.normalised and obs.reference_size == training_set.reference.shape[1]


def test_lstm_training_runs_and_continues(training_set):
    """Training continued from a checkpoint starts from its weights, not from a fresh network."""

    def flat(params):
        return np.concatenate([np.ravel(v) for _, v in sorted(_leaves(params))])

    config = ControllerConfig(**SMALL)
    settings = dict(batch_size=2, sequence_length=8, learning_rate=3e-3, validation_fraction=0.0)
    first = train_controller(training_set, config, TrainingConfig(steps=30, log_every=10, **settings))
    assert np.isfinite(first.history["loss"]).all()
    again = train_controller(
        training_set, training=TrainingConfig(steps=1, log_every=1, **settings), initial=first.checkpoint
    )
    scratch = train_controller(training_set, config, TrainingConfig(steps=1, log_every=1, **settings))
    assert [s["stage"] for s in again.checkpoint.training] == ["supervised", "supervised"]
    trained = flat(first.checkpoint.params)
    # one step from the given weights stays next to them; one step from a fresh network is 29 steps away
    resumed_distance = np.linalg.norm(flat(again.checkpoint.params) - trained)
    scratch_distance = np.linalg.norm(flat(scratch.checkpoint.params) - trained)
    assert resumed_distance < 0.2 * scratch_distance
    # and its loss starts where the first run ended, below a fresh network's
    assert again.history["loss"][0] < scratch.history["loss"][0]


def _leaves(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", np.asarray(value)


def test_training_windows_stop_at_their_segment_and_weights_scale_actuators(training_set):
    from dataclasses import replace

    from mimic_nwb.controller import SupervisedTrainer, TrainingSet

    n = len(training_set)
    # two segments: the second's targets are far from anything the fresh network outputs
    targets = np.zeros_like(training_set.targets)
    targets[n // 2 :] = 0.9
    data = TrainingSet(
        training_set.reference,
        training_set.proprioception,
        targets,
        (np.arange(n) >= n // 2).astype(int),
        training_set.spec,
    )
    config = _config(training_set, decoder="mlp")
    trainer = SupervisedTrainer(config, TrainingConfig(sequence_length=16))
    first, second = np.arange(n) < n // 2, np.arange(n) >= n // 2
    # windows that start near the end of segment 0 would reach into segment 1: they are cut there
    inside = trainer.evaluate(data, first)
    merged = replace(data, segment=np.zeros(n, int))  # one segment: the same windows do reach in
    leaking = trainer.evaluate(merged, np.ones(n, bool)) * n - trainer.evaluate(merged, second) * (n - n // 2)
    assert inside < 0.01 and leaking / (n // 2) > 3 * inside
    assert trainer.evaluate(data, second) > 0.5
    # an actuator of weight 0 does not count: changing its targets changes nothing
    weights = np.ones(config.n_actions)
    weights[0] = 0.0
    zeros = replace(data, targets=np.zeros_like(targets))
    moved = np.zeros_like(targets)
    moved[:, 0] = 0.9
    moved = replace(data, targets=moved)
    weighted = SupervisedTrainer(config, TrainingConfig(sequence_length=1, action_weights=tuple(weights)))
    plain = SupervisedTrainer(config, TrainingConfig(sequence_length=1))
    assert weighted.evaluate(moved) == pytest.approx(weighted.evaluate(zeros), rel=1e-6)
    assert plain.evaluate(moved) > plain.evaluate(zeros) + 0.01


def test_checkpoint_round_trip_and_checksum(training_set, tmp_path):
    config = _config(training_set)
    ckpt = ControllerCheckpoint(
        config=config,
        params=network_params(network_from_params(config)),
        training=({"stage": "supervised", "steps": 0},),
        extra={"critic": {"w": np.arange(3.0)}},
    )
    path = tmp_path / "controller.npz"
    digest = save_checkpoint(path, ckpt)
    back = load_checkpoint(path)
    assert back.sha256 == digest == ckpt.sha256
    assert back.config.to_json_dict() == config.to_json_dict()
    np.testing.assert_array_equal(back.config.observation.reference_std, config.observation.reference_std)
    np.testing.assert_array_equal(back.params["encoder"][0]["kernel"], ckpt.params["encoder"][0]["kernel"])
    np.testing.assert_array_equal(back.extra["critic"]["w"], np.arange(3.0))
    assert back.training == ckpt.training
    network_from_params(back.config, back.params)  # loads into the network

    data = bytearray(checkpoint_to_bytes(ckpt))
    tampered = checkpoint_to_bytes(
        ControllerCheckpoint(config=config, params={**ckpt.params, "action_log_std": ckpt.params["action_log_std"] + 1})
    )
    import io
    import zipfile

    # splice the tampered params into the original file (the stored checksum stays the old one)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as a, zipfile.ZipFile(io.BytesIO(tampered)) as b:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            for name in a.namelist():
                z.writestr(name, (b if name == "params/action_log_std.npy" else a).read(name))
    with pytest.raises(ValueError, match="checksum mismatch"):
        checkpoint_from_bytes(out.getvalue())
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a controller checkpoint"):
        load_checkpoint(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.npz")


def test_checkpoint_that_does_not_fit_the_body_model(body_model, training_set):
    config = _config(training_set)
    ckpt = ControllerCheckpoint(config=config, params=network_params(network_from_params(config)))
    check_checkpoint_compatible(ckpt, body_model)  # fits
    spec = mujoco.MjSpec.from_string(body_model.xml)
    spec.delete(spec.actuator("finger_R"))
    fewer = spec.compile()
    with pytest.raises(ValueError, match="drives 38 actuators, the body model has 37") as err:
        check_checkpoint_compatible(ckpt, fewer)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="reference window of 5 frames, 3 requested"):
        check_checkpoint_compatible(ckpt, body_model, reference_window=3)
    # parameters of one window loaded under a config of another
    from dataclasses import replace

    other = replace(
        config,
        observation=replace(
            config.observation,
            reference_window=3,
            reference_size=3 * config.observation.reference_size // 5,
            reference_mean=None,
            reference_std=None,
        ),
    )
    with pytest.raises(ValueError, match="do not match the config"):
        network_from_params(other, ckpt.params)
    with pytest.raises(ValueError, match="n_actions=38"):
        ControllerConfig(n_actions=38, observation=replace(config.observation, actuator_names=("a",)))


def test_cosine_step_size_schedule_ends_at_the_final_rate(training_set):
    """A ``fit`` with ``final_learning_rate`` decays the step size to it (the optimiser uses it:
    the parameters move about half as far as with the constant step size); a final rate above
    the initial one is refused."""
    from mimic_nwb.controller import SupervisedTrainer

    config = train_controller(
        training_set, ControllerConfig(**SMALL, decoder="mlp"), TrainingConfig(steps=1, validation_fraction=0.0)
    ).checkpoint.config
    settings = dict(batch_size=8, sequence_length=4, learning_rate=3e-3, validation_fraction=0.0, log_every=10)
    moved = {}
    for final in (None, 3e-5):
        trainer = SupervisedTrainer(config, TrainingConfig(final_learning_rate=final, **settings))
        start = trainer.flat_params
        trainer.fit(training_set, 40)
        moved[final] = float(np.linalg.norm(np.asarray(trainer.flat_params - start)))
        rate = float(trainer.opt_state[1].hyperparams["learning_rate"])
        assert rate == pytest.approx(3e-3 if final is None else 3e-5, rel=1e-5)
    assert moved[3e-5] < 0.75 * moved[None]
    with pytest.raises(ValueError, match="final_learning_rate"):
        TrainingConfig(learning_rate=1e-3, final_learning_rate=1e-2)
