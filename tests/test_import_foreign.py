"""Other tools' outputs into a session: stac-mjx, track-mjx rollouts, MIMIC per-session HDF5.

Each source file is written here with h5py in exactly the layout the importer documents, from poses
of the real rodent model (smooth, within joint limits) and keypoints by forward kinematics of the
rat23 sites, so that every number read back can be checked.
"""

import json
import re
import shutil

import h5py
import mujoco
import numpy as np
import pytest
import yaml
from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
from pynwb import validate

import mimic_nwb
from mimic_nwb.body_model import build_body_model, load_site_map
from mimic_nwb.cli import main
from mimic_nwb.data import data_path
from mimic_nwb.errors import InputError
from mimic_nwb.importers.keypoint_data import stored_keypoints
from mimic_nwb.importers.keypoints import load_skeleton
from mimic_nwb.importers.mimic_h5 import MimicH5ImportConfig, import_mimic_h5
from mimic_nwb.importers.stac_mjx import StacMjxImportConfig, import_stac_mjx
from mimic_nwb.importers.track_mjx import TrackMjxImportConfig, import_track_mjx, layer_kind_of
from mimic_nwb.session import append, read_session
from mimic_nwb.stac.core import model_keypoint_positions
from ndx_mimic.mimic import pose_as_array

from helpers import digest, new_session

RATE = 50.0
IMPORTERS = {"stac-mjx": import_stac_mjx, "track-mjx": import_track_mjx, "mimic-h5": import_mimic_h5}
NUM_FRAMES = 12
RAT23 = load_skeleton("rat23").nodes
SITE_MAP = data_path("rat23_rodent_sites.yaml")
START = 4  # the track-mjx rollout starts at this registration frame
NUM_STEPS = 8
# A stac-mjx file on a few keypoints: a light registration for the rollout tests (validation
# revisits a linked registration once per link), on a skeleton that is not built in.
FEW = ["Snout", "SpineF", "SpineM", "SpineL", "TailBase", "HipL", "HipR"]
LAYERS = {  # name: (expected kind, units, dtype)
    "encoder_0": ("encoder", 16, "float32"),
    "latent_mean": ("latent_mean", 4, "float32"),
    "logvar": ("latent_scale", 4, "float32"),
    "intention": ("latent_sample", 4, "float32"),
    "lstm_hidden": ("lstm_hidden", 8, "float32"),
    "lstm_cell": ("lstm_cell", 8, "float32"),
    "decoder_0": ("decoder", 16, "float32"),
    "action": ("action", 38, "float16"),
}


def smooth_qpos(model, num_frames=NUM_FRAMES):
    """Rodent poses (T, nq): root walking forward and turning, every hinge swinging inside its range."""
    m = model.model
    t = np.arange(num_frames) / RATE
    qpos = np.tile(m.qpos0, (num_frames, 1))
    yaw = 0.3 * np.sin(2 * t)
    qpos[:, :7] = np.column_stack(
        [0.1 * t, 0.02 * np.sin(3 * t), np.full_like(t, 0.06), np.cos(yaw / 2), 0 * t, 0 * t, np.sin(yaw / 2)]
    )
    for j in range(1, m.njnt):
        low, high = m.jnt_range[j] if m.jnt_limited[j] else (-0.4, 0.4)
        qpos[:, m.jnt_qposadr[j]] = (low + high) / 2 + 0.25 * (high - low) * np.sin(9 * t + j)
    return qpos


def write_h5(path, datasets, attrs=None):
    """An HDF5 file of ``datasets`` ({path: value}; None leaves one out) with root ``attrs``."""
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            if value is not None:
                f.create_dataset(key, data=value)
        f.attrs.update(attrs or {})
    return path


@pytest.fixture(scope="module")
def rodent():
    model = build_body_model(SITE_MAP)  # rat23 order
    return model, smooth_qpos(model)


