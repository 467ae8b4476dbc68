"""Simulation on a session: inverse dynamics, training and a rollout appended, linked and aligned."""

import json
import shutil

import numpy as np
import pytest
import scipy.io
from pynwb import validate

import mimic_nwb
from mimic_nwb.cli import main
from mimic_nwb.controller import ControllerConfig, TrainingConfig, load_checkpoint
from mimic_nwb.controller.nwb import checkpoint_from_nwb
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.keypoints import KeypointImportConfig, import_keypoints
from mimic_nwb.session import read_session
from mimic_nwb.simulate import RolloutConfig, survival_curve
from mimic_nwb.simulate.nwb import (
    SimulationStageResult,
    TrainControllerResult,
    episode_lengths,
    inverse_dynamics,
    simulate,
    train_controller,
)
from mimic_nwb.stac import StacConfig
from mimic_nwb.stac.nwb import stac
from ndx_mimic import ControllerNetwork, SimulationRollout

from helpers import digest, new_session

SMALL = ControllerConfig(encoder_sizes=(32, 32), latent_size=8, decoder_sizes=(16, 16))


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("simulate")
    pred = scipy.io.loadmat(data_path("rat23_dannce_clip_1000.mat"))["pred"][:150]
    scipy.io.savemat(folder / "clip.mat", {"pred": pred})
    path = new_session(folder)
    import_keypoints(path, folder / "clip.mat", KeypointImportConfig(skeleton="rat23", rate=50.0))
    stac(path, StacConfig(n_workers=1, n_calibration_frames=30, n_calibration_rounds=2))
    replayed = inverse_dynamics(path)
    trained = train_controller(path, folder / "controller.npz", SMALL, training=TrainingConfig(steps=10))
    assert isinstance(trained, TrainControllerResult) and trained.name == "processing/mimic/ControllerNetwork"
    assert trained.reference == "processing/mimic/SimulationRollout_inverse_dynamics" and trained.method == "dagger"
    assert trained.checkpoint == folder / "controller.npz" and "\n" not in trained.summary()
    training = trained.result
    rolled = simulate(path, RolloutConfig(n_frames=60, resample_latent=True, latent_samples=4))
    assert isinstance(rolled, SimulationStageResult)
    return path, folder, replayed, training, rolled


def test_inverse_dynamics_rollout_is_stored(simulated):
    path, _, replayed, _, _ = simulated
    id_result = replayed.result
    assert replayed.name == "processing/mimic/SimulationRollout_inverse_dynamics"
    assert replayed.registration == "processing/mimic/StacRegistration" and replayed.n_frames == 150
    assert replayed.summary().startswith(f"{path}: processing/mimic/SimulationRollout_inverse_dynamics: 150 frames; ")
    with read_session(path) as nwbfile:
        rollout = nwbfile.processing["mimic"]["SimulationRollout_inverse_dynamics"]
        assert rollout.mode == "inverse_dynamics"
        assert rollout.reference is nwbfile.processing["mimic"]["StacRegistration"]
        np.testing.assert_allclose(rollout.generalized_forces.data[:], id_result.generalized_forces)
        np.testing.assert_allclose(rollout.residual_forces.data[:], id_result.residual_forces)
        np.testing.assert_allclose(rollout.actuator_controls.data[:], id_result.actuator_controls)
        assert rollout.generalized_forces.unit_of("root_vx") == "newtons"
        assert rollout.qvel.rate == 50.0 and rollout.qvel.data.shape == (150, 73)


def test_controller_weights_rebuild_the_checkpoint(simulated):
    path, folder, _, training, _ = simulated
    saved = load_checkpoint(folder / "controller.npz")
    with read_session(path) as nwbfile:
        controller = nwbfile.processing["mimic"]["ControllerNetwork"]
        rebuilt = checkpoint_from_nwb(controller)
        assert controller.checkpoint_sha256 == saved.sha256 == rebuilt.sha256
        assert controller.decoder_kind == "lstm" and controller.latent_size == 8


