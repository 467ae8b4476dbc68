"""Constructors of the ndx-mimic types: valid objects build, mismatched shapes are refused by field."""

import hashlib

import numpy as np
import pytest

from ndx_mimic import (
    BinnedSpikeCounts,
    BodyModel,
    JointStateSeries,
    LayerActivations,
    NamedColumnSeries,
    NetworkActivations,
    RepresentationalSimilarity,
    SimulationRollout,
    StacRegistration,
)
from ndx_mimic.mimic import pose_as_array
from ndx_mimic.testing import mock


def test_mocks_build_consistent_objects():
    body_model = mock.mock_BodyModel()
    assert body_model.mjcf_sha256 == hashlib.sha256(mock.TOY_MJCF.encode()).hexdigest()
    stac = mock.mock_StacRegistration(body_model=body_model)
    assert stac.model_keypoints_array().shape == (mock.NUM_FRAMES, 3, 3)
    assert stac.keypoint_names == mock.TOY_KEYPOINTS
    rollout = mock.mock_SimulationRollout(body_model=body_model, reference=stac)
    assert rollout.num_steps == mock.NUM_FRAMES
    activations = mock.mock_NetworkActivations(rollout=rollout)
    assert activations.layer_kinds()["lstm_hidden_0"] == "lstm_hidden"
    assert activations.layer_activations["encoder_0"].unit == "a.u."


def test_named_column_series_accessors():
    series = mock.mock_JointStateSeries(kind="qpos")
    frame = series.to_dataframe()
    assert list(frame.columns) == mock.TOY_QPOS_NAMES
    np.testing.assert_allclose(frame.index.values[:3], [0.0, 0.02, 0.04])
    assert series.unit_of("root_x") == "meters"
    assert series.unit_of("hip") == "radians"


def test_toy_body_model_compiles_with_the_mock_names():
    mujoco = pytest.importorskip("mujoco")
    body_model = mock.mock_BodyModel()
    model = mujoco.MjModel.from_xml_string(body_model.mjcf, body_model.assets)
    assert (model.nq, model.nv, model.nu, model.nbody) == (
        len(body_model.qpos_names),
        len(body_model.qvel_names),
        len(body_model.actuator_names),
        len(body_model.body_names),
    )


def test_pose_as_array_orders_by_skeleton():
    pose = mock.mock_PoseEstimation()
    array = pose_as_array(pose)
    np.testing.assert_array_equal(array[:, 1], pose.pose_estimation_series["knee"].data)
    reordered = pose_as_array(pose, ["foot", "head"])
    np.testing.assert_array_equal(reordered[:, 0], pose.pose_estimation_series["foot"].data)
    with pytest.raises(KeyError, match="tail"):
        pose_as_array(pose, ["tail"])


def _series_kwargs(**kwargs):
    args = dict(
        name="s", data=np.zeros((10, 3)), unit="meters", column_names=["a", "b", "c"], rate=50.0, description="x"
    )
    args.update(kwargs)
    return args


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(column_names=["a", "b"]), "column_names has 2 names but data has 3 columns"),
        (dict(column_units=["m", "m"], unit="mixed"), "column_units has 2 units"),
        (dict(unit="mixed"), "unit is 'mixed' but column_units is missing"),
        (dict(unit=""), "unit is empty"),
        (dict(data=np.zeros(10), column_names=["a"]), "data must be 2-D"),
    ],
)
def test_named_column_series_rejects_mismatches(kwargs, field):
    with pytest.raises(ValueError, match=field):
        NamedColumnSeries(**_series_kwargs(**kwargs))


def test_joint_state_series_columns_must_match_body_model():
    body_model = mock.mock_BodyModel()
    with pytest.raises(ValueError, match="column_names are not the qpos .* names of body model 'BodyModel'"):
        JointStateSeries(**_series_kwargs(body_model=body_model))


def test_body_model_checks():
    with pytest.raises(ValueError, match="mjcf_sha256 .* does not match"):
        mock.mock_BodyModel(mjcf_sha256="0" * 64)
    with pytest.raises(ValueError, match="actuator_kind must be one of"):
        mock.mock_BodyModel(actuator_kind="muscle")
    with pytest.raises(ValueError, match="scale must be positive"):
        mock.mock_BodyModel(scale=0.0)


def test_stac_registration_checks_frames_and_keypoints():
    with pytest.raises(ValueError, match="frame_valid has 99 frames but qpos has 100"):
        mock.mock_StacRegistration(frame_valid=np.ones(99, dtype=bool))
    errors = NamedColumnSeries(
        **_series_kwargs(name="keypoint_errors", data=np.zeros((100, 2)), column_names=["head", "knee"])
    )
    with pytest.raises(ValueError, match="keypoint_errors has 2 columns but keypoint_sites has 3"):
        mock.mock_StacRegistration(keypoint_errors=errors)


def test_rollout_checks_mode_and_lengths():
    with pytest.raises(ValueError, match="mode must be one of"):
        mock.mock_SimulationRollout(mode="replay")
    body_model = mock.mock_BodyModel()
    short = mock.mock_JointStateSeries(body_model, "qvel", num_frames=50)
    with pytest.raises(ValueError, match="its series differ in length"):
        mock.mock_SimulationRollout(body_model=body_model, qvel=short)


def test_layer_and_activation_checks():
    with pytest.raises(ValueError, match="layer_kind must be one of"):
        mock.mock_LayerActivations(layer_kind="attention")
    rollout = mock.mock_SimulationRollout()
    short_layer = LayerActivations(
        name="encoder_0", data=np.zeros((40, 4), "float16"), layer_kind="encoder", rate=50.0, description="x"
    )
    with pytest.raises(ValueError, match="layer 'encoder_0' has 40 steps but rollout has 100"):
        NetworkActivations(
            name="acts", layer_activations=[short_layer], controller=mock.mock_ControllerNetwork(), rollout=rollout
        )


def test_counts_and_rsa_checks():
    with pytest.raises(ValueError, match="brain_region has 2 entries but there are 5 units"):
        mock.mock_BinnedSpikeCounts(brain_region=["DLS", "MC"])
    assert mock.mock_BinnedSpikeCounts().unit == "spikes"
    with pytest.raises(ValueError, match="condition_labels has 3 entries, rdms needs 4"):
        mock.mock_RepresentationalSimilarity(condition_labels=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"rdms must have shape \(n, C, C\)"):
        mock.mock_RepresentationalSimilarity(rdms=np.zeros((3, 4, 5)))
    rsa = mock.mock_RepresentationalSimilarity()
    assert rsa.rdm("joint_angles").shape == (4, 4)


def test_public_classes_are_exported():
    for cls in (BinnedSpikeCounts, BodyModel, RepresentationalSimilarity, SimulationRollout, StacRegistration):
        assert cls.__module__ == "ndx_mimic.mimic"