def stac_mjx_datasets(qpos, kp_names):
    """Datasets of a stac-mjx output on ``kp_names``, in that (KEYPOINT_MODEL_PAIRS) order."""
    site_map = load_site_map(SITE_MAP)
    model = build_body_model(site_map, kp_names)
    rng = np.random.default_rng(0)
    offsets = model.initial_offsets + rng.normal(0, 0.002, (len(kp_names), 3))
    qpos32 = qpos.astype(np.float32)
    marker_sites = model_keypoint_positions(model, qpos32.astype(np.float64), offsets)
    kp_data = marker_sites + rng.normal(0, 0.001, marker_sites.shape)
    kp_data[3, 5] = np.nan  # a missing detection
    config = {
        "model": {
            "MJCF_PATH": "models/rodent.xml",
            "KEYPOINT_MODEL_PAIRS": {k: site_map.sites[k][0] for k in kp_names},
            "KEYPOINT_INITIAL_OFFSETS": {k: " ".join(str(v) for v in site_map.sites[k][1]) for k in kp_names},
            "ROOT_OPTIMIZATION_KEYPOINT": site_map.root_keypoint,
            "TRUNK_OPTIMIZATION_KEYPOINTS": [k for k in site_map.trunk_keypoints if k in kp_names],
            "SITES_TO_REGULARIZE": [k for k in site_map.regularized_keypoints if k in kp_names],
            "SCALE_FACTOR": 0.9,
            "MOCAP_SCALE_FACTOR": 0.001,
        },
        "stac": {"n_calibration_frames": 10},
    }
    joint_names = [model.model.joint(j).name for j in range(model.model.njnt)]
    names_qpos = ["root"] * 7 + joint_names[1:]
    num = len(qpos)
    return {
        "config": np.bytes_(yaml.safe_dump(config, sort_keys=False)),
        "kp_names": np.array(kp_names, dtype="S"),
        "names_qpos": np.array(names_qpos, dtype="S"),
        "names_xpos": np.array(model.body_names, dtype="S"),
        "kp_data": kp_data.reshape(num, -1).astype(np.float32),
        "marker_sites": marker_sites.reshape(num, -1).astype(np.float32),
        "offsets": offsets.astype(np.float32),
        "qpos": qpos32,
        "qvel": np.zeros((num, model.nv), np.float32),
        "xpos": np.zeros((num, model.model.nbody, 3), np.float32),
        "xquat": np.zeros((num, model.model.nbody, 4), np.float32),
    }


@pytest.fixture(scope="module")
def stac_mjx(rodent):
    """All rat23 keypoints in the alphabetical KEYPOINT_MODEL_PAIRS order of stac-mjx's rodent config."""
    return stac_mjx_datasets(rodent[1], sorted(RAT23))


@pytest.fixture(scope="module")
def stac_mjx_few(rodent):
    return stac_mjx_datasets(rodent[1], FEW)


@pytest.fixture(scope="module")
def registered(stac_mjx_few, tmp_path_factory):
    """A session with the few-keypoint stac-mjx output imported, copied by the tests that add to it."""
    folder = tmp_path_factory.mktemp("registered")
    source = write_h5(folder / "stac.h5", stac_mjx_few)
    session = new_session(folder)
    summary = import_stac_mjx(session, source, StacMjxImportConfig(rate=RATE)).summary()
    return session, summary


@pytest.fixture(scope="module")
def track_mjx(rodent):
    """Datasets and attributes of a track-mjx rollout starting at registration frame START."""
    _, qpos = rodent
    rng = np.random.default_rng(1)
    reference = qpos.astype(np.float32)[START : START + NUM_STEPS]
    datasets = {
        "qposes_ref": reference,
        "qposes_rollout": reference + rng.normal(0, 0.01, reference.shape).astype(np.float32),
        "ctrl": rng.uniform(-1, 1, (NUM_STEPS, 38)).astype(np.float32),
        "reward": rng.uniform(0, 1, NUM_STEPS),
        "rewards/root_position": rng.uniform(0, 1, NUM_STEPS),
        "rewards/joint_angles": rng.uniform(0, 1, NUM_STEPS),
        "config": json.dumps(
            {
                "network_config": {"encoder_layer_sizes": [16], "decoder_layer_sizes": [16], "intention_size": 4},
                "reference_config": {"traj_length": 5, "clip_length": 250},
                "train_setup": {"train_config": {"use_lstm": True, "num_timesteps": 1000}},
            }
        ),
    }
    for layer, (_, units, dtype) in LAYERS.items():
        datasets[f"activations/{layer}"] = rng.normal(size=(NUM_STEPS, units)).astype(dtype)
    return datasets, {"seed": 3, "checkpoint_sha256": "ab" * 32, "physics_timestep": 0.002}


@pytest.fixture(scope="module")
def mimic_h5(rodent):
    model, qpos = rodent
    keypoints_mm = 1000 * model_keypoint_positions(model, qpos)  # (T, 23, 3), rat23 order
    rng = np.random.default_rng(2)
    return {
        "pose/keypoints": np.transpose(keypoints_mm, (0, 2, 1)),
        "pose/qpos": qpos,
        "ephys/spike_counts": rng.poisson(1.5, (NUM_FRAMES, 5)).astype(np.int32),
        "ephys/active_units": np.array([True, True, False, True, False]),
        "behavior/motion_mapper": np.array([3, 3, 3, 7, 7, 7, 7, 1, 1, 3, 3, 3]),
    }


def _copy(path, tmp_path):
    copy = tmp_path / "session.nwb"
    shutil.copy(path, copy)
    return copy


# ----------------------------------------------------------------------------------------------
# Round trips