def test_closed_loop_rollout_and_activations_align_with_the_reference(simulated):
    path, _, _, _, rolled = simulated
    result = rolled.result
    assert rolled.name == "processing/mimic/SimulationRollout_closed_loop"
    assert rolled.activations == "processing/mimic/NetworkActivations_closed_loop"
    assert rolled.controller == "processing/mimic/ControllerNetwork"
    assert rolled.reference == "processing/mimic/SimulationRollout_inverse_dynamics"
    assert rolled.mean_total_error == pytest.approx(np.nanmean(result.total_error)) and rolled.mean_total_error > 0
    assert "NetworkActivations_closed_loop" in rolled.summary() and "mean total error" in rolled.summary()
    with read_session(path) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        rollout = mimic["SimulationRollout_closed_loop"]
        activations = mimic["NetworkActivations_closed_loop"]
        assert rollout.controller is mimic["ControllerNetwork"] and activations.rollout is rollout
        reference_times = mimic["StacRegistration"].qpos.get_timestamps()
        np.testing.assert_allclose(rollout.qpos.get_timestamps(), reference_times[result.frames])
        for layer in activations.layer_activations.values():
            np.testing.assert_allclose(layer.get_timestamps(), rollout.qpos.get_timestamps())
            assert layer.data.dtype == np.int16 and layer.conversion > 0  # readable without float16
        kinds = set(activations.layer_kinds().values())
        assert {"encoder", "latent_mean", "latent_sample", "lstm_hidden", "action"} <= kinds
        assert activations.latent_resampling.num_samples == 4
        assert len(rollout.episodes) == len(result.episodes)
    assert validate(path=str(path)) == []


def test_same_seed_gives_the_same_rollout(simulated):
    path, _, _, _, rolled = simulated
    config = RolloutConfig(n_frames=60, resample_latent=True, latent_samples=4)
    again = simulate(path, config, name="SimulationRollout_again")
    np.testing.assert_array_equal(again.result.qpos, rolled.result.qpos)
    assert again.activations == "processing/mimic/NetworkActivations_again"


def test_several_references_must_be_named(simulated, tmp_path):
    source, _, _, _, _ = simulated
    path = tmp_path / "copy.nwb"
    shutil.copyfile(source, path)
    config = RolloutConfig(n_frames=30)
    # several inverse-dynamics rollouts: the reference must be named, never a silent first
    inverse_dynamics(path, name="SimulationRollout_inverse_dynamics_2")
    before = digest(path)
    with pytest.raises(InputError, match="2 inverse-dynamics rollouts .*choose one by name"):
        simulate(path, config, name="SimulationRollout_third")
    with pytest.raises(
        InputError, match="SimulationRollout_closed_loop is a closed_loop rollout, not inverse dynamics"
    ):
        simulate(path, config, reference="SimulationRollout_closed_loop", name="SimulationRollout_third")
    assert digest(path) == before
    with mimic_nwb.open(path, "a") as session:  # an open session: it shows the append
        third = simulate(
            session, config, reference="SimulationRollout_inverse_dynamics_2", name="SimulationRollout_third"
        )
        assert third.reference == "processing/mimic/SimulationRollout_inverse_dynamics_2"
        stored = session.result(SimulationRollout, "SimulationRollout_third")
        assert stored.reference is session.result(SimulationRollout, "SimulationRollout_inverse_dynamics_2").reference
        assert json.loads(stored.parameters)["reference"] == "SimulationRollout_inverse_dynamics_2"