def test_stac_mjx_round_trip(stac_mjx, tmp_path):
    session = new_session(tmp_path)
    result = import_stac_mjx(session, write_h5(tmp_path / "stac.h5", stac_mjx), StacMjxImportConfig(rate=RATE))
    summary = result.summary()
    assert result.keypoints_added and result.skeleton == "rat23" and result.name == "processing/mimic/StacRegistration"
    assert result.body_model == "processing/mimic/BodyModel" and result.registration.errors.shape == (NUM_FRAMES, 23)
    assert "12 frames x 23 keypoints from stac-mjx" in summary and "keypoints added" in summary and "(rat23)" in summary
    order = [list(stac_mjx["kp_names"].astype(str)).index(k) for k in RAT23]  # file order -> rat23
    kp_data = stac_mjx["kp_data"].reshape(NUM_FRAMES, 23, 3)[:, order].astype(np.float64)
    marker_sites = stac_mjx["marker_sites"].reshape(NUM_FRAMES, 23, 3)[:, order].astype(np.float64)
    offsets = stac_mjx["offsets"][order].astype(np.float64)
    with read_session(session) as nwbfile:
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        body_model = nwbfile.processing["mimic"]["BodyModel"]
        assert pose.skeleton.name == "rat23" and list(pose.skeleton.nodes[:]) == RAT23
        np.testing.assert_allclose(pose_as_array(pose), kp_data, equal_nan=True)
        assert pose.pose_estimation_series["Snout"].rate == RATE
        assert stac.pose_estimation is pose and stac.body_model is body_model
        np.testing.assert_allclose(stac.qpos.data[:], stac_mjx["qpos"])
        assert stac.qpos.rate == RATE and list(stac.qpos.column_names[:]) == list(body_model.qpos_names[:])
        np.testing.assert_allclose(stac.model_keypoints_array(), marker_sites)
        errors = np.linalg.norm(marker_sites - kp_data, axis=2)
        np.testing.assert_allclose(stac.keypoint_errors.data[:], errors, equal_nan=True)
        assert np.isnan(stac.keypoint_errors.data[3, RAT23.index(sorted(RAT23)[5])])
        np.testing.assert_allclose(stac.mean_error, np.nanmean(errors))
        sites = stac.keypoint_sites.to_dataframe()
        assert list(sites.keypoint) == RAT23
        np.testing.assert_allclose(np.stack(sites.offset), offsets)
        site_map = load_site_map(SITE_MAP)
        initial = 0.9 * np.array([site_map.sites[k][1] for k in RAT23])
        np.testing.assert_allclose(np.stack(sites.initial_offset), initial, atol=1e-7)
        assert set(sites.keypoint[sites.regularized]) == set(site_map.regularized_keypoints)
        np.testing.assert_array_equal(stac.world_to_model[:], np.eye(4))
        assert stac.model_keypoints.source_software == "stac-mjx"
        assert '"format": "stac-mjx"' in stac.parameters
        # the stored MJCF compiles alone, scaled, with the sites at the fitted offsets
        model = mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)
        assert model.nq == 74 and body_model.scale == pytest.approx(0.9)
        site_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, f"keypoint_{k}") for k in RAT23]
        np.testing.assert_allclose(model.site_pos[site_ids], offsets, atol=1e-6)
    # pynwb.validate of a stac-mjx import: in test_track_mjx_round_trip (its session holds one)


def test_stac_mjx_links_the_sessions_keypoints(registered, stac_mjx_few, tmp_path):
    session = _copy(registered[0], tmp_path)
    assert "(stac_mjx_keypoints)" in registered[1]
    source = write_h5(tmp_path / "again.h5", stac_mjx_few)
    with pytest.raises(
        InputError, match=r"no PoseEstimation named 'rat' in processing/behavior \(found: PoseEstimation\)"
    ):
        import_stac_mjx(session, source, keypoints="rat", name="stac_mjx_again")
    summary = import_stac_mjx(session, source, keypoints="PoseEstimation", name="stac_mjx_again").summary()
    assert "linked to the session's PoseEstimation" in summary
    with read_session(session) as nwbfile:
        skeleton = nwbfile.processing["behavior"]["PoseEstimation"].skeleton
        assert skeleton.name == "stac_mjx_keypoints" and list(skeleton.nodes[:]) == FEW
        again = nwbfile.processing["mimic"]["stac_mjx_again"]
        assert again.pose_estimation is nwbfile.processing["behavior"]["PoseEstimation"]
        assert again.body_model.name == "BodyModel_stac_mjx_again"
        np.testing.assert_allclose(again.qpos.data[:], nwbfile.processing["mimic"]["StacRegistration"].qpos.data[:])


def test_stored_keypoints_read_back_what_the_import_wrote(registered, stac_mjx_few):
    # the one reader of a session's keypoints (stac-mjx import, STAC): metres, skeleton order, clock
    names = list(stac_mjx_few["kp_names"].astype(str))
    kp_data = stac_mjx_few["kp_data"].reshape(NUM_FRAMES, len(FEW), 3)[:, [names.index(k) for k in FEW]]
    with read_session(registered[0]) as nwbfile:
        stored = stored_keypoints(nwbfile.processing["behavior"]["PoseEstimation"], registered[0])
    assert stored.skeleton.nodes == FEW and stored.skeleton.name == "stac_mjx_keypoints"
    assert stored.positions.dtype == np.float64 and stored.positions.shape == (NUM_FRAMES, len(FEW), 3)
    np.testing.assert_array_equal(stored.positions, kp_data.astype(np.float64))
    assert stored.rate == RATE and stored.starting_time == 0.0 and stored.timestamps is None


def _pose(series_args, nodes=("a", "b"), **pose_args):
    series = [
        PoseEstimationSeries(name=name, description="x", reference_frame="arena", **args)
        for name, args in zip(nodes, series_args)
    ]
    skeleton = Skeleton(name="two", nodes=list(nodes) + pose_args.pop("extra_nodes", []), edges=np.array([[0, 1]]))
    return PoseEstimation(
        name="PoseEstimation", pose_estimation_series=series, skeleton=skeleton, source_software="test", **pose_args
    )


def test_stored_keypoints_apply_each_series_conversion_and_keep_timestamps():
    rng = np.random.default_rng(4)
    a, b = rng.uniform(-1, 1, (2, 5, 3))
    times = np.array([0.0, 0.1, 0.25, 0.3, 0.5])
    pose = _pose(
        [
            dict(data=a, unit="meters", timestamps=times, confidence=np.full(5, 0.5), confidence_definition="p"),
            dict(
                data=(1000 * b).astype(np.float32),
                unit="meters",
                conversion=0.001,
                timestamps=times,
                confidence=np.full(5, 0.25),
            ),
        ]
    )
    stored = stored_keypoints(pose, "s.nwb")
    np.testing.assert_allclose(stored.positions, np.stack([a, b], axis=1), atol=1e-6)
    np.testing.assert_array_equal(stored.timestamps, times)
    assert stored.rate is None and stored.confidence.tolist() == [[0.5, 0.25]] * 5
    assert stored.skeleton.edges.tolist() == [[0, 1]] and stored.source_software == "test"


@pytest.mark.parametrize(
    "series_args, extra, message",
    [
        (
            [dict(data=np.zeros((5, 3)), unit="mm")] * 2,
            [],
            r"s.nwb: processing/behavior/PoseEstimation: the "
            r"keypoints are in \['mm'\], not meters",
        ),
        ([dict(data=np.zeros((5, 2)), unit="meters")] * 2, [], r"series have shapes \[\(5, 2\)\], not \(frames, 3\)"),
        ([dict(data=np.zeros((5, 3)), unit="meters")] * 2, ["c"], r"skeleton nodes \['c'\] have no keypoint series"),
    ],
)
def test_stored_keypoints_refuse_what_is_not_3d_metres(series_args, extra, message):
    pose = _pose([dict(args, rate=RATE) for args in series_args], extra_nodes=extra)
    with pytest.raises(InputError, match=message):
        stored_keypoints(pose, "s.nwb")


def test_stac_mjx_into_a_session_whose_keypoints_are_not_metres_changes_nothing(stac_mjx_few, tmp_path):
    session = new_session(tmp_path)
    with append(session) as s:
        skeleton = Skeleton(name="few", nodes=FEW)
        s.module("behavior", "keypoints").add(Skeletons(skeletons=[skeleton]))
        s.module("behavior", "keypoints").add(
            PoseEstimation(
                name="PoseEstimation",
                skeleton=skeleton,
                source_software="test",
                pose_estimation_series=[
                    PoseEstimationSeries(
                        name=k,
                        description="x",
                        reference_frame="arena",
                        unit="mm",
                        data=np.zeros((NUM_FRAMES, 3)),
                        rate=RATE,
                    )
                    for k in FEW
                ],
            )
        )
    before = digest(session)
    with pytest.raises(InputError, match=r"PoseEstimation: the keypoints are in \['mm'\], not meters"):
        import_stac_mjx(session, write_h5(tmp_path / "stac.h5", stac_mjx_few))
    assert digest(session) == before