def test_rollout_of_a_checkpoint_file_stores_its_controller(simulated, tmp_path):
    source, folder, _, _, _ = simulated
    path = tmp_path / "copy.nwb"
    shutil.copyfile(source, path)
    config = RolloutConfig(n_frames=20)
    rolled = simulate(path, config, checkpoint=folder / "controller.npz", name="SimulationRollout_file")
    assert rolled.controller == "processing/mimic/ControllerNetwork_file"
    assert rolled.activations == "processing/mimic/NetworkActivations_file"
    before = digest(path)
    with pytest.raises(InputError, match="SimulationRollout_file already exists"):
        simulate(path, config, checkpoint=folder / "controller.npz", name="SimulationRollout_file")
    assert digest(path) == before
    again = simulate(path, config, checkpoint=folder / "controller.npz", name="SimulationRollout_file", replace=True)
    np.testing.assert_array_equal(again.result.qpos, rolled.result.qpos)
    with mimic_nwb.open(path) as session:
        stored = session.result(SimulationRollout, "SimulationRollout_file")
        assert stored.controller is session.result(ControllerNetwork, "ControllerNetwork_file")
        assert stored.controller.checkpoint_sha256 == load_checkpoint(folder / "controller.npz").sha256
        # two controllers now: an unnamed one is refused, naming them
        with pytest.raises(InputError, match="2 ControllerNetwork results .*ControllerNetwork, ControllerNetwork_file"):
            simulate(session, config, name="SimulationRollout_unnamed")


def test_bad_inputs_write_nothing(simulated, tmp_path, capsys):
    path, folder, _, _, _ = simulated
    before = digest(path)
    assert main(["simulate", str(path), "--mode", "inverse_dynamics"]) == 2
    assert "SimulationRollout_inverse_dynamics already exists" in capsys.readouterr().err
    assert main(["simulate", str(path), "--mode", "inverse_dynamics", "--registration", "Nope", "--replace"]) == 2
    assert "no StacRegistration named 'Nope'" in capsys.readouterr().err
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes((folder / "controller.npz").read_bytes()[:-100])
    assert main(["simulate", str(path), "--checkpoint", str(damaged), "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "damaged.npz" in err and err.count("\n") == 1
    assert digest(path) == before
    empty = new_session(tmp_path, "empty.nwb")
    with pytest.raises(InputError, match="no StacRegistration in processing/mimic"):
        inverse_dynamics(empty)


def test_expert_rollout_round_trip_through_the_command_line(simulated, capsys):
    path, _, _, _, _ = simulated
    assert (
        main(["simulate", str(path), "--mode", "expert", "--frames", "40", "--samples", "2", "--horizon", "0.04"]) == 0
    )
    out = capsys.readouterr().out
    assert "SimulationRollout_expert" in out and "mean total error" in out
    with read_session(path) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        rollout = mimic["SimulationRollout_expert"]
        assert rollout.mode == "expert" and rollout.controller is None
        assert "NetworkActivations_expert" not in mimic.data_interfaces
        tracking = rollout.tracking_errors
        names = list(tracking.column_names[:])
        assert names[:3] == ["total_error", "pose_error", "body_error"]
        assert tracking.unit_of("total_error") == "meters" and tracking.unit_of("joint_distance") == "radians^2"
        data = tracking.data[:]
        assert data.shape == (40, len(names)) and np.isnan(data[0]).all()
        assert np.isfinite(data[1:]).all() and np.all(data[1:, :3] > 0)
        controls = rollout.actuator_controls.data[:]
        assert np.all(np.abs(controls) <= 1.0)
        ep = rollout.episodes
        assert ep["start_frame"].data[0] == 0
        lengths = episode_lengths(rollout)
        assert lengths.sum() == 40 and np.all(lengths >= 1)
        np.testing.assert_array_equal(np.cumsum(lengths)[:-1], ep["start_frame"].data[1:])
        durations, proportion = survival_curve(lengths)
        assert proportion[0] == 1.0 and proportion[-1] > 0
    # the closed-loop rollout of the fixture stored its tracking too
    with read_session(path) as nwbfile:
        closed = nwbfile.processing["mimic"]["SimulationRollout_closed_loop"]
        assert closed.tracking_errors.data.shape[0] == closed.qpos.data.shape[0]
    before = digest(path)
    assert main(["simulate", str(path), "--mode", "expert", "--frames", "40"]) == 2  # exists: no --replace
    assert digest(path) == before