def test_track_mjx_round_trip(registered, track_mjx, tmp_path, capsys):
    session = _copy(registered[0], tmp_path)
    datasets, attrs = track_mjx
    source = write_h5(tmp_path / "rollout.h5", datasets, attrs)
    assert main(["import-foreign", str(session), str(source), "--format", "track-mjx"]) == 0
    assert f"8 steps (closed loop, reference StacRegistration from frame {START})" in capsys.readouterr().out
    with read_session(session) as nwbfile:
        mimic = nwbfile.processing["mimic"]
        rollout = mimic["SimulationRollout_track_mjx"]
        controller = mimic["ControllerNetwork_track_mjx"]
        activations = mimic["NetworkActivations_track_mjx"]
        assert rollout.mode == "closed_loop" and rollout.seed == 3
        assert rollout.reference is mimic["StacRegistration"] and rollout.body_model is mimic["BodyModel"]
        assert rollout.controller is controller and activations.rollout is rollout
        np.testing.assert_allclose(rollout.qpos.data[:], datasets["qposes_rollout"])
        np.testing.assert_allclose(rollout.actuator_controls.data[:], datasets["ctrl"])
        np.testing.assert_allclose(rollout.reward.data[:], datasets["reward"])
        assert list(rollout.reward_terms.column_names[:]) == ["joint_angles", "root_position"]
        np.testing.assert_allclose(rollout.reward_terms.data[:, 1], datasets["rewards/root_position"])
        # steps on the reference's clock, from the frame the rollout started at
        assert rollout.control_timestep == pytest.approx(1 / RATE) and rollout.physics_timestep == 0.002
        assert rollout.qpos.starting_time == pytest.approx(START / RATE)
        episodes = rollout.episodes.to_dataframe()
        assert list(episodes.start_frame) == [START]
        np.testing.assert_allclose(episodes.episode_return, datasets["reward"].sum())
        assert activations.layer_kinds() == {name: kind for name, (kind, _, _) in LAYERS.items()}
        for name, (_, _, dtype) in LAYERS.items():
            # every layer, the float16 one ("action") included, is stored as int16 codes that read
            # back within the error bound its description states (h5wasm and MATLAB have no float16)
            layer = activations.layer_activations[name]
            source_values = datasets[f"activations/{name}"].astype(np.float64)
            assert layer.data.dtype == np.int16
            bound = _stated_bound(layer.description)
            assert 0 < bound <= np.ptp(source_values) / 65000
            values = layer.data[:] * layer.conversion + layer.offset
            assert np.abs(values - source_values).max() <= bound
            assert np.abs(layer.get_data_in_units() - source_values).max() <= bound
            assert json.loads(activations.parameters)["source_dtypes"][name] == dtype
        assert set(json.loads(activations.parameters)["stored_dtypes"].values()) == {"int16"}
        assert controller.decoder_kind == "lstm" and controller.latent_size == 4 and controller.reference_window == 5
        assert controller.checkpoint_sha256 == "ab" * 32
        assert json.loads(controller.training)["train_config"]["num_timesteps"] == 1000
        assert json.loads(controller.architecture)["layers"]["logvar"] == {"kind": "latent_scale", "units": 4}
        assert json.loads(rollout.parameters)["reference_max_deviation"] == 0.0
    assert validate(path=str(session)) == []  # the rollout results and the stac-mjx import they link


def test_track_mjx_controls_between_states_are_padded(registered, track_mjx, tmp_path):
    """track-mjx saves one control (and activation row) fewer than states: the last step gets NaN."""
    session = _copy(registered[0], tmp_path)
    datasets, attrs = track_mjx
    shorter = {k: v[:-1] if k == "ctrl" or k.startswith("activations/") else v for k, v in datasets.items()}
    source = write_h5(tmp_path / "rollout.h5", shorter, {**attrs, "control_timestep": 0.01})
    import_track_mjx(session, source, name="padded")
    with read_session(session) as nwbfile:
        rollout = nwbfile.processing["mimic"]["SimulationRollout_padded"]
        controls = rollout.actuator_controls.data[:]
        assert controls.shape == (NUM_STEPS, 38) and np.isnan(controls[-1]).all()
        np.testing.assert_allclose(controls[:-1], datasets["ctrl"][:-1])
        assert rollout.control_timestep == 0.01 and rollout.qpos.rate == pytest.approx(100.0)
        layer = nwbfile.processing["mimic"]["NetworkActivations_padded"].layer_activations["action"]
        assert layer.data.shape == (NUM_STEPS, 38) and np.isnan(layer.data[-1]).all()
        # no int16 code for the NaN row: float32 (readable everywhere), every float16 value exact
        assert layer.data.dtype == np.float32 and "Stored as float32" in layer.description
        np.testing.assert_array_equal(layer.data[:-1], datasets["activations/action"][:-1].astype(np.float32))


def _stated_bound(description):
    """The absolute error bound a quantized series states in its description."""
    return float(re.search(r"absolute error at most ([0-9.e+-]+)", description).group(1))


def test_mimic_h5_round_trip(mimic_h5, tmp_path):
    session = new_session(tmp_path)
    source = write_h5(tmp_path / "mimic.h5", mimic_h5)
    result = import_mimic_h5(session, source)
    summary = result.summary()
    assert result.spike_counts == "processing/mimic/BinnedSpikeCounts" and result.labels == "intervals/behavior_labels"
    assert result.num_bouts == 4 and result.registration.mean_error < 1e-9
    assert "12 frames at 50 Hz" in summary and "5 units x 12 bins (3 active)" in summary
    assert "4 bouts of 3 clusters" in summary
    with read_session(session) as nwbfile:
        pose = nwbfile.processing["behavior"]["PoseEstimation"]
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        counts = nwbfile.processing["mimic"]["BinnedSpikeCounts"]
        keypoints = np.transpose(mimic_h5["pose/keypoints"], (0, 2, 1)) / 1000
        assert list(pose.skeleton.nodes[:]) == RAT23
        np.testing.assert_allclose(pose_as_array(pose), keypoints)
        np.testing.assert_array_equal(stac.qpos.data[:], mimic_h5["pose/qpos"])
        # keypoints were made by forward kinematics at the site map's offsets: the model reproduces them
        np.testing.assert_allclose(stac.model_keypoints_array(), keypoints, atol=1e-9)
        assert np.nanmax(stac.keypoint_errors.data[:]) < 1e-9
        sites = stac.keypoint_sites.to_dataframe()
        np.testing.assert_allclose(np.stack(sites.offset), np.stack(sites.initial_offset))
        assert counts.data.dtype.kind == "u" and counts.bin_size == 0.02 and counts.rate == 50.0
        np.testing.assert_array_equal(counts.data[:], mimic_h5["ephys/spike_counts"])
        np.testing.assert_array_equal(counts.active[:], mimic_h5["ephys/active_units"])
        bouts = nwbfile.intervals["behavior_labels"].to_dataframe()
        assert list(bouts.label) == ["cluster_3", "cluster_7", "cluster_1", "cluster_3"]
        assert list(bouts.cluster_id) == [3, 7, 1, 3]
        np.testing.assert_allclose(bouts.start_time, [0, 0.06, 0.14, 0.18])
        np.testing.assert_allclose(bouts.stop_time, [0.06, 0.14, 0.18, 0.24])
    assert validate(path=str(session)) == []


def test_rollout_into_an_open_session_refuses_a_reference_replaced_meanwhile(
    registered, stac_mjx_few, track_mjx, tmp_path
):
    """The rollout links the registration it was computed against: when another writer replaces
    that registration between the read and the append, the append is refused (no stale link) and
    the other writer's result stays; read again, the rollout links the new registration."""
    session = _copy(registered[0], tmp_path)
    datasets, attrs = track_mjx
    source = write_h5(tmp_path / "rollout.h5", datasets, attrs)
    with mimic_nwb.open(session, "a") as opened:
        old_id = opened.result("StacRegistration").object_id
        import_stac_mjx(session, write_h5(tmp_path / "stac.h5", stac_mjx_few), replace=True)  # another writer
        before = digest(session)
        with pytest.raises(
            InputError, match="input processing/mimic/StacRegistration changed since it was read: rerun"
        ):
            import_track_mjx(opened, source)
        assert digest(session) == before
        opened.reload()
        result = import_track_mjx(opened, source)
        assert opened.result("SimulationRollout").name == "SimulationRollout_track_mjx"  # the session shows the append
    assert result.reference == "processing/mimic/StacRegistration" and result.start_frame == START
    assert result.body_model == "processing/mimic/BodyModel" and not result.body_model_added
    with read_session(session) as nwbfile:
        registration = nwbfile.processing["mimic"]["StacRegistration"]
        assert registration.object_id != old_id
        assert nwbfile.processing["mimic"]["SimulationRollout_track_mjx"].reference is registration


def test_rollout_with_several_registrations_names_one(registered, stac_mjx_few, track_mjx, tmp_path):
    session = _copy(registered[0], tmp_path)
    import_stac_mjx(session, write_h5(tmp_path / "stac.h5", stac_mjx_few), name="again")
    source = write_h5(tmp_path / "rollout.h5", *track_mjx)
    before = digest(session)
    with pytest.raises(
        InputError, match=r"2 StacRegistration results .*\(StacRegistration, again\): choose one by name"
    ):
        import_track_mjx(session, source)
    assert digest(session) == before
    result = import_track_mjx(session, source, registration="again")
    assert result.reference == "processing/mimic/again" and result.body_model == "processing/mimic/BodyModel_again"
    with read_session(session) as nwbfile:
        rollout = nwbfile.processing["mimic"]["SimulationRollout_track_mjx"]
        assert rollout.reference is nwbfile.processing["mimic"]["again"]
        assert rollout.body_model is nwbfile.processing["mimic"]["BodyModel_again"]


def test_configs_refuse_bad_numbers_naming_the_field():
    with pytest.raises(ValueError, match=r"^rate: -1.0 Hz must be finite and positive"):
        StacMjxImportConfig(rate=-1)
    with pytest.raises(ValueError, match=r"^starting_time: nan s must be a finite number"):
        StacMjxImportConfig(rate=RATE, starting_time=float("nan"))
    with pytest.raises(ValueError, match=r"^layer_kinds \{'dense_3': 'dense'\}: each must be one of"):
        TrackMjxImportConfig(layer_kinds={"dense_3": "dense"})
    with pytest.raises(ValueError, match=r"^bin_size: 0.0 s must be finite and positive"):
        MimicH5ImportConfig(bin_size=0)
    with pytest.raises(ValueError, match=r"^rate: inf Hz"):
        MimicH5ImportConfig(rate=float("inf"))


def test_layer_kinds_from_names():
    assert layer_kind_of("decoder/lstm_c") == "lstm_cell"
    assert layer_kind_of("encoder.latent_logvar") == "latent_scale"
    assert layer_kind_of("policy_mu") == "latent_mean"
    assert layer_kind_of("dense_3") is None


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, session unchanged


def _stac_variant(change):
    def make(stac_mjx):
        datasets = dict(stac_mjx)
        change(datasets)
        return datasets, {}

    return make


def _renamed_keypoint(d):
    names = d["kp_names"].copy()
    names[0] = b"Nose"
    d["kp_names"] = names


def _short_qpos(d):
    d["qpos"], d["names_qpos"] = d["qpos"][:, :73], d["names_qpos"][:73]


BAD_STAC = {
    "missing marker_sites": (_stac_variant(lambda d: d.pop("marker_sites")), [], "no dataset 'marker_sites'"),
    "kp_data wrong shape": (_stac_variant(lambda d: d.update(kp_data=d["kp_data"][:, :-1])), [], "'kp_data' has shape"),
    "nq mismatch": (_stac_variant(_short_qpos), [], "has nq 74"),
    "kp_names not the config's": (_stac_variant(_renamed_keypoint), [], "kp_names do not match the config"),
    "frame counts differ": (
        _stac_variant(lambda d: d.update(marker_sites=d["marker_sites"][:-1])),
        [],
        "datasets differ in frames",
    ),
    "no frame rate": (_stac_variant(lambda d: None), ["no-rate"], "give the frame rate (--rate)"),
}


def _track_variant(change):
    def make(track_mjx):
        datasets, attrs = dict(track_mjx[0]), dict(track_mjx[1])
        change(datasets)
        return datasets, attrs

    return make


BAD_TRACK = {
    "nq mismatch": (
        _track_variant(
            lambda d: d.update(qposes_ref=d["qposes_ref"][:, :70], qposes_rollout=d["qposes_rollout"][:, :70])
        ),
        [],
        "has nq 74",
    ),
    "unknown layer": (
        _track_variant(lambda d: d.update({"activations/dense_3": d["activations/encoder_0"]})),
        [],
        "layer kind of activations ['dense_3'] unknown",
    ),
    "ctrl rows": (_track_variant(lambda d: d.update(ctrl=d["ctrl"][:-3])), [], "'ctrl' has 5 rows"),
    "missing qposes_ref": (_track_variant(lambda d: d.pop("qposes_ref")), [], "no dataset 'qposes_ref'"),
}


def _mimic_variant(change):
    def make(mimic_h5):
        datasets = dict(mimic_h5)
        change(datasets)
        return datasets, {}

    return make


BAD_MIMIC = {
    "frame counts differ": (
        _mimic_variant(lambda d: d.update({"pose/qpos": d["pose/qpos"][:-1]})),
        [],
        "/pose/keypoints has 12 frames but /pose/qpos has 11",
    ),
    "spike bins span": (
        _mimic_variant(lambda d: d.update({"ephys/spike_counts": d["ephys/spike_counts"][:9]})),
        [],
        "covers 0.18 s (9 bins of 20 ms) but the frames cover 0.24 s",
    ),
    "keypoints shape": (
        _mimic_variant(lambda d: d.update({"pose/keypoints": np.transpose(d["pose/keypoints"], (0, 2, 1))})),
        [],
        "expected (T, 3, 23)",
    ),
    "nq mismatch": (_mimic_variant(lambda d: d.update({"pose/qpos": d["pose/qpos"][:, :70]})), [], "has nq 74"),
    "missing qpos": (_mimic_variant(lambda d: d.pop("pose/qpos")), [], "no dataset 'pose/qpos'"),
}

CASES = [
    *[("stac-mjx", "stac_mjx", name, *case) for name, case in BAD_STAC.items()],
    *[("track-mjx", "track_mjx", name, *case) for name, case in BAD_TRACK.items()],
    *[("mimic-h5", "mimic_h5", name, *case) for name, case in BAD_MIMIC.items()],
]


@pytest.mark.parametrize(
    ("fmt", "fixture", "name", "make", "flags", "message"), CASES, ids=[f"{c[0]}: {c[2]}" for c in CASES]
)
def test_bad_source_changes_nothing(fmt, fixture, name, make, flags, message, registered, request, tmp_path, capsys):
    # track-mjx needs a registration to link; the others go into a fresh session
    session = _copy(registered[0], tmp_path) if fmt == "track-mjx" else new_session(tmp_path)
    datasets, attrs = make(request.getfixturevalue(fixture))
    source = write_h5(tmp_path / "source.h5", datasets, attrs)
    before = digest(session)
    rate = [] if fmt != "stac-mjx" or "no-rate" in flags else ["--rate", "50"]
    assert main(["import-foreign", str(session), str(source), "--format", fmt, *rate]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("mimic-nwb: error: ") and message in error, error
    assert digest(session) == before


@pytest.mark.parametrize("fmt", ["stac-mjx", "track-mjx", "mimic-h5"])
def test_not_hdf5_changes_nothing(fmt, tmp_path, capsys):
    session = new_session(tmp_path)
    source = tmp_path / "source.h5"
    source.write_text("qpos,kp_data\n1,2\n")
    before = digest(session)
    assert main(["import-foreign", str(session), str(source), "--format", fmt, "--rate", "50"]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert digest(session) == before
    with pytest.raises(InputError, match="no such file"):
        IMPORTERS[fmt](session, tmp_path / "missing.h5")
    assert digest(session) == before


def test_layer_kind_only_for_track_mjx_and_checked_before_reading(tmp_path, capsys):
    session = new_session(tmp_path)
    before = digest(session)
    argv = ["import-foreign", str(session), str(tmp_path / "missing.h5")]
    assert main([*argv, "--format", "stac-mjx", "--rate", "50", "--layer-kind", "z=latent_sample"]) == 2
    assert "--layer-kind: only for --format track-mjx, not stac-mjx" in capsys.readouterr().err
    assert main([*argv, "--format", "track-mjx", "--layer-kind", "z=dense"]) == 2
    assert "layer_kinds {'z': 'dense'}: each must be one of" in capsys.readouterr().err
    assert main([*argv, "--format", "mimic-h5", "--rate", "-5"]) == 2
    assert "rate: -5.0 Hz must be finite and positive" in capsys.readouterr().err
    assert digest(session) == before


def test_existing_results_need_replace(registered, stac_mjx_few, tmp_path, capsys):
    session = _copy(registered[0], tmp_path)
    source = write_h5(tmp_path / "stac.h5", stac_mjx_few)
    before = digest(session)
    assert main(["import-foreign", str(session), str(source), "--format", "stac-mjx"]) == 2
    assert "processing/mimic/StacRegistration already exists" in capsys.readouterr().err
    # the session's keypoints are not the file's: refused, not linked
    moved = dict(stac_mjx_few, kp_data=stac_mjx_few["kp_data"] + np.float32(0.01))
    write_h5(source, moved)
    with pytest.raises(InputError, match="kp_data differ from the session's PoseEstimation by up to 10.00 mm"):
        import_stac_mjx(session, source, name="other")
    assert digest(session) == before
    # --replace swaps the registration (and its body model) for the new file's
    refitted = dict(stac_mjx_few, qpos=stac_mjx_few["qpos"].copy())
    refitted["qpos"][2] = np.nan  # a frame the new fit left out
    write_h5(source, refitted)
    assert main(["import-foreign", str(session), str(source), "--format", "stac-mjx", "--replace"]) == 0
    with read_session(session) as nwbfile:
        stac = nwbfile.processing["mimic"]["StacRegistration"]
        assert list(stac.frame_valid[:]) == [i != 2 for i in range(NUM_FRAMES)]
        assert (
            np.isnan(stac.keypoint_errors.data[2]).all() and stac.body_model is nwbfile.processing["mimic"]["BodyModel"]
        )


def test_rollout_without_body_model_needs_rodent_nq(track_mjx, tmp_path, capsys):
    session = new_session(tmp_path)
    datasets, attrs = track_mjx
    short = dict(datasets, qposes_ref=datasets["qposes_ref"][:, :70], qposes_rollout=datasets["qposes_rollout"][:, :70])
    source = write_h5(tmp_path / "rollout.h5", short, attrs)
    before = digest(session)
    assert main(["import-foreign", str(session), str(source), "--format", "track-mjx", "--rate", "50"]) == 2
    assert "no BodyModel or StacRegistration and the default rodent has nq 74" in capsys.readouterr().err
    assert digest(session) == before
